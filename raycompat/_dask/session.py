"""``ray.init`` / ``ray.shutdown`` on Dask: start an embedded cluster or connect to one.

Ray's ``init()`` with no address starts a local cluster; with an address it connects.
raycompat maps "a local Ray instance" onto a ``distributed.LocalCluster`` of worker
processes (one per CPU, one thread each, every socket on 127.0.0.1) and "a Ray cluster"
onto any Dask scheduler a ``distributed.Client`` can reach. ``shutdown()`` closes the
client and stops only what ``init`` started. This module is the lifecycle only, above
every other; the embedded cluster is ``embedded_cluster.py``, joining one
``joining.py``, and what the rest of the engine looks up (the session, its client and
job) is in ``driver.py``.
"""

from __future__ import annotations

import atexit
import logging
import os
import shutil
import sys
import time
import uuid
import warnings
from typing import Optional

import dask
import distributed

from raycompat._dask import driver, embedded_cluster, joining, latency, local_clusters, output, references
from raycompat._dask import restarts
from raycompat._dask import streaming
from raycompat._dask import runtime_env as _runtime_env
from raycompat._dask.lifetime import release_client_remote
from raycompat._dask.references import JOB_PIN_PREFIX
from raycompat._private import ray_alias
from raycompat._private.runtime_env import validate_runtime_env
from raycompat._version import __version__

logger = logging.getLogger("raycompat")

DEFAULT_CONNECT_TIMEOUT = 30.0

#: Keyword arguments of Ray's ``init`` that have no meaning on Dask: accepted, warned once.
_RAY_ONLY_INIT_KWARGS = {
    "labels",
    "object_store_memory",
    "job_config",
    "configure_logging",
    "logging_format",
    "logging_config",
    "enable_resource_isolation",
    "cgroup_path",
    "system_reserved_cpu",
    "system_reserved_memory",
    "proxy_server_url",
    "_system_config",
    "_temp_dir",
    "_node_ip_address",
    "_enable_object_reconstruction",
    "_plasma_directory",
    "_metrics_export_port",
    "_redis_password",
    "_driver_object_store_memory",
    "_memory",
    "_node_name",
    "_tracing_startup_hook",
    "_skip_env_hook",
    "_cluster_id",
    "_redis_username",
    "_enable_resource_isolation",
}

_lock = driver.lock


class Session:
    """One driver's connection: the client, and the cluster if this driver started it."""

    def __init__(self, client, cluster, owned: bool, namespace, job_id, ledger, tmpdir, runtime_env,
                 owns_client: bool = True):
        self.client: distributed.Client = client
        #: False when the user handed init() their own Client: shutdown leaves it open.
        self.owns_client = owns_client
        self.cluster = cluster
        self.owned = owned
        self.namespace = namespace
        self.job_id = job_id
        self.ledger = ledger
        self.tmpdir = tmpdir
        self.runtime_env = runtime_env or {}
        #: The job's runtime_env once shipped (``runtime_env.setup_job``), and the name of
        #: the worker plugin that ships it to workers joining later.
        self.prepared_runtime_env = None
        self.runtime_env_plugin: Optional[str] = None
        self.function_deps: dict = {}
        #: Variables naming this driver's non-detached actors, deleted at shutdown.
        self.named_actors: list = []
        self.started = time.time()
        self.lifetime_registered = False
        #: Prints the job's worker output (None with ``log_to_driver=False``).
        self.printer = None
        self._dashboard_url: Optional[str] = None

    @property
    def dashboard_url(self) -> str:
        """The dashboard's link, or "" without one (Ray's value with ``include_dashboard=False``)."""
        if self._dashboard_url is None:
            try:
                self._dashboard_url = self.client.dashboard_link or ""
            except Exception:  # noqa: BLE001 - no dashboard
                self._dashboard_url = ""
        return self._dashboard_url

    def close(self) -> None:
        client, cluster = self.client, self.cluster
        # After the scheduler is lost there is nobody to tell: skip the goodbyes (each
        # would wait up to Dask's connect timeout) and only let go of what is local.
        lost = driver.lost_scheduler(client) is not None
        if not lost:
            _runtime_env.teardown_job(self)
            if self.printer is not None:
                self.printer.drain()
        streaming.forget(client)
        if not lost:
            for hook in driver.teardown_hooks():
                hook(self)
            _release_pins(client, self.job_id)
            try:
                client.run_on_scheduler(restarts.forget_job, job=self.job_id)
            except Exception:  # noqa: BLE001 - best effort on a cluster we only joined
                pass
        if not self.owns_client:
            client.__dict__.pop("_reconnect", None)  # the user's client: Dask's own again
        # Stopping our own cluster drops whatever its workers still hold, and a task
        # still running may report to the client that just left: neither is an error
        # worth the scheduler's "lost scattered data" or "Closed comm" log lines.
        quiet = self.owned and cluster is not None
        sched_log = logging.getLogger("distributed.scheduler")
        level = sched_log.level
        if quiet:
            sched_log.setLevel(logging.CRITICAL + 1)
        try:
            if self.owns_client:
                try:
                    client.close(timeout=10)
                except Exception:  # noqa: BLE001 - already gone
                    pass
            if quiet:
                try:
                    cluster.close(timeout=30)
                except Exception:  # noqa: BLE001 - already gone
                    pass
        finally:
            sched_log.setLevel(level)
        if self.ledger is not None:
            self.ledger.close()
        if self.tmpdir:
            shutil.rmtree(self.tmpdir, ignore_errors=True)


