"""``ObjectRef``: Ray's reference to a value, as an opaque wrapper of a Dask future.

Ray resolves only *top-level* ObjectRef arguments; Dask resolves futures nested in
lists, tuples and dicts too. So an ObjectRef is never a ``distributed.Future``: Dask
sees only the futures the facade hands it on purpose (``submit.py``).

For Dask's own tools an ObjectRef is a Dask collection of one future (``__dask_graph__``),
as a persisted collection is: ``distributed.progress``, ``wait``, ``futures_of`` take refs
as they take futures, and ``dask.compute``/``dask.delayed`` see the ref's value. Task
arguments never go through that protocol, so nested refs still arrive as refs.

Identity is the Dask key (plus an index for the i-th of ``num_returns=N`` results, which
share one Dask task), so equality and hashing survive pickling. Pickling sends the key;
unpickling rebinds it to the client of the process it lands in (the driver's, or the
worker's own) and tells the scheduler that client wants it.

Lifetime: see ``references.py`` and ``object-lifetime.md``. Pickling a ref hands its
future to ``references.pickled`` (collected as a content of the value being sealed, or
pinned to the job when the user pickles it); unpickling makes this process's client
want the key before the unpickling process goes on.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import hashlib
from typing import Optional

from distributed import Future

from raycompat._dask import batching, interrupts, references, results
from raycompat._dask import driver as _driver


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
        references.pickled(self._dask_future())
        return (_rebuild_ref, (self._key, self._index, self._task_name))

    # Dask's collection protocol ------------------------------------------------
    # So Dask's tools that collect futures from collections (``distributed.progress``,
    # ``wait``, ``as_completed``, ``Client.cancel``...: ``futures_of``) take refs as they
    # take futures, and ``dask.compute``/``dask.delayed`` see a ref as its value. Dask
    # never walks arguments through it: ``submit.py`` pickles nested refs whole.
    def __dask_graph__(self):
        fut = self._dask_future()
        batching.flush(fut.client)  # the task must be on the scheduler before Dask's graph
        return {fut.key: fut}

    def __dask_keys__(self):
        return [self._key]

    __dask_optimize__ = None  # one future: nothing to optimize

    def __dask_tokenize__(self):
        return (self._key, self._index)

    def __dask_postcompute__(self):
        return _finalize, (self._index,)

    # futures and await --------------------------------------------------------
    def future(self) -> concurrent.futures.Future:
        """A ``concurrent.futures.Future`` resolved with the value (or Ray's error)."""

        cf: concurrent.futures.Future = concurrent.futures.Future()

        def done(_):
            try:
                cf.set_result(results.get_one(self, timeout=None))
            except BaseException as e:  # noqa: BLE001 - handed to the future
                cf.set_exception(e)

        self._future.add_done_callback(done)
        return cf

    def as_future(self):
        return self.future()

    def __await__(self):
        return asyncio.wrap_future(self.future()).__await__()

    def _on_completed(self, callback):

        self._future.add_done_callback(lambda _: callback(results.get_one(self, timeout=None)))


class _Slot:
    """What ``results.value_of`` reads of a ref: the result's index (no key: a stored
    error is raised as it is)."""

    __slots__ = ("_index",)
    _key = None
    _task_name = None

    def __init__(self, index):
        self._index = index


def _finalize(parts, index):
    """The value of a ref that Dask computed as a collection (Dask's finalize step)."""
    return results.value_of(parts[0], _Slot(index))


def _rebuild_ref(key, index, task_name=None) -> ObjectRef:
    return ObjectRef(rebind(_driver.client_for_rebind(), key), index, task_name)


def ask(fut: Future) -> None:
    """Ask the scheduler for ``fut``'s key on the client's stream (no wait): for keys the
    client already wants, whose state report may have come before this future existed."""
    client = fut.client
    client._send_to_scheduler({"op": "client-desires-keys", "keys": [fut.key], "client": client.id})


def rebind(client, key) -> Future:
    """A future of ``client`` for ``key``, which this process now holds."""
    fresh = key not in client.futures
    fut = Future(key, client)
    if fresh:
        references.rebound(fut)
    return fut
