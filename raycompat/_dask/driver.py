"""The driver's session as the rest of the engine sees it: which session, client, job and
namespace the calling thread works for.

``session.py`` (the lifecycle: init, connect, shutdown) sits above every other module;
it sets the session here, registers ``init`` as the initializer a lookup calls before
``ray.init()`` (Ray starts a local cluster on first use), and runs the teardown hooks
that modules register here (``on_teardown``) when the session closes.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import weakref
from typing import Callable, Optional

import distributed
from distributed.comm import get_address_host

from raycompat import exceptions as rex
from raycompat._dask import context as _context
from raycompat._dask import latency
from raycompat._dask import ledger as _ledger

#: Held while the session is started or stopped.
lock = threading.RLock()
_session = None  # the driver's ``session.Session``, or None
_initializer: Optional[Callable[[], object]] = None
_teardown_hooks: list = []
#: Clients whose connection to their scheduler broke, with the scheduler's address.
_lost: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()
_lost_hooks: list = []


def set_session(session) -> None:
    global _session
    _session = session


def set_initializer(init: Callable[[], object]) -> None:
    global _initializer
    _initializer = init


def on_teardown(hook: Callable[[object], None]) -> None:
    """Run ``hook(session)`` as each session closes, before its pins go."""
    _teardown_hooks.append(hook)


def teardown_hooks() -> list:
    return list(_teardown_hooks)


def on_scheduler_lost(hook: Callable[[object, BaseException], None]) -> None:
    """Run ``hook(client, error)`` on the client's event loop when its scheduler is lost."""
    _lost_hooks.append(hook)


def scheduler_lost(client, address: str) -> None:
    """The driver's connection to its scheduler broke (on the client's event loop).

    Dask's scheduler holds every key, and its workers close when it goes, so nothing of
    the session survives (as Ray's driver cannot go on without its GCS): from now on
    every call that needs the cluster raises ``scheduler_lost_error``, at once."""
    _lost[client] = address
    logging.getLogger("raycompat").error("%s", scheduler_lost_error(address).client_exc)
    for hook in list(_lost_hooks):
        try:
            hook(client, scheduler_lost_error(address))
        except Exception:  # noqa: BLE001 - the other hooks still run
            logging.getLogger("raycompat").exception("scheduler-lost hook %r failed", hook)


def scheduler_lost_error(address: str) -> rex.RaySystemError:
    """What ``get``, ``.remote()``, ``put`` and the rest raise once the scheduler is lost."""
    return rex.RaySystemError(
        f"Lost the connection to the Dask scheduler at {address} (raycompat's GCS): its "
        "tasks, objects and actors are gone. Call ray.shutdown(), then ray.init() to "
        "connect to a running scheduler."
    )


def lost_scheduler(client) -> Optional[str]:
    """The address of ``client``'s scheduler if the connection to it was lost, else None."""
    return _lost.get(client)


def check_connected(client) -> None:
    """Raise ``scheduler_lost_error`` if ``client`` lost its scheduler."""
    address = _lost.get(client)
    if address is not None:
        raise scheduler_lost_error(address)


def in_worker() -> bool:
    try:
        distributed.get_worker()
        return True
    except ValueError:
        return False


def current_session(auto_init: bool = True):
    """The driver's session, starting the embedded cluster on first use as Ray does."""
    if _session is None and auto_init and _context.current_task() is None and not in_worker():
        if os.environ.get("RAY_ENABLE_AUTO_CONNECT", "1") == "0":
            raise RuntimeError(
                "Ray has not been started yet. You can start Ray with 'ray.init()'."
            )
        with lock:
            if _session is None and _initializer is not None:
                _initializer()
    return _session


def no_default_client() -> bool:
    """True when this process has no Dask default client: then the client ``init`` makes
    becomes it, so Dask's tools that look for one (``distributed.progress``, ``wait``,
    ``dask.compute``) use this cluster; a user's own default client keeps its place."""
    try:
        distributed.default_client()
    except ValueError:
        return True
    return False


def is_initialized() -> bool:
    """True in a driver after ``init``, and inside tasks and actors (as Ray)."""
    return _session is not None or _context.current_task() is not None


def client() -> distributed.Client:
    """The client to submit with: the driver's, or, inside a task, the worker's."""
    if _context.current_task() is not None or (_session is None and in_worker()):
        c = distributed.get_client()
        latency.tune_client(c)
        return c
    return connected_session().client


def connected_session():
    """``current_session()``, raising if its scheduler was lost (see ``scheduler_lost``)."""
    session = current_session()
    if session is not None:
        check_connected(session.client)
    return session


def client_for_rebind() -> distributed.Client:
    if _context.current_task() is not None or in_worker():
        return distributed.get_client()
    return current_session().client


def _driver_job_id() -> Optional[str]:
    return _session.job_id if _session is not None else None


current_job_id = _context.current_job_id


def current_namespace() -> Optional[str]:
    ctx = _context.current_task()
    if ctx is not None:
        return ctx.namespace
    return _session.namespace if _session is not None else None


def embedded_ledger():
    """The embedded cluster's node ledger (its totals place tasks), None on a joined cluster."""
    if _context.current_task() is not None or _session is None:
        return _ledger.process_ledger() if _ledger.on_embedded_cluster() else None
    return _session.ledger


def host_of(address: str) -> str:
    try:
        return get_address_host(address)
    except Exception:  # noqa: BLE001 - unusual address
        return address


def node_id_of_host(host: str) -> str:
    """Ray's NodeID for a host: stable, derived from its address."""
    return hashlib.blake2b(host.encode(), digest_size=28).hexdigest()


_context.set_driver_job_source(_driver_job_id)
