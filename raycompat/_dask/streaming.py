"""Ray's generators on Dask: each yielded item reaches the caller while the call runs.
This module is the caller's side (``ObjectRefGenerator``); the worker's is
``stream_publish.py``.

What Ray 2.60 does (measured, see ``tests/test_generators.py``): a remote generator
function, or an actor method that is a (sync or async) generator, returns an
``ObjectRefGenerator`` at once. Each ``yield`` becomes an ObjectRef the caller can take
with ``next()``/``for``/``async for`` as soon as it exists. An exception raised by the
generator becomes the next item (its ``get`` raises ``RayTaskError(<cause>)``), then the
iteration stops. ``ray.wait([gen])`` is ready once the next item (or the end) is there;
``ray.get(gen)`` returns the generator itself; ``ray.cancel(gen)`` cancels the task, and
the caller's next item is a ``TaskCancelledError`` (items not yet taken are dropped).

The mapping, one Dask task per call as for any task (or the actor's shell):

- on the worker, each item is sealed, stored in that worker's memory and registered with
  the scheduler (``update_data``) as wanted by the *consumer's* client, so the item
  outlives the task and is freed when the consumer drops its ref; then the worker
  announces ``(call key, index, item key)`` as a Dask event on the topic
  ``raycompat-stream-<consumer client id>``, which the scheduler forwards to that client
  only (subscribed before the call is submitted). One scheduler RPC per item; the data
  stays where it was made until a reader needs it.
- the call's own result is a small ``StreamEnd(count, error)``. The consumer stops once
  it has ``count`` items: events travel through the scheduler, an actor's reply does not,
  so either may arrive first. Indices make a retried task's repeated items harmless.
- ``num_returns="dynamic"`` (deprecated in Ray) runs the generator to its end and returns
  a ``DynamicObjectRefGenerator`` of refs to the stored items.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import threading
import weakref
from typing import Optional

from raycompat._dask import interrupts
from raycompat._dask.context import current_task as _current_task
from raycompat._dask.keys import new_key
from raycompat._dask.serialization import Sealed
from raycompat import exceptions as rex
from raycompat._dask.actor_result import ActorResult, _callback_executor
from raycompat._dask.refs import ObjectRef
from raycompat._dask.stream_publish import TOPIC_PREFIX
from raycompat._dask import objects, results
from raycompat._dask import refs as _refs



def collect_dynamic(gen) -> "DynamicObjectRefGenerator":
    """``num_returns="dynamic"``: store every item, return the generator of their refs."""

    return DynamicObjectRefGenerator([objects.put(item) for item in gen])


# ============================================================================ caller side


class _Registry:
    """The generators a client consumes, by call key; the event handler of its topic."""

    def __init__(self, client):
        self.client = client
        self.streams: "weakref.WeakValueDictionary[str, ObjectRefGenerator]" = weakref.WeakValueDictionary()
        client.subscribe_topic(TOPIC_PREFIX + client.id, self.on_event)

    def on_event(self, event) -> None:  # on the client's event loop
        _, (stream_key, index, item_key) = event
        gen = self.streams.get(stream_key)
        if gen is None or not gen._take(index, item_key):
            # Nobody will read it (the generator is gone, or this is a retry's repeat).
            self.client._send_to_scheduler(
                {"op": "client-releases-keys", "keys": [item_key], "client": self.client.id}
            )


_registries: dict = {}
_registries_lock = threading.Lock()


def registry(client) -> _Registry:
    """The client's stream registry, subscribed to its topic on first use (the driver's
    at ``init``, so the subscription is in place long before any item is published)."""
    with _registries_lock:
        reg = _registries.get(client.id)
        if reg is None:
            reg = _registries[client.id] = _Registry(client)
    return reg


def forget(client) -> None:
    """The client is closing: stop its generators that are still running (Ray ends a
    job's tasks with its driver) and drop its registry."""
    with _registries_lock:
        reg = _registries.pop(client.id, None)
    if reg is None:
        return

    for gen in list(reg.streams.values()):
        final = gen._final
        if final is not None and not final._future.done():
            try:
                objects.cancel(final)  # the generator's call
            except Exception:  # noqa: BLE001 - best effort at shutdown
                pass


def register(client, gen: "ObjectRefGenerator") -> None:
    """Route ``gen``'s items to it; must run before its call is sent."""
    registry(client).streams[gen._stream_key] = gen


class ObjectRefGenerator:
    """The refs a generator task or actor method yields, as they are yielded (Ray's
    ``ray.ObjectRefGenerator``): iterate with ``next``/``for``/``async for``."""

    def __init__(self, stream_key: str, client, name: str):
        """Route the items of the call ``stream_key`` here; call before sending the call."""
        self._final = None  # the ref of the call's own result (``_attach``)
        self._stream_key = stream_key
        self._name = name
        self._client = client
        self._items: collections.deque = collections.deque()
        self._early: dict = {}  # index -> ref that arrived before an earlier one
        self._received = 0
        self._end: Optional[int] = None  # the item count, once the call has ended
        self._error_ref = None
        self._error_taken = False
        # ``with`` on the lock itself, not on the Condition: Condition.__enter__ is Python
        # code, so a task's cancel interrupt could fire after it took the lock and leave
        # the lock held (the client's event loop then blocks on it for good).
        self._lock = threading.RLock()
        self._cond = threading.Condition(self._lock)
        self._async_waiters: list = []
        self._loop_event: Optional[asyncio.Event] = None
        register(client, self)

    def _attach(self, final_ref) -> None:
        from distributed import Future

        self._final = final_ref
        fut = final_ref._future
        # Only a weak reference waits for the end: a generator the program drops while
        # its call still runs is freed, and its later items are released on arrival.
        me = weakref.ref(self)

        def on_final(f):
            gen = me()
            if gen is not None:
                gen._on_final(f)

        if type(fut) is not Future:  # an actor call's result
            fut.add_done_callback(on_final)
            return

        async def watch():
            # Not Future.add_done_callback: at interpreter exit Dask's callback thread is
            # gone before the client cancels what is still pending, and it logs an error.
            await fut._state.wait()
            try:
                _callback_executor().submit(on_final, fut)
            except RuntimeError:  # interpreter exit: nobody is left to read the stream
                pass

        self._client.loop.add_callback(watch)

    # -- fed from the client's event loop ---------------------------------------
    def _take(self, index: int, item_key: str) -> bool:
        from distributed import Future


        with self._lock:
            if index < self._received or index in self._early or self._end is not None and self._dropped():
                return False
            fut = Future(item_key, self._client)
            _refs.ask(fut)  # the scheduler's first report may have come before this Future
            ref = ObjectRef(fut, None, self._name)
            self._early[index] = ref
            while self._received in self._early:
                self._items.append(self._early.pop(self._received))
                self._received += 1
        self._changed()
        return True

    def _dropped(self) -> bool:
    
        return results.is_cancelled(self._stream_key)

    def _on_final(self, fut) -> None:
        """The call ended: learn its item count, and its error (as the last item)."""
    
        count, error = None, None
        if self._dropped():  # ray.cancel: ``_pop`` hands out the cancellation
            pass
        elif fut.status == "finished":
            try:
                end = fut.result()
                end = end.unseal() if isinstance(end, Sealed) else end
                count, error = end.count, end.error
            except Exception as e:  # noqa: BLE001 - lost before we could read it
                error = results.translate_error(e, self._final)
        else:
            try:
                exc = fut.exception()
            except BaseException as e:  # noqa: BLE001 - cancelled futures raise here
                exc = e
            error = results.translate_error(exc, self._final)
        with self._lock:
            if count is None:  # a task's events precede its end: all items are here
                count = self._received
            if error is not None:
                self._error_ref = _error_ref(error, self._client, self._name)
            self._end = count
        self._changed()

    def _changed(self) -> None:
        with self._lock:
            self._cond.notify_all()
            waiters, self._async_waiters = self._async_waiters, []
        for w in waiters:
            if not w.done():
                w.set_result(None)
        if self._loop_event is not None:
            self._client.loop.add_callback(self._loop_event.set)

    # -- readiness --------------------------------------------------------------
    def _ended(self) -> bool:
        return self._end is not None and self._received >= self._end

    def next_ready(self) -> bool:
        """Whether ``next()`` would return at once."""
        with self._lock:
            return bool(self._items) or self._ended() or self._dropped()

    def is_finished(self) -> bool:
        """Whether every item (and the error, if any) has been taken."""
        with self._lock:
            return self._ended() and not self._items and (self._error_ref is None or self._error_taken)

    def completed(self):
        """A ref ready when the call ends: its ``get`` gives None or raises the call's error."""
        return self._final

    def _pop(self):
        """The next ref, or StopIteration, or None when neither is there yet."""
        if self._dropped():  # ray.cancel: Ray hands out the cancellation, not what was left

            self._items.clear()
            if not self._error_taken:
                self._error_taken = True
                return _error_ref(rex.TaskCancelledError(self._stream_key), self._client, self._name)
            raise StopIteration
        if self._items:
            return self._items.popleft()
        if self._ended():
            if self._error_ref is not None and not self._error_taken:
                self._error_taken = True
                return self._error_ref
            raise StopIteration
        return None

    # -- iteration ----------------------------------------------------------------
    def __iter__(self):
        return self

    @interrupts.api_call
    def __next__(self):
        return self._next_sync()

    def _next_sync(self):
    
        with self._lock:
            ref = self._pop()
            if ref is not None:
                return ref
        # Inside a task: give the CPU back while waiting, and look for a cancel now and
        # then (``interrupts``: a wait is never interrupted).
        task = _current_task()
        with results.blocking():
            with self._lock:
                while True:
                    ref = self._pop()
                    if ref is not None:
                        return ref
                    if task is not None:
                        interrupts.raise_if_cancelled(task)
                    self._cond.wait(0.2 if task is not None else None)

    def __aiter__(self):
        return self

    async def __anext__(self):
        while True:
            with self._lock:
                try:
                    ref = self._pop()
                except StopIteration:
                    raise StopAsyncIteration from None
                if ref is not None:
                    return ref
                waiter: concurrent.futures.Future = concurrent.futures.Future()
                self._async_waiters.append(waiter)
            await asyncio.wrap_future(waiter)

    # -- ray.wait support -------------------------------------------------------
    def _readiness(self):
        return _NextReady(self)

    def __reduce__(self):
        raise TypeError(
            "An ObjectRefGenerator cannot be passed to another task or actor with raycompat; "
            "iterate it where it was created and pass the ObjectRefs it yields instead."
        )

    def __repr__(self):
        return f"<raycompat.ObjectRefGenerator object at {hex(id(self))}>"


class _NextReady:
    """The part of a Dask future's interface ``api.wait`` uses, for "the next item is here"."""

    status = "finished"

    def __init__(self, gen: ObjectRefGenerator):
        self.gen = gen
        self.key = gen._stream_key
        self.client = gen._client

    @property
    def _state(self):
        return self

    def done(self) -> bool:
        return self.gen.next_ready()

    async def wait(self, timeout=None):  # on the client's event loop
        gen = self.gen
        if gen._loop_event is None:
            gen._loop_event = asyncio.Event()
        while not gen.next_ready():
            gen._loop_event.clear()
            if gen.next_ready():
                break
            await gen._loop_event.wait()



def _error_ref(error: BaseException, client, name):
    """A ref whose ``get`` raises ``error`` (the stream's last item)."""

    key = new_key(f"{name or 'generator'}-error")
    if getattr(error, "_dask_key", None) is not None:
        error._dask_key = key  # raised by this very ref, not by an argument of it
    backing = ActorResult(key, client, name)
    backing._finish("error", exception=error)
    return ObjectRef(backing, None, name)


class DynamicObjectRefGenerator:
    """The value of a ``num_returns="dynamic"`` task: the refs of all its items."""

    def __init__(self, refs):
        self._refs = list(refs)

    def __iter__(self):
        return iter(self._refs)

    def __len__(self):
        return len(self._refs)
