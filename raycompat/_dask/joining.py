"""Joining a cluster raycompat did not start (``ray.init(address)``).

Ray's refusals of what only a new cluster takes; the client to the scheduler, with TLS
(``security=`` or Ray's ``RAY_USE_TLS`` variables) and errors that say what to fix;
watching for the scheduler's loss, after which the session raises at once instead of
waiting for Dask to reconnect; and the plugins that give a joined cluster what the
embedded one has from its start (host CPU ledgers, per-task ``max_retries``, node loss,
the reference model, the task record, the actor page, the cleanup after a driver).
"""

from __future__ import annotations

import os
import warnings
import weakref
from typing import Any

import distributed

from raycompat._dask import driver, host_ledger, lifetime, node_loss, observability
from raycompat._dask import reference_plugin, references, retries, state_plugin, task_events


def check_join_arguments(num_cpus, num_gpus, resources, ignored: dict) -> None:
    """Ray's refusals, in Ray's order, of what only a new cluster can be given (a joined
    cluster's resources are its workers')."""
    if num_cpus is not None or num_gpus is not None:
        raise ValueError("When connecting to an existing cluster, num_cpus and num_gpus must not be provided.")
    for name, given in (
        ("resources", resources is not None),
        ("labels", ignored.get("labels") is not None),
        ("object_store_memory", ignored.get("object_store_memory") is not None),
        ("_system_config", bool(ignored.get("_system_config"))),
        ("_enable_object_reconstruction", bool(ignored.get("_enable_object_reconstruction"))),
    ):
        if given:
            raise ValueError(f"When connecting to an existing cluster, {name} must not be provided.")
    if ignored.get("_node_name") is not None:
        raise ValueError("_node_name cannot be configured when connecting to an existing cluster.")


def register_driver(session) -> None:
    """On a cluster we only join, install what the embedded cluster has from its start
    (all idempotent, so the first driver installs and later ones find them): the hosts'
    CPU ledgers on every worker, and on the scheduler per-task ``max_retries``, failing
    hard-affinity tasks of a lost node, the reference model, the task record of ``ray.timeline()``, the actor page, what
    the state API lists (``state_plugin.py``), and the
    cleanup after this driver when it leaves (see ``lifetime.py``)."""
    client = session.client
    host_ledger.install(client)
    try:
        client.run_on_scheduler(lifetime.register_driver, client_id=client.id, job=session.job_id)
        session.lifetime_registered = True
        references.set_plugin_present(client, install_scheduler_plugins(client))
    except Exception as e:  # noqa: BLE001 - e.g. raycompat not importable on the scheduler
        warnings.warn(
            f"raycompat could not install its plugins on the scheduler ({e}): tasks are retried "
            "up to the scheduler's allowed-failures whatever their max_retries, there is no "
            "/raycompat/actors page, and this driver's pinned refs and non-detached actor "
            "names outlive it if it exits without ray.shutdown(). Install raycompat where "
            "the scheduler runs.",
            UserWarning,
            stacklevel=3,
        )


def install_scheduler_plugins(client) -> bool:
    """Install raycompat's scheduler plugins (idempotent) on ``client``'s scheduler:
    the first driver to join does, and ``raycompat start`` at once. Returns whether the
    scheduler has the reference model's plugin."""
    present = client.run_on_scheduler(reference_plugin.install_remote)
    for install in (task_events.install_remote, retries.install_remote, node_loss.install_remote,
                    observability.install_remote, state_plugin.install_remote):
        client.run_on_scheduler(install)
    return present


def open_client(target: str, security, timeout: float) -> distributed.Client:
    """A client of the scheduler at ``target`` (TLS from ``security`` or Ray's
    ``RAY_USE_TLS`` variables), watched for the scheduler's loss; ``ConnectionError``
    saying what went wrong and how to fix it."""
    if security is None:
        security = _security_from_ray_env()
        if security is not None and target.startswith("tcp://"):
            target = "tls://" + target[len("tcp://"):]  # RAY_USE_TLS: Ray addresses have no scheme
    _check_tls(target, security)
    kwargs: dict[str, Any] = {"timeout": timeout, "set_as_default": driver.no_default_client()}
    if security is not None:
        kwargs["security"] = security
    try:
        client = distributed.Client(target, **kwargs)
    except (OSError, TimeoutError) as e:
        raise ConnectionError(_connect_failure(target, timeout, e)) from None
    watch_scheduler(client, owned=True)
    return client


_TLS_HINT = (
    "pass ray.init(..., security=distributed.security.Security(tls_ca_file=..., "
    "tls_client_cert=..., tls_client_key=..., require_encryption=True)), or set RAY_USE_TLS=1 "
    "with RAY_TLS_CA_CERT, RAY_TLS_SERVER_CERT and RAY_TLS_SERVER_KEY"
)


