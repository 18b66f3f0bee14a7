"""Waiting for refs and turning what Dask gives back into Ray's values and errors: the
blocking logic under ``ray.get``/``ray.wait``, ``ObjectRef.future()`` and generators.

Waiting happens on the client's event loop over the futures' own state (no polling).
Inside a task, a blocking call secedes from the worker's thread pool and gives the task's
CPU back to the node ledger, as Ray releases a blocked worker's CPU; so task trees that
``get`` their children finish on any number of CPUs. Works on anything with a ref's
``_future``/``_key``/``_index``/``hex()`` (it imports no ref class: ``refs.py`` is above).
"""

from __future__ import annotations

import asyncio
import contextlib
import weakref
from typing import Optional

import distributed
from distributed import Future
from distributed.client import FutureCancelledError

from raycompat import exceptions as rex
from raycompat._dask import context as _context
from raycompat._dask import driver as _driver
from raycompat._dask import interrupts, keys, memory_kills
from raycompat._dask.serialization import Sealed


class StreamEnd:
    """The result of a streaming call: how many items it yielded, and its error if any.

    ``ray.get`` of a ref to it (``gen.completed()``) gives None or raises the error."""

    __slots__ = ("count", "error")

    def __init__(self, count: int, error: Optional[BaseException] = None):
        self.count = count
        self.error = error

    def __reduce__(self):
        return (StreamEnd, (self.count, self.error))


#: Keys cancelled with ``ray.cancel`` (their ``get`` raises TaskCancelledError), each with
#: its client; a key this process no longer holds is dropped (see ``mark_cancelled``).
_cancelled: dict = {}
_prune_cancelled_at = 1024


def mark_cancelled(key, future) -> None:
    """Remember that ``key`` was cancelled while its future lives, or, for a Dask future,
    while its client still holds the key (other futures of it in this process)."""
    global _prune_cancelled_at
    _cancelled[key] = (weakref.ref(future), weakref.ref(future.client))
    if len(_cancelled) >= _prune_cancelled_at:
        for k, (f, c) in list(_cancelled.items()):
            client = c()
            if f() is None and (client is None or k not in client.refcount):
                _cancelled.pop(k, None)
        _prune_cancelled_at = max(1024, 2 * len(_cancelled))


# ---------------------------------------------------------------------------- blocking


@contextlib.contextmanager
def blocking():
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


def wait_futures(client, futures, count, timeout, fail_fast):
    if sum(1 for f in futures if f.done()) >= count and not fail_fast:
        return
    if all(f.done() for f in futures):
        return
    if timeout is not None and timeout <= 0:
        return
    with blocking():
        task = _context.current_task()
        client.sync(_await_done, futures, count, timeout, fail_fast, task)
        if task is not None:
            interrupts.raise_if_cancelled(task)  # woken by ray.cancel


# ---------------------------------------------------------------------------- errors


def translate_error(exc: BaseException, ref) -> BaseException:
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
        last = getattr(exc, "last_worker", None)
        event = memory_kills.memory_kill(ref._future.client, last.address) if last is not None else None
        if event is not None:
            text = memory_kills.message(event, ref._task_name or "task", getattr(last, "memory_limit", None))
            return rex.OutOfMemoryError(text)
        return rex.WorkerCrashedError()
    if isinstance(exc, FutureCancelledError) or isinstance(exc, asyncio.CancelledError):
        reason = str(getattr(exc, "reason", "") or "")
        if "scheduler-connection-lost" in reason:
            client = getattr(ref._future, "client", None)
            address = _driver.lost_scheduler(client) if client is not None else None
            if address is None:  # a client raycompat does not watch (a task's, a user's own)
                address = getattr(getattr(client, "scheduler", None), "address", "?")
            return _driver.scheduler_lost_error(address)
        if keys.owned_by_worker(ref._key):
            # A task's or actor's put, gone with the process that made it.
            return rex.OwnerDiedError(ref.hex(), None, "")
        return rex.ObjectLostError(ref.hex(), None, "")
    return rex.RaySystemError(exc)


def raise_for(fut: Future, ref):
    if ref._key in _cancelled:
        raise rex.TaskCancelledError(ref.hex())
    if fut.status == "error":
        exc = fut.exception()
    elif fut.status in ("cancelled", "lost"):
        exc = FutureCancelledError(fut.key, getattr(fut._state, "exception", None) or fut.status)
    else:
        return
    raise translate_error(exc, ref) from None


def value_of(sealed, ref):
    v = sealed.unseal() if isinstance(sealed, Sealed) else sealed
    if type(v) is StreamEnd:  # a streaming call's own result (``gen.completed()``)
        if v.error is not None:
            raise translate_error(v.error, ref) from None
        return None
    return v if ref._index is None else v[ref._index]


# ---------------------------------------------------------------------------- get


def check_timeout(timeout):
    if timeout is None:
        return None
    if not isinstance(timeout, (int, float)) or isinstance(timeout, bool):
        raise TypeError(f"timeout must be a number of seconds or None, got {type(timeout)}")
    return None if timeout < 0 else float(timeout)  # Ray: a negative timeout waits forever


def get_one(ref, timeout):
    fut = ref._future
    if ref._key in _cancelled:
        raise rex.TaskCancelledError(ref.hex())
    if not fut.done():
        wait_futures(fut.client, [fut], 1, timeout, True)
        if not fut.done():
            raise rex.GetTimeoutError("Get timed out: some object(s) not ready.")
    if fut.status != "finished":
        raise_for(fut, ref)
    try:
        if keys.owned_by_worker(ref._key):
            return value_of(fetch_owned_by_worker(fut, ref), ref)
        return value_of(fut.result(), ref)
    except (FutureCancelledError, asyncio.CancelledError) as e:
        raise translate_error(e, ref) from None


def fetch_owned_by_worker(fut: Future, ref):
    """A task's or actor's ``put``, which only its process holds. If that process died
    just now, Dask's gather fails, resets the future to pending and asks the scheduler
    about the key, which may already have forgotten it and then never answers: the fetch
    would wait forever. So while it fetches, it asks every second who holds the key."""
    return fut.client.sync(_fetch_watched, fut, ref)


async def _fetch_watched(fut: Future, ref):
    fetch = asyncio.ensure_future(fut._result())
    while True:
        done, _ = await asyncio.wait([fetch], timeout=1.0)
        if done:
            return fetch.result()
        holders = await fut.client.scheduler.who_has(keys=[fut.key])
        if not holders.get(fut.key):
            fetch.cancel()
            raise rex.OwnerDiedError(ref.hex(), None, "")


def is_cancelled(key) -> bool:
    return key in _cancelled
