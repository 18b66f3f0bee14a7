"""``ObjectRef``: Ray's reference to a value, as an opaque wrapper of a Dask future.

Ray resolves only *top-level* ObjectRef arguments; Dask resolves futures nested in
lists, tuples and dicts too. So an ObjectRef is never a ``distributed.Future``: Dask
sees only the futures the facade hands it on purpose (``submit.py``).

Identity is the Dask key (plus an index for the i-th of ``num_returns=N`` results, which
share one Dask task), so equality and hashing survive pickling. Pickling sends the key;
unpickling rebinds it to the client of the process it lands in (the driver's, or the
worker's own) and tells the scheduler that client wants it.

Lifetime (Ray tracks borrowers; Dask forgets a key once no client wants it):
- a ref inside a task's arguments is held by the submitter until the task finishes;
- a ref that escapes into data (a task's return value, ``put``, anything else that
  pickles it) is pinned under the job's synthetic scheduler client
  ``raycompat-pins-<job>`` and released at ``shutdown()`` (or when the driver's client
  leaves a cluster it joined, see ``lifetime.py``).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import hashlib
import weakref
from typing import Optional

from distributed import Future

from raycompat._dask import interrupts


#: While set, ObjectRefs being pickled are task arguments: collect them instead of pinning.
_arg_refs: contextvars.ContextVar[Optional[list]] = contextvars.ContextVar("arg_refs", default=None)

PIN_PREFIX = "raycompat-pins-"


class ObjectRef:
    """A reference to a value in the cluster (Ray's ``ray.ObjectRef``)."""

    __slots__ = ("_key", "_index", "_future", "_task_name", "__weakref__")

    def __init__(self, future: Future, index: Optional[int] = None, task_name: Optional[str] = None):
        self._future = future
        self._key = future.key
        self._index = index
        self._task_name = task_name

    # identity -----------------------------------------------------------------
    def hex(self) -> str:
        raw = f"{self._key}/{self._index}".encode()
        return hashlib.blake2b(raw, digest_size=28).hexdigest()

    def binary(self) -> bytes:
        return bytes.fromhex(self.hex())

    def is_nil(self) -> bool:
        return False

    def task_id(self):
        return self._key

    def __eq__(self, other):
        return type(other) is ObjectRef and other._key == self._key and other._index == self._index

    def __hash__(self):
        return hash((self._key, self._index))

    def __repr__(self):
        return f"ObjectRef({self.hex()})"

    # pickling -----------------------------------------------------------------
    def _dask_future(self) -> Future:
        """The Dask future of this ref; an actor call's result is published first."""
        fut = self._future
        return fut if type(fut) is Future else fut.published()

    @interrupts.api_call  # user code may pickle refs itself: pinning sends messages
    def __reduce__(self):
        fut = self._dask_future()
        collected = _arg_refs.get()
        if collected is not None:
            collected.append(fut)
        else:
            _pin(fut)
        return (_rebuild_ref, (self._key, self._index, self._task_name))

    # futures and await --------------------------------------------------------
    def future(self) -> concurrent.futures.Future:
        """A ``concurrent.futures.Future`` resolved with the value (or Ray's error)."""
        from raycompat._dask import api

        cf: concurrent.futures.Future = concurrent.futures.Future()

        def done(_):
            try:
                cf.set_result(api.get_one(self, timeout=None))
            except BaseException as e:  # noqa: BLE001 - handed to the future
                cf.set_exception(e)

        self._future.add_done_callback(done)
        return cf

    def as_future(self):
        return self.future()

    def __await__(self):
        return asyncio.wrap_future(self.future()).__await__()

    def _on_completed(self, callback):
        from raycompat._dask import api

        self._future.add_done_callback(lambda _: callback(api.get_one(self, timeout=None)))


def _rebuild_ref(key, index, task_name=None) -> ObjectRef:
    from raycompat._dask import session

    client = session.client_for_rebind()
    fresh = key not in client.futures
    fut = Future(key, client)
    if fresh:
        desire(fut)
        rebound.add(fut)
    return ObjectRef(fut, index, task_name)


#: Futures rebound from a pickled key. The scheduler may not know the key yet when
#: this process asks for it (a task's submissions from its worker client can arrive
#: after the task's own result), and then drops the request: waiting re-asks.
rebound: "weakref.WeakSet[Future]" = weakref.WeakSet()


def desire(fut: Future) -> None:
    client = fut.client
    client._send_to_scheduler({"op": "client-desires-keys", "keys": [fut.key], "client": client.id})


def _pin(fut: Future) -> None:
    """Keep ``fut``'s key alive under the job's pin client until ``shutdown``."""
    from raycompat._dask import session

    job = session.current_job_id()
    client = fut.client
    if client is None or job is None:
        return
    from raycompat._dask import batching

    batching.flush(client)  # the scheduler must know the key before the pin names it
    try:
        client._send_to_scheduler(
            {"op": "client-desires-keys", "keys": [fut.key], "client": PIN_PREFIX + job}
        )
    except Exception:  # noqa: BLE001 - a closed client has nothing left to pin
        pass