def _security_from_ray_env():
    """Ray's TLS settings (``RAY_USE_TLS=1`` and the three files) as Dask's ``Security``:
    Ray's one certificate serves this process as a client too, as in Ray."""
    if os.environ.get("RAY_USE_TLS", "0").lower() not in ("1", "true"):
        return None
    names = ("RAY_TLS_SERVER_CERT", "RAY_TLS_SERVER_KEY", "RAY_TLS_CA_CERT")
    if any(not os.environ.get(n) for n in names):
        raise RuntimeError(  # Ray's own words (ray._common.tls_utils.load_certs_from_env)
            "If the environment variable RAY_USE_TLS is set to true "
            "then RAY_TLS_SERVER_CERT, RAY_TLS_SERVER_KEY and "
            "RAY_TLS_CA_CERT must also be set."
        )
    from distributed.security import Security  # late: only with RAY_USE_TLS

    cert, key, ca = (os.environ[n] for n in names)
    for name, path in zip(names, (cert, key, ca)):
        if not os.path.isfile(path):
            raise FileNotFoundError(f"{name} names {path!r}, which is not a file")
    return Security(tls_ca_file=ca, tls_client_cert=cert, tls_client_key=key, require_encryption=True)


def _check_tls(target: str, security) -> None:
    """A ``tls://`` address needs a client certificate: say so before Dask tries (without
    one, Dask raises a TypeError and leaves a half-made client that stalls exit)."""
    if not target.startswith("tls://"):
        return
    from distributed.security import Security  # late: only for tls:// addresses

    sec = security if security is not None else Security()  # Dask's config may hold TLS files
    try:
        ctx = sec.get_connection_args("client").get("ssl_context")
    except Exception as e:  # noqa: BLE001 - unreadable files, a wrong password...
        raise ConnectionError(f"Could not load the TLS certificates to connect to {target}: {e}") from None
    if ctx is None:
        raise ConnectionError(
            f"{target} is a TLS address, but no CA file and client certificate were given "
            f"(Dask's TLS is mutual: the scheduler checks the client's certificate): {_TLS_HINT}."
        )


def _connect_failure(target: str, timeout: float, e: BaseException) -> str:
    """The ``ConnectionError`` message when ``distributed.Client(target)`` fails."""
    from distributed.comm.core import CommClosedError, FatalCommClosedError  # late: failure path only

    text = str(e)
    tls_refused = isinstance(e, FatalCommClosedError) or (
        target.startswith("tls://") and isinstance(e, CommClosedError)  # closed mid-handshake
    )
    if tls_refused or any(w in text for w in ("SSL", "TLS", "certificate")):
        if "does not match" in text or "CERTIFICATE_VERIFY_FAILED" in text:
            who = ("this client refused the scheduler's certificate (it is not signed by the CA "
                   "this client trusts, tls_ca_file)")
        elif "ALERT" in text.upper():
            who = ("the scheduler refused this client's certificate (it is not signed by the CA "
                   "the scheduler trusts)")
        else:
            who = ("a certificate was refused: by this client (the scheduler's is not signed by "
                   "tls_ca_file) or by the scheduler (it does not trust this client's)")
        return f"The TLS handshake with the Dask scheduler at {target} failed ({text}): {who}. To connect, {_TLS_HINT}."
    if isinstance(e, CommClosedError) and target.startswith("tcp://"):
        return (
            f"The Dask scheduler at {target} closed the connection at once ({text}). If it "
            f"uses TLS (dask scheduler --protocol tls), connect to tls://... and {_TLS_HINT}."
        )
    return (
        f"Could not connect to a Dask scheduler at {target} within {timeout:g} s ({e}). "
        "Start one with `dask scheduler` (and workers with `dask worker ADDRESS`), or call "
        "ray.init() with no address to start a local cluster."
    )


def watch_scheduler(client, owned: bool) -> None:
    """Turn the loss of the scheduler's connection into raycompat's "scheduler lost".

    Dask's client notices at once when the scheduler's process dies (its socket closes;
    when its host vanishes, after Dask's TCP timeout, ``distributed.comm.timeouts.tcp``).
    It then cancels every future ("scheduler-connection-lost") and, for up to its connect
    timeout, tries to reconnect, while new work waits. raycompat's session cannot
    outlive its scheduler (the keys, the workers and the actors are gone with it), so
    instead ``driver.scheduler_lost`` marks it lost (every later call raises at once)
    and fails the actor calls in flight; a client raycompat made itself then stops (no
    reconnecting, no connection attempts left to wait for) until ``ray.shutdown()``
    closes it. A client the user handed to ``init`` keeps Dask's reconnecting."""
    ref = weakref.ref(client)  # the client holds this function: no cycle through it

    async def reconnect():
        c = ref()
        if c is None:
            return
        address = getattr(c.scheduler, "address", None) or "?"
        driver.scheduler_lost(c, address)
        if not owned:
            await type(c)._reconnect(c)
            return
        # What Dask's _reconnect does first, then stop where it would retry.
        c.status = "closing"  # later messages are dropped (Dask: buffered for a reconnect)
        c.scheduler_comm = None
        for pc in c._periodic_callbacks.values():
            pc.stop()
        for st in c.futures.values():
            st.cancel(
                reason="scheduler-connection-lost",
                msg=f"Client lost the connection to the scheduler at {address}.",
            )
        c.futures.clear()
        await c.rpc.close()  # connection attempts in flight (and later ones) fail at once

    client._reconnect = reconnect
