"""The cluster ``ray.init()`` starts when given no address: a ``distributed.LocalCluster``
of worker processes on 127.0.0.1 (one per CPU, one thread each), with raycompat's
scheduler plugins, its node ledger, and the Dask settings Ray programs need.
"""

from __future__ import annotations

import logging
import math
import os
import tempfile
import warnings

import dask
import distributed
from distributed.core import Status
from tornado.ioloop import PeriodicCallback

from raycompat._dask import host_pool, latency, observability, reference_plugin, retries
from raycompat._dask import spawn_guard, state_plugin, task_events
from raycompat._dask.actor_host import is_host
from raycompat._dask import ledger as _ledger
from raycompat._dask import driver


#: Each worker process's memory limit (Dask's syntax: "2GiB", a fraction of RAM, "auto":
#: the machine's memory divided among the workers).
MEMORY_LIMIT_ENV = "RAYCOMPAT_WORKER_MEMORY_LIMIT"

#: Dask settings the embedded cluster uses unless the user's own dask config says otherwise.
_EMBEDDED_DASK_DEFAULTS = {
    # Ray does not queue root tasks; measured 496 -> 784+ tasks/s for a submit loop.
    "distributed.scheduler.worker-saturation": float("inf"),
    # Ray workers may start subprocesses (multiprocessing inside a task).
    "distributed.worker.daemon": False,
    # Per-task max_retries for worker deaths is enforced by retries.MaxRetriesPlugin.
    "distributed.scheduler.allowed-failures": retries.EMBEDDED_ALLOWED_FAILURES,
    # The workers' statistical profiler walks every thread's stack every 10 ms; task
    # trees that block in get() keep many threads. Every 100 ms still fills the
    # dashboard's profile page: fib(12) tree 1.09-1.16 s -> 1.01-1.06 s (interleaved).
    "distributed.worker.profile.interval": "100ms",
}


def start(num_cpus, num_gpus, resources, include_dashboard, dashboard_host, dashboard_port) -> tuple:
    """Start the cluster; returns ``(cluster, client, ledger, tmpdir)``."""
    if num_cpus is None:
        num_cpus = os.cpu_count() or 1
    totals = {"CPU": float(num_cpus)}
    if num_gpus:
        totals["GPU"] = float(num_gpus)
    for name, q in (resources or {}).items():
        if name in ("CPU", "GPU"):
            raise ValueError(
                "Use the 'num_cpus' and 'num_gpus' keyword instead of 'CPU' and 'GPU' in 'resources' keyword"
            )
        totals[name] = float(q)
    n_workers = max(1, math.ceil(num_cpus))
    tmpdir = tempfile.mkdtemp(prefix="raycompat-")
    os.chmod(tmpdir, 0o700)
    ledger = _ledger.Ledger.create(tmpdir, totals)
    if include_dashboard is False:
        # Dask's scheduler serves its HTTP routes (health, metrics) even without the
        # dashboard, on port 8787 unless told otherwise: any free loopback port will do.
        dashboard_address = "127.0.0.1:0"
    else:
        port = 8787 if dashboard_port is None else dashboard_port
        dashboard_address = f"{dashboard_host}:{port}"
    spawn_guard.install()
    _quiet_retry_exhaustion()
    # The scheduler runs in this process: its warning about a key this process asked
    # for before the worker that made it announced it is expected (see refs.rebound).
    warnings.filterwarnings("ignore", message=r"Client .* desires key .* but key is unknown")
    with dask.config.set(_apply_defaults()):
        cluster = distributed.LocalCluster(
            n_workers=n_workers,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=dashboard_address,
            worker_dashboard_address=None,
            env={_ledger.ENV_VAR: ledger.path},
            # Import the task wrapper while the workers start, not on their first task.
            preload=["raycompat._dask.worker_task"],
            local_directory=tmpdir,
            silence_logs=logging.ERROR,
            # Dask's nanny kills a worker past 95% of this (Ray's memory monitor, per node).
            memory_limit=os.environ.get(MEMORY_LIMIT_ENV, "auto"),
            scheduler_kwargs={"dashboard": include_dashboard is not False},
        )
        if cluster.scheduler.allowed_failures == retries.EMBEDDED_ALLOWED_FAILURES:
            max_retries = retries.MaxRetriesPlugin(running_dir=tmpdir)
            cluster.scheduler.add_plugin(max_retries)
            max_retries.start(cluster.scheduler)
        observability.install(cluster.scheduler)
        reference_plugin.install(cluster.scheduler)
        task_events.install(cluster.scheduler)
        state_plugin.install(cluster.scheduler, node_totals={"127.0.0.1": totals})
        host_pool.install(cluster)
        _keep_workers(cluster)
        intervals = latency.StreamIntervalPlugin()
        cluster.scheduler.add_plugin(intervals)
        intervals.start(cluster.scheduler)
        # Results are fetched straight from the (loopback) workers, not relayed by the
        # scheduler, which shares this process's event loop: 2,000 empty tasks 1,400-1,520/s
        # -> 1,530-1,710/s (interleaved runs).
        # Dask's default client, unless the user has one: distributed.progress(refs),
        # wait() and dask.compute find the cluster by themselves.
        client = distributed.Client(
            cluster, set_as_default=driver.no_default_client(), direct_to_workers=True
        )
    return cluster, client, ledger, tmpdir


