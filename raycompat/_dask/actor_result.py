"""An actor call's ObjectRef on the caller's side: ``ActorResult``, a local future.

A call's result comes back in the RPC reply, which completes the call's ``ActorResult``
locally. Only when the ref must exist on the cluster (passed to a task, pickled into
data) is it published as a Dask key under the ref's own key (``published``): a
placeholder task (``await_filled``) while the call runs, filled when the reply comes.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import pickle
import threading
from typing import Optional

import cloudpickle
from distributed import Future

from raycompat import exceptions as rex
from raycompat._dask.keys import new_key
from raycompat._dask.serialization import Sealed
from raycompat._dask import batching
from raycompat._dask.actor_rpc import actor_rpc
from raycompat._dask import refs as _refs


class ActorResult:
    """The backing of an actor call's ObjectRef: completed from the RPC reply.

    It offers the part of ``distributed.Future``'s interface that ``api.py`` uses, so
    ``get``/``wait`` treat actor refs and task refs alike. ``published()`` turns it into
    a real Dask key when a task needs it, at once, also while the call still runs.
    """

    def __init__(self, key: str, client, name: str):
        self.key = key
        self.client = client
        self.name = name
        self.status = "pending"
        self._value: Optional[Sealed] = None
        self._exception: Optional[BaseException] = None
        self._event = threading.Event()
        self._aio_event: Optional[asyncio.Event] = None
        self._callbacks: list = []
        self._dask_future = None
        self._publish_lock = threading.Lock()
        #: The refs in the call's arguments, held until it is answered (Ray's rule).
        self.arg_refs: Optional[list] = None
        #: A result with refs inside is also a Dask key on the actor's worker: its future.
        self._held_value = None
        #: A placeholder task waits for this call's result: fill it when it comes.
        self._fill_pending = False

    @property
    def _state(self):
        return self

    # called on the client's event loop
    def _finish(self, status: str, value=None, exception=None, held_key=None) -> None:
        if held_key is not None:
            held = Future(held_key, self.client)
            held._state.finish()  # stored and wanted for this client before the reply left
            self._held_value = held
        with self._publish_lock:
            self._value, self._exception, self.status = value, exception, status
            self._event.set()
            fill = self._fill_pending
        self.arg_refs = None
        if fill:
            asyncio.ensure_future(self._fill())
        if self._aio_event is not None:
            self._aio_event.set()
        for cb in self._callbacks:
            try:
                cb(self)
            except Exception:  # noqa: BLE001 - a user's callback
                pass
        self._callbacks.clear()

    async def wait(self, timeout=None):
        if self._event.is_set():
            return
        if self._aio_event is None:
            self._aio_event = asyncio.Event()
            if self._event.is_set():
                return
        await asyncio.wait_for(self._aio_event.wait(), timeout)

    def done(self) -> bool:
        return self._event.is_set()

    def result(self, timeout=None):
        if not self._event.wait(timeout):
            raise TimeoutError()
        if self._exception is not None:
            raise self._exception
        return self._value

    def exception(self):
        self._event.wait()
        return self._exception

    def add_done_callback(self, fn) -> None:
        def run(_):  # off the event loop, as distributed.Future runs its callbacks
            try:
                _callback_executor().submit(fn, self)
            except RuntimeError:  # interpreter exit: the executor is gone
                pass

        if self.done():
            run(self)
        else:
            self.client.loop.add_callback(self._add_cb, run)

    def _add_cb(self, fn):
        if self.done():
            fn(self)
        else:
            self._callbacks.append(fn)

    def cancel_on_actor(self) -> None:
        """Tell the actor's shell this call is cancelled (best effort, asynchronous)."""
        caller = getattr(self, "_caller", None)
        if caller is None or self.done():
            return

        async def send():
            try:
                address = await caller._address()
                await actor_rpc(caller.client, address, caller.creation.key, "cancel_calls", ([self.key],))
            except Exception:  # noqa: BLE001 - the actor is gone: nothing to cancel
                pass

        caller.client.loop.add_callback(send)

    def published(self):
        """A Dask future for this result, for a task that takes it as an argument or a
        value that holds the ref. While the call runs, a placeholder task under this
        ref's key waits on the scheduler until ``_fill`` hands it the result."""

        with self._publish_lock:
            fut = self._dask_future
            if fut is None and not self._event.is_set():
                fut = self._dask_future = batching.submit(self.client, await_filled, key=self.key)
                self._fill_pending = True
        if fut is not None:
            return fut
        if self._held_value is not None:
            fut = self._held_value
        elif self._exception is not None:
            fut = self.client.submit(_reraise, self._exception, key=self.key, pure=False)
        else:
            fut = self.client.scatter({self.key: self._value}, hash=False)[self.key]
        with self._publish_lock:
            if self._dask_future is None:
                self._dask_future = fut
            return self._dask_future

    async def _fill(self) -> None:
        """On the client's loop: give the placeholder task this call's result."""
        client = self.client
        msg = {"op": "raycompat-fill", "key": self.key}
        keep = self._held_value
        try:
            if self._exception is not None:
                msg["error"] = cloudpickle.dumps(self._exception)
            elif keep is not None:
                msg["value"] = keep.key
            else:
                value_key = new_key(f"{self.name}-value")
                keep = (await client._scatter({value_key: self._value}, hash=False))[value_key]
                msg["value"] = value_key
        except Exception as e:  # noqa: BLE001 - the placeholder fails instead of waiting forever
            msg.pop("value", None)
            msg["error"] = cloudpickle.dumps(rex.RaySystemError(f"could not publish the actor result: {e}"))
        client._send_to_scheduler(msg)
        del keep  # released after the fill, on the same stream: the placeholder holds it first


_executor: Optional[concurrent.futures.ThreadPoolExecutor] = None


def _callback_executor() -> concurrent.futures.ThreadPoolExecutor:
    global _executor
    if _executor is None:
        _executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="raycompat-callback")
    return _executor


def _reraise(exc):
    raise exc


def await_filled():
    """The placeholder task of an actor call's result that a task needs before the call
    has ended: it leaves the worker's pool and waits on the scheduler for the result,
    which the caller hands over when the reply comes (``ActorResult._fill``)."""
    from distributed import get_client, get_worker, secede


    worker = get_worker()
    key = worker.get_current_task()
    secede()
    client = get_client()
    while True:
        verdict = client.sync(client.scheduler.raycompat_take, key=key, timeout=5.0)
        if verdict[0] == "value":
            return _refs.rebind(client, verdict[1]).result()
        if verdict[0] == "error":
            err = pickle.loads(verdict[1])
            if isinstance(err, rex.RayTaskError):
                err._dask_key = key  # dependents fail with Ray's "input argument" wrapping
            raise err
        ts = worker.state.tasks.get(key)
        if verdict[0] == "gone" or ts is None or ts.state not in ("executing", "long-running"):
            return None  # nobody needs this result any more


#: The most calls one RPC carries to a sequential actor (bounds how long the first call's
#: result waits for the last one's).
