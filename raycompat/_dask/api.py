"""``ray.get``, ``ray.put``, ``ray.wait`` and ``ray.cancel`` on Dask futures.

Validation follows Ray's, message for message, before anything reaches Dask. Waiting
happens on the client's event loop over the futures' own state (no polling). Inside a
task, a blocking call secedes from the worker's thread pool and gives the task's CPU
back to the node ledger, as Ray releases a blocked worker's CPU; so task trees that
``get`` their children finish on any number of CPUs.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
import weakref
from typing import Optional

import distributed
from distributed import Future
from distributed.client import FutureCancelledError

from raycompat import exceptions as rex
from raycompat._dask import context as _context
from raycompat._dask import interrupts, keys
from raycompat._dask import references
from raycompat._dask import driver as _driver
from raycompat._dask.ledger import process_ledger
from raycompat._dask.refs import ObjectRef
from raycompat._dask.serialization import Sealed
from raycompat._dask.streaming import ObjectRefGenerator, StreamEnd
from raycompat._dask import batching

#: Keys cancelled with ``ray.cancel`` (their ``get`` raises TaskCancelledError), each with
#: its client; a key this process no longer holds is dropped (see ``_mark_cancelled``).
_cancelled: dict = {}
_prune_cancelled_at = 1024


def _mark_cancelled(key, client) -> None:
    global _prune_cancelled_at
    _cancelled[key] = weakref.ref(client)
    if len(_cancelled) >= _prune_cancelled_at:
        for k, c in list(_cancelled.items()):
            live = c()
            if live is None or k not in live.refcount:
                _cancelled.pop(k, None)
        _prune_cancelled_at = max(1024, 2 * len(_cancelled))


# ---------------------------------------------------------------------------- blocking


@contextlib.contextmanager
def _blocking():
    """Inside a task: leave the thread pool and give back the CPU while blocked. Never
    interrupted (see ``interrupts``): ``ray.cancel`` wakes the wait instead."""
    ctx = _context.current_task()
    if ctx is None:
        yield
        return
    cpu = (ctx.held or {}).get("CPU", 0.0)
    ledger = ctx.ledger if cpu else None
    with interrupts.uninterruptible():
        seceded = False
        try:
            if ledger is not None:
                ledger.release({"CPU": cpu})
                ctx.held = {**ctx.held, "CPU": 0.0}  # what the task's end gives back
            if not ctx.seceded:
                distributed.secede()
                seceded = True
            yield
        finally:
            if seceded:
                distributed.rejoin()
            if ledger is not None:
                ledger.acquire({"CPU": cpu}, force=True)
                ctx.held = {**ctx.held, "CPU": cpu}


async def _await_done(futures: list, count: int, timeout: Optional[float], fail_fast: bool, task=None) -> None:
    """Return once ``count`` of ``futures`` are done, one erred (if ``fail_fast``), or timeout
    (or, for a waiting ``task``, once ``ray.cancel`` wakes it).

    One callback per future and one event: O(n) for n futures."""
    enough = asyncio.Event()
    done = 0
    if task is not None:
        loop = asyncio.get_running_loop()
        interrupts.set_waker(task, lambda: loop.call_soon_threadsafe(enough.set))

    def on_done(f):
        nonlocal done
        done += 1
        if done >= count or (fail_fast and f.status != "finished"):
            enough.set()

    waiters = []
    for f in futures:
        if f.done():
            on_done(f)
        else:
            t = asyncio.ensure_future(f._state.wait())
            t.add_done_callback(lambda _t, f=f: on_done(f))
            waiters.append(t)
    try:
        try:
            await asyncio.wait_for(enough.wait(), timeout)
        except asyncio.TimeoutError:
            return
    finally:
        if task is not None:
            interrupts.set_waker(task, None)
        for t in waiters:
            if not t.done():
                t.cancel()


def _wait_futures(client, futures, count, timeout, fail_fast):
    if sum(1 for f in futures if f.done()) >= count and not fail_fast:
        return
    if all(f.done() for f in futures):
        return
    if timeout is not None and timeout <= 0:
        return
    with _blocking():
        task = _context.current_task()
        client.sync(_await_done, futures, count, timeout, fail_fast, task)
        if task is not None:
            interrupts.raise_if_cancelled(task)  # woken by ray.cancel


# ---------------------------------------------------------------------------- errors


def translate_error(exc: BaseException, ref: ObjectRef) -> BaseException:
    """The exception ``ray.get`` raises for a ref whose Dask future failed."""
    if isinstance(exc, rex.RayTaskError):
        origin = getattr(exc, "_dask_key", None)
        if origin is not None and origin != ref._key:
            # A top-level argument failed and this task never ran: Ray's wrapping.
            name = ref._task_name or "task"
            tb = (
                "Traceback (most recent call last):\n"
                "  At least one of the input arguments for this task could not be computed:\n"
                f"ray.exceptions.RayTaskError: {exc}"
            )
            outer = rex.RayTaskError(name, tb, exc.cause, proctitle=f"ray::{name}", pid=exc.pid, ip=exc.ip)
            return outer.as_instanceof_cause()
        return exc.as_instanceof_cause()
    if isinstance(exc, rex.RayError):
        # The same stored error may be raised by many gets: do not let its traceback grow.
        return exc.with_traceback(None)
    if ref._key in _cancelled:
        return rex.TaskCancelledError(ref.hex())
    if type(exc).__name__ == "KilledWorker":
        return rex.WorkerCrashedError()
    if isinstance(exc, FutureCancelledError) or isinstance(exc, asyncio.CancelledError):
        reason = str(getattr(exc, "reason", "") or "")
        if "scheduler-connection-lost" in reason:
            return rex.RaySystemError(f"the connection to the Dask scheduler was lost ({exc})")
        if keys.owned_by_worker(ref._key):
            # A task's or actor's put, gone with the process that made it.
            return rex.OwnerDiedError(ref.hex(), None, "")
        return rex.ObjectLostError(ref.hex(), None, "")
    return rex.RaySystemError(exc)


def _raise_for(fut: Future, ref: ObjectRef):
    if ref._key in _cancelled:
        raise rex.TaskCancelledError(ref.hex())
    if fut.status == "error":
        exc = fut.exception()
    elif fut.status in ("cancelled", "lost"):
        exc = FutureCancelledError(fut.key, getattr(fut._state, "exception", None) or fut.status)
    else:
        return
    raise translate_error(exc, ref) from None


def _value(sealed, ref: ObjectRef):
    v = sealed.unseal() if isinstance(sealed, Sealed) else sealed
    if type(v) is StreamEnd:  # a streaming call's own result (``gen.completed()``)
        if v.error is not None:
            raise translate_error(v.error, ref) from None
        return None
    return v if ref._index is None else v[ref._index]


# ---------------------------------------------------------------------------- get


def _check_timeout(timeout):
    if timeout is None:
        return None
    if not isinstance(timeout, (int, float)) or isinstance(timeout, bool):
        raise TypeError(f"timeout must be a number of seconds or None, got {type(timeout)}")
    return None if timeout < 0 else float(timeout)  # Ray: a negative timeout waits forever


def get_one(ref: ObjectRef, timeout):
    fut = ref._future
    if ref._key in _cancelled:
        raise rex.TaskCancelledError(ref.hex())
    if not fut.done():
        _wait_futures(fut.client, [fut], 1, timeout, True)
        if not fut.done():
            raise rex.GetTimeoutError("Get timed out: some object(s) not ready.")
    if fut.status != "finished":
        _raise_for(fut, ref)
    try:
        return _value(fut.result(), ref)
    except (FutureCancelledError, asyncio.CancelledError) as e:
        raise translate_error(e, ref) from None


@interrupts.api_call
def get(object_refs, *, timeout=None):
    """``ray.get``: a ref's value, or a list of values in the order of the list."""
    if type(object_refs) is ObjectRef:
        _driver.current_session()
        return get_one(object_refs, _check_timeout(timeout))
    if type(object_refs) is ObjectRefGenerator:
        return object_refs  # Ray returns a generator unchanged
    if not isinstance(object_refs, list):
        raise ValueError(
            f"Invalid type of object refs, {type(object_refs)}, is given. "
            "'object_refs' must either be an ObjectRef or a list of ObjectRefs. "
        )
    for r in object_refs:
        if type(r) is not ObjectRef:
            raise TypeError(
                f"Attempting to call `get` on the value {r}, which is not an ray.ObjectRef."
            )
    timeout = _check_timeout(timeout)
    if not object_refs:
        return []
    _driver.current_session()
    futures = list({r._key: r._future for r in object_refs}.values())
    client = futures[0].client
    _wait_futures(client, futures, len(futures), timeout, True)
    by_key = {r._key: r for r in object_refs}
    first_bad = next((f for f in futures if f.done() and f.status != "finished"), None)
    if first_bad is None:
        first_bad = next((f for f in futures if f.key in _cancelled), None)
    if first_bad is not None:
        _raise_for(first_bad, by_key[first_bad.key])
        raise rex.TaskCancelledError(by_key[first_bad.key].hex())
    if not all(f.done() for f in futures):
        raise rex.GetTimeoutError("Get timed out: some object(s) not ready.")
    dask_futures = [f for f in futures if type(f) is Future]
    try:
        values = client.gather(dask_futures) if dask_futures else []
    except Exception as e:  # noqa: BLE001 - lost between done and gather
        raise translate_error(e, object_refs[0]) from None
    sealed = dict(zip((f.key for f in dask_futures), values))
    for f in futures:
        if type(f) is not Future:  # an actor call's result, already here
            sealed[f.key] = f.result()
    return [_value(sealed[r._key], r) for r in object_refs]


