"""``ray.cancel`` of a running task: KeyboardInterrupt, raised only in the user's code.

Ray raises KeyboardInterrupt in a cancelled task. We raise it in the task's thread with
``PyThreadState_SetAsyncExc``, which fires at the thread's next bytecode, wherever that
is. Raised in our own code or in Dask's, it breaks things that outlive the task: it can
kill a thread of the worker's pool (the worker then never runs a task again), land in
``rejoin`` or between a ledger update and its bookkeeping (a CPU leaks), or between a
lock's acquire and its ``with`` block (a ``Condition``'s lock then stays held: if that
is the one ``distributed.utils.sync`` waits on, the worker's event loop hangs). So:

- a task thread is *armed* only while it runs the user's code (``enter``/``leave``,
  around the user's function in ``worker_task.run_task``);
- raycompat's API, called from that code, disarms for its whole call (``api_call``);
  a call that waits (``get``, ``wait``) is woken instead (``set_waker``), and raises
  the KeyboardInterrupt itself when it ends;
- a task cancelled while disarmed gets its KeyboardInterrupt on re-arming; a task gets
  at most one (``interrupted``), so a ``get`` in its cleanup works, as on Ray;
- a cancel that reaches the worker before the task starts is remembered for a minute.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import threading
import time

from raycompat._dask import context as _context

#: Orders ``interrupt`` (on the worker's event loop) against task threads arming,
#: disarming, starting and ending. Held only for a few bytecodes, never while blocking.
_lock = threading.Lock()
#: Contexts of the tasks running in this process, by key.
_running: dict = {}
#: Keys cancelled before they started here, with when (the cancel's broadcast can
#: overtake the task's own compute message).
_cancelled_early: dict = {}  # in the order they came: expired ones are at the front
_EARLY_TTL = 60.0


def _set_async_exc(thread_id: int, exc) -> None:
    # exc None withdraws an exception set earlier and not raised yet.
    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread_id), None if exc is None else ctypes.py_object(exc))


def interrupt(key) -> None:
    """``ray.cancel`` (on the worker's event loop): mark the task cancelled, and raise
    KeyboardInterrupt in its thread if that thread runs the user's code."""
    with _lock:
        ctx = _running.get(key)
        if ctx is None:
            now = time.monotonic()
            while _cancelled_early:
                first = next(iter(_cancelled_early))
                if now - _cancelled_early[first] <= _EARLY_TTL:
                    break
                del _cancelled_early[first]
            _cancelled_early.pop(key, None)
            _cancelled_early[key] = now
            return
        ctx.cancelled = True
        if ctx.interrupted:
            return
        if ctx.interruptible_thread is not None:
            ctx.interrupted = True
            _set_async_exc(ctx.interruptible_thread, KeyboardInterrupt)
        elif ctx.waker is not None:
            ctx.waker()


def register(key, ctx) -> None:
    """A task starts in this process."""
    with _lock:
        _running[key] = ctx
        if _cancelled_early.pop(key, None) is not None:
            ctx.cancelled = True


def unregister(key) -> None:
    with _lock:
        _running.pop(key, None)


def _due(ctx) -> bool:
    """(Under ``_lock``.) Whether a cancelled task's one KeyboardInterrupt is still due;
    if so, it counts as raised from now."""
    if ctx.cancelled and not ctx.interrupted:
        ctx.interrupted = True
        return True
    return False


def enter(ctx) -> None:
    """Arm: from here ``ray.cancel`` may interrupt this thread. A task cancelled while
    disarmed gets its KeyboardInterrupt now."""
    with _lock:
        if _due(ctx):
            raise KeyboardInterrupt
        ctx.interruptible_thread = threading.get_ident()


def leave(ctx) -> None:
    """Disarm. An interrupt set just before usually fires at once, in this call; one
    that has not fired yet is withdrawn here."""
    with _lock:
        ctx.interruptible_thread = None
        if ctx.interrupted:
            _set_async_exc(threading.get_ident(), None)


def _armed_task():
    ctx = _context.current_task()
    if ctx is not None and ctx.interruptible_thread == threading.get_ident():
        return ctx
    return None


@contextlib.contextmanager
def uninterruptible():
    """A stretch of raycompat's code inside the user's code of a task: no interrupt in
    it; one due is raised at its end. A no-op anywhere else: the driver, actor calls,
    or already inside such a stretch."""
    ctx = _armed_task()
    if ctx is None:
        yield
        return
    leave(ctx)
    try:
        yield
    finally:
        enter(ctx)


def set_waker(ctx, wake) -> None:
    """While a disarmed task waits: ``ray.cancel`` calls ``wake()`` (on the worker's
    event loop; it must not block) rather than raising in the thread. None: done."""
    with _lock:
        ctx.waker = wake
        if wake is not None and ctx.cancelled and not ctx.interrupted and _running.get(ctx.key) is ctx:
            wake()


def raise_if_cancelled(ctx) -> None:
    """For a disarmed wait that noticed the cancel: raise the task's KeyboardInterrupt
    (tasks only: Ray does not interrupt a running actor call)."""
    with _lock:
        due = _running.get(ctx.key) is ctx and _due(ctx)
    if due:
        raise KeyboardInterrupt


def api_call(fn):
    """A public raycompat call made from a task's code: never interrupted (a wait in it
    is woken by ``ray.cancel``); the task's KeyboardInterrupt is raised as it returns."""

    @functools.wraps(fn)
    def call(*args, **kwargs):
        if _armed_task() is None:
            return fn(*args, **kwargs)
        with uninterruptible():
            return fn(*args, **kwargs)

    return call