class RayContext(dict):
    """What ``ray.init`` returns: Ray's ``RayContext`` (a deprecated Mapping of
    ``address_info``, a context manager whose exit shuts down)."""

    def __init__(self, address_info: dict, dashboard_url: str):
        super().__init__(address_info)
        self.address_info = address_info
        self.dashboard_url = dashboard_url
        self.python_version = "{}.{}.{}".format(*sys.version_info[:3])
        self.ray_version = __version__
        self.ray_commit = "raycompat"

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        shutdown()

    def disconnect(self):
        shutdown()

    def __repr__(self):
        return (
            f"RayContext(dashboard_url={self.dashboard_url!r}, python_version={self.python_version!r}, "
            f"ray_version={self.ray_version!r}, ray_commit={self.ray_commit!r})"
        )

    __hash__ = object.__hash__


# ---------------------------------------------------------------------------- init


def init(
    address=None,
    *,
    num_cpus=None,
    num_gpus=None,
    resources=None,
    namespace=None,
    runtime_env=None,
    ignore_reinit_error=False,
    include_dashboard=None,
    dashboard_host="127.0.0.1",
    dashboard_port=None,
    log_to_driver=True,
    logging_level=logging.INFO,
    local_mode=False,
    **kwargs,
) -> RayContext:
    security = kwargs.pop("security", None)
    connect_timeout = kwargs.pop("_connect_timeout", None)
    ignored = {k: kwargs.pop(k) for k in list(kwargs) if k in _RAY_ONLY_INIT_KWARGS}
    if kwargs:
        raise RuntimeError(f"Unknown keyword argument(s): {', '.join(kwargs)}")
    if local_mode:
        raise RuntimeError(
            "`local_mode` is no longer supported. For interactive debugging consider using "
            "the Ray distributed debugger."
        )
    _configure_logging(logging_level)
    with _lock:
        if driver.current_session(auto_init=False) is not None:
            if ignore_reinit_error:
                logger.info("Calling ray.init() again after it has already been called.")
                return _context_for(driver.current_session(auto_init=False))
            raise RuntimeError(
                "Maybe you called ray.init twice by accident? "
                "This error can be suppressed by passing in "
                "'ignore_reinit_error=True' or by calling "
                "'ray.shutdown()' prior to 'ray.init()'."
            )
        used_ignored = [k for k, v in ignored.items() if v not in (None, False, {}, True)]
        if used_ignored:
            warnings.warn(
                "raycompat ignores these ray.init arguments, which have no Dask equivalent: "
                + ", ".join(sorted(used_ignored)),
                UserWarning,
                stacklevel=3,
            )
        validate_runtime_env(runtime_env, job_level=True)
        target = _resolve_address(address)
        job_id = uuid.uuid4().hex[:8]
        if namespace is None:
            namespace = str(uuid.uuid4())
        if target is None:
            if num_gpus is not None and num_gpus < 0 or num_cpus is not None and num_cpus < 0:
                raise ValueError("num_cpus and num_gpus must be non-negative")
            session = _start_embedded(
                num_cpus,
                num_gpus,
                resources,
                include_dashboard,
                dashboard_host,
                dashboard_port,
                namespace,
                job_id,
                runtime_env,
            )
            logger.info("Started a local Ray instance.%s", _dashboard_note(session))
        else:
            joining.check_join_arguments(num_cpus, num_gpus, resources, ignored)
            session = _connect(target, security, connect_timeout, namespace, job_id, runtime_env)
            logger.info("Connected to Ray cluster.%s", _dashboard_note(session))
        try:  # ship working_dir/py_modules/pip to every worker, present and future
            _runtime_env.setup_job(session)
        except BaseException:
            session.close()
            raise
        if not session.owned:
            joining.register_driver(session)
        ray_alias.register_with(session.client)  # `raycompat run`: workers resolve `import ray` too
        latency.tune_client(session.client)
        streaming.registry(session.client)
        if log_to_driver:
            session.printer = output.Printer(session.client, job_id)
        driver.set_session(session)
        global _atexit_registered
        if not _atexit_registered:
            # As Ray: a script that ends without ray.shutdown() still shuts down cleanly
            # (this runs before distributed's own exit hooks, registered at its import).
            atexit.register(shutdown)
            _atexit_registered = True
        return _context_for(session)