# ---------------------------------------------------------------------------- put


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
    fut = client.scatter({key: sealed}, workers=workers, hash=False)[key]
    # The refs inside live as long as the object (``value`` holds them until now).
    references.contain(client, fut.key, inner)
    return ObjectRef(fut, None, None)


# ---------------------------------------------------------------------------- wait


@interrupts.api_call
def wait(ray_waitables, *, num_returns=1, timeout=None, fetch_local=True):
    """``ray.wait``: ``(ready, not_ready)``, ready in input order, at most ``num_returns``."""
    if type(ray_waitables) is ObjectRef:
        raise TypeError(
            "wait() expected a list of ray.ObjectRef or ray.ObjectRefGenerator"
            ", got a single ray.ObjectRef or ray.ObjectRefGenerator "
            f"{ray_waitables}"
        )
    if not isinstance(ray_waitables, list):
        raise TypeError(
            "wait() expected a list of ray.ObjectRef or "
            "ray.ObjectRefGenerator, "
            f"got {type(ray_waitables)}"
        )
    if timeout is not None and timeout < 0:
        raise ValueError("The 'timeout' argument must be nonnegative. " f"Received {timeout}")
    for r in ray_waitables:
        if type(r) is not ObjectRef and type(r) is not ObjectRefGenerator:
            raise TypeError(
                "wait() expected a list of ray.ObjectRef or "
                "ray.ObjectRefGenerator, "
                f"got list containing {type(r)}"
            )
    if not ray_waitables:
        return [], []
    if len(set(ray_waitables)) != len(ray_waitables):
        raise ValueError("Wait requires a list of unique ray_waitables.")
    if num_returns <= 0:
        raise ValueError("Invalid number of objects to return %d." % num_returns)
    if num_returns > len(ray_waitables):
        raise ValueError(
            "num_returns cannot be greater than the number "
            "of ray_waitables provided to ray.wait."
        )
    _driver.current_session()
    futures = list({_wait_key(r): _waitable(r) for r in ray_waitables}.values())

    def ready(r) -> bool:
        if type(r) is ObjectRefGenerator:
            return r.next_ready()
        return r._future.done() or r._key in _cancelled

    def ready_count():
        return sum(1 for r in ray_waitables if ready(r))

    if ready_count() < num_returns:
        client = futures[0].client
        deadline = None if timeout is None else time.monotonic() + timeout
        # One future can ready several refs (num_returns views): wait one at a time.
        while ready_count() < num_returns:
            left = [f for f in futures if not f.done()]
            remaining = None if deadline is None else deadline - time.monotonic()
            if not left or (remaining is not None and remaining <= 0):
                break
            _wait_futures(client, left, 1, remaining, False)
    ready_refs = [r for r in ray_waitables if ready(r)][:num_returns]
    ready_ids = {id(r) for r in ready_refs}
    return ready_refs, [r for r in ray_waitables if id(r) not in ready_ids]


def _wait_key(r):
    return ("generator", id(r)) if type(r) is ObjectRefGenerator else r._key


def _waitable(r):
    """What ``wait`` waits on: a ref's future, or "a generator's next item is here"."""
    return r._readiness() if type(r) is ObjectRefGenerator else r._future


# ---------------------------------------------------------------------------- cancel


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
    if type(ref) is ObjectRefGenerator:
        ref = ref.completed()  # cancelling a generator cancels its call
    if type(ref) is not ObjectRef:
        raise TypeError(
            "ray.cancel() only supported for object refs. "
            f"For actors, try ray.kill(). Got: {type(ref)}."
        )
    fut = ref._future
    if fut.done():
        return None
    client = fut.client
    _mark_cancelled(ref._key, client)
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