class _RetriesExhausted(logging.Filter):
    """Drops the in-process scheduler's "Task X marked as failed because 1000001 workers
    died" (the count is ``retries.py``'s offset, not deaths): ``ray.get`` raises Ray's
    ``WorkerCrashedError`` or ``OutOfMemoryError`` for it, and Ray logs nothing then."""

    def filter(self, record):
        return not str(record.msg).startswith("Task %s marked as failed because %d workers died")


def _quiet_retry_exhaustion() -> None:
    log = logging.getLogger("distributed.scheduler")
    if not any(isinstance(f, _RetriesExhausted) for f in log.filters):
        log.addFilter(_RetriesExhausted())


#: Seconds between checks that every task worker's nanny is still there.
REVIVE_INTERVAL = 2.0


def _keep_workers(cluster) -> None:
    """Bring back a task worker whose nanny closed for good.

    A nanny restarts its worker when the process dies, but one whose worker does not
    exit in time after a memory kill closes itself (dask/distributed#7312, measured: a
    2-worker cluster left with 0 workers for 200 s, shared/docs/reliability.md 2.3), and
    the ``LocalCluster`` does not replace it, nor one it dropped itself. Ray's node keeps
    its worker pool; so every ``REVIVE_INTERVAL`` seconds, a task worker of the
    cluster's spec that is closed or gone is started again. Actor hosts come back
    through ``host_pool``."""
    def revive():
        if cluster.status != Status.running:
            return
        dead = [
            name for name, nanny in list(cluster.workers.items())
            if name in cluster.worker_spec and not is_host(name)
            and nanny.status in (Status.closed, Status.failed)
        ]
        for name in dead:
            del cluster.workers[name]
        # Dask's own SpecCluster drops a nanny whose worker is not back 15 s after its
        # removal (``distributed.deploy.lost-worker-timeout``), e.g. killed again while
        # restarting, and leaves its name in the spec.
        dead += [name for name in cluster.worker_spec if name not in cluster.workers and not is_host(name)]
        if dead:
            logging.getLogger("raycompat").warning("Restarting %d worker(s) whose nanny had closed: %s",
                                                   len(dead), ", ".join(map(str, dead)))
            cluster._correct_state()

    callback = PeriodicCallback(revive, REVIVE_INTERVAL * 1000)
    cluster.loop.add_callback(callback.start)
    cluster._raycompat_keep_workers = callback  # stopped with the cluster's loop


def _apply_defaults() -> dict:
    """The embedded-cluster defaults that the user's own dask config does not override."""
    shipped = dask.config.merge(*dask.config.defaults)  # the packages' own yaml defaults
    out = {}
    for key, value in _EMBEDDED_DASK_DEFAULTS.items():
        if dask.config.get(key, None) == _lookup(shipped, key):
            out[key] = value
    return out


def _lookup(tree: dict, key: str):
    node = tree
    for part in key.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    if isinstance(node, str) and node.lower() == "inf":
        return float("inf")
    return node
