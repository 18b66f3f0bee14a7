"""``ray.put`` and ``ray.cancel`` of one ref: the operations on objects below the API.

``put`` stores a copy of the value under a key of its own (``keys.put_key``) and lets
the refs sealed inside it live as long as it (``references.contain``). ``cancel`` marks
the key cancelled (``results``), interrupts the task where it runs (``interrupts``), and
cancels its Dask future.
"""

from __future__ import annotations

import os
import time

import distributed
from distributed import Future

from raycompat._dask import batching
from raycompat._dask import context as _context
from raycompat._dask import driver as _driver
from raycompat._dask import interrupts, keys, references, results
from raycompat._dask.ledger import process_ledger
from raycompat._dask.refs import ObjectRef
from raycompat._dask.serialization import Sealed


@interrupts.api_call
def put(value, *, _owner=None) -> ObjectRef:
    """``ray.put``: store a copy of ``value`` on the cluster, return its ref."""
    if type(value) is ObjectRef:
        raise TypeError(
            "Calling 'put' on an ray.ObjectRef is not allowed. "
            "If you really want to do this, you can wrap the "
            "ray.ObjectRef in a list and call 'put' on it."
        )
    _driver.current_session()
    client = _driver.client()
    try:
        # In the driver, scatter writes the bytes out before it returns; inside a task it
        # may keep the object in this process, so detach it from later mutation.
        with references.collecting() as inner:
            sealed = Sealed.seal(value, copy=_context.current_task() is not None)
    except Exception as e:  # noqa: BLE001 - Ray's message names the value's type
        raise TypeError(f"Could not serialize the put value {value!r}:\n{type(e).__name__}: {e}") from e
    # Inside a task or actor the object stays in this process, its owner (Ray's word).
    in_worker = _context.current_task() is not None
    key = keys.put_key(in_worker)
    workers = [distributed.get_worker().address] if in_worker else None
    fut = _scatter(client, key, sealed, workers)
    # The refs inside live as long as the object (``value`` holds them until now).
    references.contain(client, fut.key, inner)
    return ObjectRef(fut, None, None)


#: Tries of a driver's ``put`` whose scatter met a worker dying meanwhile.
_SCATTER_TRIES = 5


def _scatter(client, key, sealed, workers) -> Future:
    """Store ``sealed`` under ``key``. A worker that dies while the scheduler hands it the
    object fails the scheduler's scatter, and Dask answers by closing the connection; a
    driver's ``put`` then tries again (another worker, or the one its nanny restarts), as
    Ray's ``put`` does not fail for a worker's death. A lost scheduler is not retried."""
    for attempt in range(_SCATTER_TRIES):
        try:
            return client.scatter({key: sealed}, workers=workers, hash=False)[key]
        except OSError:  # CommClosedError among them
            if workers or attempt == _SCATTER_TRIES - 1 or _driver.lost_scheduler(client) is not None:
                raise
            time.sleep(0.2 * (attempt + 1))
    raise AssertionError("unreachable")


@interrupts.api_call
def cancel(ref, *, force=False, recursive=True):
    """``ray.cancel``: a pending task never runs; ``get`` raises TaskCancelledError.

    A running task is marked cancelled at once (its ``get`` raises, its result is
    discarded), its ``is_canceled()`` turns true, and ``KeyboardInterrupt`` is raised in
    its thread as Ray does (best effort: Python delivers it between bytecodes, so a
    blocking C call such as ``time.sleep`` finishes first). ``force=True`` restarts the
    worker process running it, as Ray kills the worker. A finished task is left alone:
    Dask's own ``cancel`` would delete its result, Ray's does nothing.
    """
    if type(ref) is not ObjectRef:
        raise TypeError(
            "ray.cancel() only supported for object refs. "
            f"For actors, try ray.kill(). Got: {type(ref)}."
        )
    fut = ref._future
    if fut.done():
        return None
    client = fut.client
    results.mark_cancelled(ref._key, fut)
    if type(fut) is not Future:  # an actor call: queued ones never run
        fut.cancel_on_actor()
        return None

    batching.flush(client)  # a queued task must reach the scheduler before its cancel
    try:
        client.run(_interrupt_task, ref._key, bool(force), wait=False, on_error="ignore")
    except Exception:  # noqa: BLE001 - best effort: the key is cancelled regardless
        pass
    try:
        client.cancel([fut], force=True, reason="cancelled with ray.cancel")
    except TypeError:
        client.cancel([fut], force=True)
    return None


async def _interrupt_task(key, force, dask_worker=None):
    """On each worker: interrupt (or, with ``force``, kill) the thread running ``key``."""
    if force and key in dask_worker.active_threads.values():
        ledger = process_ledger()
        if ledger is not None:
            ledger.stop_updates()  # exit between updates, never inside one
        os._exit(1)
    # Not running here (yet): remembered, so that it never runs if it starts after all.
    interrupts.interrupt(key)
    return None