def _configure_logging(level) -> None:
    if not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(
            logging.Formatter("%(asctime)s\t%(levelname)s %(filename)s:%(lineno)s -- %(message)s")
        )
        logger.addHandler(handler)
        logger.propagate = False
    logger.setLevel(level)


def _resolve_address(address):
    """None -> start embedded; otherwise what to connect to (str address or Dask object).

    As Ray: no address means ``RAY_ADDRESS``, else the cluster ``raycompat start`` last
    started on this machine (Ray's ``/tmp/ray/ray_current_cluster``, here
    ``local_clusters.current_address``), else a new local cluster; ``"auto"`` the same
    but never a new cluster. ``DASK_SCHEDULER_ADDRESS`` comes after ``RAY_ADDRESS``."""
    if address is None:
        env = os.environ.get("RAY_ADDRESS")
        if env:
            address = env
        elif os.environ.get("DASK_SCHEDULER_ADDRESS"):
            address = os.environ["DASK_SCHEDULER_ADDRESS"]
        else:
            address = local_clusters.current_address()
            if address is None:
                return None
    if isinstance(address, distributed.Client) or hasattr(address, "scheduler_address"):
        return address
    if not isinstance(address, str):
        raise TypeError(f"address must be a string, a distributed.Client or a cluster, got {type(address)}")
    if address == "local":
        return None
    if address == "auto":
        found = (
            os.environ.get("RAY_ADDRESS")
            if os.environ.get("RAY_ADDRESS") not in (None, "", "auto")
            else None
        ) or os.environ.get("DASK_SCHEDULER_ADDRESS") or local_clusters.current_address() or dask.config.get(
            "scheduler-address", None)
        if not found or found == "local":
            raise ConnectionError(
                "Could not find any running Ray instance. Please specify the one to connect to "
                "by setting `--address` flag or `RAY_ADDRESS` environment variable."
            )
        address = found
    if address.startswith("ray://"):
        raise ValueError(
            f"Ray Client addresses ({address}) are not supported by raycompat: pass the Dask "
            "scheduler's address, e.g. ray.init('tcp://10.0.0.1:8786')."
        )
    if "://" not in address:
        host, _, port = address.rpartition(":")
        if not host or not port.isdigit():
            raise ValueError(
                f"Invalid address format: {address!r}. Expected 'tcp://host:port', 'tls://host:port', "
                "'host:port', 'auto' or 'local'."
            )
        address = "tcp://" + address
    return address


def _dashboard_note(session: Session) -> str:
    return f" View the dashboard at {session.dashboard_url}" if session.dashboard_url else ""


def _start_embedded(
    num_cpus, num_gpus, resources, include_dashboard, dashboard_host, dashboard_port, namespace, job_id, runtime_env
) -> Session:
    cluster, client, ledger, tmpdir = embedded_cluster.start(
        num_cpus, num_gpus, resources, include_dashboard, dashboard_host, dashboard_port
    )
    references.set_plugin_present(client, True)
    session = Session(client, cluster, True, namespace, job_id, ledger, tmpdir, runtime_env)
    if include_dashboard is False:
        session._dashboard_url = ""  # Dask would still format a link to its HTTP server
    return session


def _connect(target, security, connect_timeout, namespace, job_id, runtime_env) -> Session:
    if isinstance(target, distributed.Client):
        joining.watch_scheduler(target, owned=False)
        return Session(target, None, False, namespace, job_id, None, None, runtime_env, owns_client=False)
    if not isinstance(target, str):  # a cluster object
        client = distributed.Client(target, set_as_default=False)
        joining.watch_scheduler(client, owned=True)
        return Session(client, target, False, namespace, job_id, None, None, runtime_env)
    timeout = connect_timeout
    if timeout is None:
        timeout = float(os.environ.get("RAYCOMPAT_CONNECT_TIMEOUT", DEFAULT_CONNECT_TIMEOUT))
    client = joining.open_client(target, security, timeout)
    return Session(client, None, False, namespace, job_id, None, None, runtime_env)


def _context_for(session: Session) -> RayContext:
    client = session.client
    address = client.scheduler.address
    info = {
        "node_ip_address": "127.0.0.1" if session.owned else driver.host_of(address),
        "address": address,
        "gcs_address": address,
        "webui_url": session.dashboard_url,
        "dashboard_url": session.dashboard_url,
        "session_dir": session.tmpdir or "",
        "node_id": driver.node_id_of_host(driver.host_of(address)),
        "namespace": session.namespace,
    }
    return RayContext(info, session.dashboard_url)


# ---------------------------------------------------------------------------- shutdown


_atexit_registered = False


def shutdown() -> None:
    with _lock:
        session = driver.current_session(auto_init=False)
        driver.set_session(None)
    if session is not None:
        session.close()


def _release_pins(client, job_id) -> None:
    try:
        client.run_on_scheduler(release_client_remote, name=JOB_PIN_PREFIX + job_id)
    except Exception as e:  # noqa: BLE001 - best effort on a cluster we only connect to
        logger.debug("could not release pinned keys: %s", e)


driver.set_initializer(lambda: init())
