"""``ray.cancel`` of a running task: KeyboardInterrupt, raised only in the user's code.

Ray raises KeyboardInterrupt in a cancelled task. We raise it in the task's thread with
``PyThreadState_SetAsyncExc``, which fires at the thread's next bytecode, wherever that
is. Raised in our own code or in Dask's, it breaks things that outlive the task: it can
kill a thread of the worker's pool (the worker then never runs a task again), land in
``rejoin`` or between a ledger update and its bookkeeping (a CPU leaks), or between a
lock's acquire and its ``with`` block (the lock stays held). So:

- a task thread is *armed* only while it runs the user's code (``enter``/``leave``,
  around the user's function in ``worker_task.run_task``);
- raycompat's API, called from that code, disarms for its own work (``api_call``), and
  re-arms only where it waits (``interruptible``, around a blocking ``get``/``wait``);
- disarming withdraws an exception set but not raised yet; a task cancelled while
  disarmed gets its KeyboardInterrupt on re-arming; a task gets at most one;
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
_cancelled_early: dict = {}
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
            for k, t in list(_cancelled_early.items()):
                if now - t > _EARLY_TTL:
                    del _cancelled_early[k]
            _cancelled_early[key] = now
            return
        ctx.cancelled = True
        if ctx.interruptible_thread is not None and not ctx.interrupted:
            ctx.interrupted = True
            _set_async_exc(ctx.interruptible_thread, KeyboardInterrupt)


def register(key, ctx) -> None:
    """A task starts in this process."""
    with _lock:
        _running[key] = ctx
        if _cancelled_early.pop(key, None) is not None:
            ctx.cancelled = True


def unregister(key) -> None:
    with _lock:
        _running.pop(key, None)


def enter(ctx, deliver: bool = True) -> None:
    """Arm: from here ``ray.cancel`` may interrupt this thread. A task cancelled while
    disarmed gets its KeyboardInterrupt now (unless ``deliver`` is False: the caller
    checks ``ctx.cancelled`` itself)."""
    with _lock:
        if deliver and ctx.cancelled and not ctx.interrupted:
            ctx.interrupted = True
            raise KeyboardInterrupt
        ctx.interruptible_thread = threading.get_ident()


def leave(ctx) -> None:
    """Disarm, withdrawing an interrupt that was set and has not fired yet."""
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
def uninterruptible(deliver: bool = True):
    """A stretch of raycompat's code inside the user's code of a task: no interrupt in
    it; one due is raised at its end (unless ``deliver`` is False). A no-op anywhere
    else: the driver, actor calls, or already inside such a stretch."""
    ctx = _armed_task()
    if ctx is None:
        yield
        return
    leave(ctx)
    ctx.disarmed = True
    try:
        yield
    finally:
        ctx.disarmed = False
        enter(ctx, deliver)


@contextlib.contextmanager
def interruptible():
    """Inside ``uninterruptible``: a wait that ``ray.cancel`` may interrupt (Ray raises
    in a task blocked in ``get``). Exits disarmed, whatever happened."""
    ctx = _context.current_task()
    if ctx is None or not getattr(ctx, "disarmed", False):
        yield
        return
    enter(ctx)
    try:
        yield
    finally:
        leave(ctx)


def api_call(fn):
    """A public raycompat call: never interrupted but where it waits (see above)."""

    @functools.wraps(fn)
    def call(*args, **kwargs):
        if _armed_task() is None:
            return fn(*args, **kwargs)
        with uninterruptible():
            return fn(*args, **kwargs)

    return call
