"""``ray.util.multiprocessing.Pool``: the ``multiprocessing.Pool`` API over a pool of actors.

Ray 2.60 (``ray/util/multiprocessing/pool.py``, Apache-2.0) starts one ``num_cpus=0``
actor per "process", sends work to them in chunks (one actor call runs a whole chunk,
catching each item's exception so one failure does not lose its neighbours) and collects
results in a thread per ``AsyncResult``. This is the same design on raycompat's public
API (``ray.remote``, ``wait``, ``get``, ``kill``), so it runs unchanged on either engine.

Where Ray 2.60 departs from the stdlib by accident, this follows the stdlib, which Ray's
Pool documents itself as a drop-in for:

- ``error_callback`` receives the user's exception (Ray passes its internal
  ``PoolTaskError`` wrapper), and ``callback`` the results in order (Ray: in the order
  their chunks finished);
- ``imap``/``imap_unordered`` raise the user's exception at its position (Ray yields the
  wrapper as if it were a result);
- ``join()`` also waits until the callbacks of every ``*_async`` result have run;
- ``chunksize < 1`` raises ``ValueError`` (Ray's ``map`` loops forever on 0);
- ``starmap_async`` takes ``chunksize`` (the stdlib's signature; Ray's lacks it);
- the exception ``get`` raises has the remote traceback as its ``__cause__``, as in the
  stdlib (Ray's carries none).

Ray's Pool also rewrites joblib's ``BatchedCalls`` to put large arguments in the object
store once; with joblib >= 1.3 its import of ``joblib._parallel_backends.SafeFunction``
fails and that path is inactive, so it is left out here.

As in Ray (and unlike the stdlib), ``imap`` hands each actor its next chunk only when the
iterator is advanced, so consume an ``imap`` before ``close()``/``terminate()``; the
initializer runs once per actor, and on raycompat several actors may share one worker
process, so process-wide state it sets (environment variables, module globals) is shared.
"""

from __future__ import annotations

import collections
import itertools
import logging
import os
import threading
import time
import traceback
from multiprocessing import TimeoutError
from multiprocessing.pool import RemoteTraceback
from typing import Any, Callable, Dict, Iterable, List, Optional, Tuple

import raycompat as ray

logger = logging.getLogger(__name__)

_context_warned = False


class PoolTaskError(Exception):
    """One item's exception, carried back from the actor inside its chunk's results."""

    def __init__(self, underlying, remote_traceback: Optional[str] = None):
        super().__init__(underlying)
        self.underlying = underlying
        self.remote_traceback = remote_traceback

    def reraise(self):
        if self.remote_traceback:
            raise self.underlying from RemoteTraceback(self.remote_traceback)
        raise self.underlying


class _PoolActor:
    """Runs the chunks of one pool "process" (Ray's ``PoolActor``)."""

    def __init__(self, initializer=None, initargs=None):
        if initializer:
            initializer(*(initargs or ()))

    def ping(self):
        pass

    def stop(self):
        # What Ray's __ray_terminate__ does (exit after the calls queued before it); an
        # ordinary method, so it also waits for them on raycompat, whose
        # __ray_terminate__ currently ends the actor on arrival.
        ray.actor.exit_actor()

    def run_batch(self, func, batch):
        results = []
        for args, kwargs in batch:
            try:
                results.append(func(*(args or ()), **(kwargs or {})))
            except Exception as e:  # noqa: BLE001 - the user's error, returned with the chunk
                results.append(PoolTaskError(e, "\n\"\"\"\n" + traceback.format_exc() + "\"\"\""))
        return results


PoolActor = ray.remote(num_cpus=0)(_PoolActor)


def _fetch(ref) -> list:
    # A call that failed as a whole (the actor died or was killed) fails its whole chunk
    # with Ray's error, as in Ray's Pool.
    try:
        return ray.get(ref)
    except Exception as e:  # noqa: BLE001 - handed to the caller of get()/next()
        return [PoolTaskError(e)]


class AsyncResult:
    """The pending result of an ``*_async`` call (``multiprocessing.pool.AsyncResult``).

    A thread collects the chunks as they finish, then runs ``callback`` (with the list of
    results, or the single result for ``apply_async``) or, if any item failed,
    ``error_callback`` once with the first exception to arrive. Not constructed directly.
    """

    def __init__(self, chunk_refs: list, callback=None, error_callback=None, single_result=False,
                 on_done: Optional[Callable[["AsyncResult"], None]] = None):
        self._single_result = single_result
        self._chunks: List[Optional[list]] = [None] * len(chunk_refs)
        self._first_error: Optional[PoolTaskError] = None
        self._callback = callback
        self._error_callback = error_callback
        self._on_done = on_done
        self._done = threading.Event()
        threading.Thread(
            target=self._collect, args=(list(chunk_refs),), daemon=True, name="raycompat-pool-result"
        ).start()

    def _collect(self, refs: list) -> None:
        try:
            index = {ref: i for i, ref in enumerate(refs)}
            pending = refs
            while pending:
                ready, pending = ray.wait(pending, num_returns=1)
                batch = _fetch(ready[0])
                self._chunks[index[ready[0]]] = batch
                if self._first_error is None:
                    self._first_error = next((r for r in batch if isinstance(r, PoolTaskError)), None)
            try:
                if self._first_error is not None:
                    if self._error_callback is not None:
                        self._error_callback(self._first_error.underlying)
                elif self._callback is not None:
                    results = list(itertools.chain.from_iterable(self._chunks))
                    self._callback(results[0] if self._single_result else results)
            except Exception:  # a failing callback must not leave get() hanging (logged)
                logger.exception("Exception in a Pool result callback")
        except BaseException as e:  # noqa: BLE001 - never leave get() waiting forever
            self._first_error = PoolTaskError(e)
            self._chunks = [[self._first_error]]
        finally:
            self._done.set()
            if self._on_done is not None:
                self._on_done(self)

    def wait(self, timeout: Optional[float] = None) -> None:
        """Wait until the result is ready or ``timeout`` seconds pass (never raises)."""
        self._done.wait(timeout)

    def get(self, timeout: Optional[float] = None):
        """The result; re-raises the first failed item's exception (in submission order),
        ``multiprocessing.TimeoutError`` if not ready within ``timeout`` seconds."""
        if not self._done.wait(timeout):
            raise TimeoutError
        results = []
        for batch in self._chunks:
            for r in batch:
                if isinstance(r, PoolTaskError):
                    r.reraise()
            results.extend(batch)
        return results[0] if self._single_result else results

    def ready(self) -> bool:
        """Whether every chunk has finished (and the callbacks have run)."""
        return self._done.is_set()

    def successful(self) -> bool:
        """Whether no item failed; ``ValueError`` if the result is not ready yet."""
        if not self.ready():
            raise ValueError(f"{self!r} not ready")
        return self._first_error is None


class IMapIterator:
    """The iterator ``imap``/``imap_unordered`` return.

    One chunk per actor is in flight; each ``next()`` collects finished chunks and hands
    their actors the next chunks of the iterable, which is read lazily. ``next(timeout)``
    raises ``multiprocessing.TimeoutError``. Not constructed directly.
    """

    def __init__(self, pool: "Pool", func: Callable, iterable: Iterable, chunksize: Optional[int], ordered: bool):
        self._pool = pool
        self._func = func
        self._ordered = ordered
        if chunksize is not None and chunksize < 0:
            raise ValueError(f"Chunksize must be 1+, not {chunksize}")
        if not chunksize:
            chunksize = pool._calculate_chunksize(iterable) if hasattr(iterable, "__len__") else 1
        self._chunksize = max(chunksize, 1)
        self._iterator = iter(iterable)
        self._exhausted = False
        self._pending: Dict[Any, Tuple[int, int]] = {}  # ref -> (chunk index, actor index)
        self._finished: Dict[int, list] = {}  # chunk index -> results, in completion order
        self._submitted = 0
        self._next_index = 0
        self._buffer: collections.deque = collections.deque()
        for actor_index in range(len(pool._actor_pool)):
            self._submit(actor_index)

    def _submit(self, actor_index: int) -> None:
        if self._exhausted:
            return
        chunk = list(itertools.islice(self._iterator, self._chunksize))
        if not chunk:
            self._exhausted = True
            return
        ref = self._pool._run_batch(actor_index, self._func, [((x,), None) for x in chunk])
        self._pending[ref] = (self._submitted, actor_index)
        self._submitted += 1

    def _next_finished(self) -> Optional[list]:
        if self._ordered:
            if self._next_index in self._finished:
                self._next_index += 1
                return self._finished.pop(self._next_index - 1)
            return None
        if self._finished:
            return self._finished.pop(next(iter(self._finished)))
        return None

    def next(self, timeout: Optional[float] = None):
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._buffer:
            batch = self._next_finished()
            if batch is not None:
                self._buffer.extend(batch)
                continue
            if not self._pending:
                raise StopIteration
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            ready, _ = ray.wait(list(self._pending), num_returns=1, timeout=left)
            if not ready:
                raise TimeoutError
            index, actor_index = self._pending.pop(ready[0])
            self._finished[index] = _fetch(ready[0])
            self._submit(actor_index)
        item = self._buffer.popleft()
        if isinstance(item, PoolTaskError):
            item.reraise()
        return item

    __next__ = next

    def __iter__(self):
        return self


class Pool:
    """A pool of actors that runs functions in parallel (``multiprocessing.Pool``'s API).

    Args:
        processes: number of actors; default the cluster's CPU count. More than the
            cluster has raises ``ValueError``, as in Ray.
        initializer: run as ``initializer(*initargs)`` in each actor when it starts.
        initargs: arguments for ``initializer``.
        maxtasksperchild: chunks an actor runs before it is stopped and replaced.
        context: accepted for ``multiprocessing.Pool`` compatibility and ignored (warned).
        ray_address: cluster to connect to if ``ray.init`` was not called (else
            ``RAY_ADDRESS``, else an embedded cluster with ``processes`` CPUs), as in Ray.
        ray_remote_args: options for the pool's actors (see ``ray.remote``).
    """

    def __init__(
        self,
        processes: Optional[int] = None,
        initializer: Optional[Callable] = None,
        initargs: Optional[Iterable] = None,
        maxtasksperchild: Optional[int] = None,
        context: Any = None,
        ray_address: Optional[str] = None,
        ray_remote_args: Optional[Dict[str, Any]] = None,
    ):
        global _context_warned
        if maxtasksperchild is not None and maxtasksperchild < 0:
            raise ValueError("maxtasksperchild must be a positive int or None")
        self._closed = False
        self._initializer = initializer
        self._initargs = tuple(initargs or ())
        self._maxtasksperchild = maxtasksperchild or -1
        self._actor_deletion_ids: list = []
        self._current_index = 0
        self._pool_actor = PoolActor.options(**(ray_remote_args or {}))
        # Work may be submitted from several threads (joblib submits from callbacks).
        self._submit_lock = threading.RLock()
        self._results_lock = threading.Lock()
        self._outstanding: set = set()
        if context is not None and not _context_warned:
            _context_warned = True
            logger.warning(
                "The 'context' argument is not supported using ray. Please refer to the "
                "documentation for how to control ray initialization."
            )
        processes = self._init_ray(processes, ray_address)
        self._actor_pool: List[list] = [self._new_actor_entry() for _ in range(processes)]
        ray.get([actor.ping.remote() for actor, _ in self._actor_pool])

    # ------------------------------------------------------------------ actors

    @staticmethod
    def _init_ray(processes, ray_address) -> int:
        if not ray.is_initialized():
            target = ray_address or os.environ.get("RAY_ADDRESS") or os.environ.get("DASK_SCHEDULER_ADDRESS")
            # A local cluster gets as many CPUs as the pool has processes, as in Ray.
            local = target in (None, "local")
            ray.init(address=ray_address, **({"num_cpus": processes} if local else {}))
        cluster_cpus = int(ray.cluster_resources().get("CPU", 0))
        if processes is None:
            processes = cluster_cpus
        if processes <= 0:
            raise ValueError("Processes in the pool must be >0.")
        if cluster_cpus < processes:
            raise ValueError(
                "Tried to start a pool with {} processes on an existing ray cluster, but there "
                "are only {} CPUs in the ray cluster.".format(processes, cluster_cpus)
            )
        return processes

    def _new_actor_entry(self) -> list:
        return [self._pool_actor.remote(self._initializer, self._initargs), 0]

    def _stop_actor(self, actor) -> None:
        if self._actor_deletion_ids:  # forget the actors that have exited
            _, self._actor_deletion_ids = ray.wait(
                self._actor_deletion_ids, num_returns=len(self._actor_deletion_ids), timeout=0
            )
        # Runs after the calls already queued on the actor, so their work finishes.
        self._actor_deletion_ids.append(actor.stop.remote())

    def _next_actor_index(self) -> int:
        self._current_index = (self._current_index + 1) % len(self._actor_pool)
        return self._current_index

    def _run_batch(self, actor_index: Optional[int], func: Callable, batch: list):
        with self._submit_lock:
            if actor_index is None:
                actor_index = self._next_actor_index()
            entry = self._actor_pool[actor_index]
            ref = entry[0].run_batch.remote(func, batch)
            entry[1] += 1
            if entry[1] == self._maxtasksperchild:
                self._stop_actor(entry[0])
                self._actor_pool[actor_index] = self._new_actor_entry()
            return ref

    def _check_running(self) -> None:
        if self._closed:
            raise ValueError("Pool not running")

    def _calculate_chunksize(self, iterable) -> int:
        chunksize, extra = divmod(len(iterable), len(self._actor_pool) * 4)
        return chunksize + 1 if extra else chunksize

    def _track(self, result_args: tuple, **kwargs) -> AsyncResult:
        def on_done(result):
            with self._results_lock:
                self._outstanding.discard(result)

        result = AsyncResult(*result_args, on_done=on_done, **kwargs)
        with self._results_lock:
            if not result.ready():
                self._outstanding.add(result)
        return result

    # ------------------------------------------------------------------ apply

    def apply(self, func: Callable, args: Optional[Tuple] = None, kwargs: Optional[Dict] = None):
        """Run ``func(*args, **kwargs)`` on one of the actors and return its result."""
        return self.apply_async(func, args, kwargs).get()

    def apply_async(self, func: Callable, args: Optional[Tuple] = None, kwargs: Optional[Dict] = None,
                    callback: Optional[Callable[[Any], None]] = None,
                    error_callback: Optional[Callable[[BaseException], None]] = None) -> AsyncResult:
        """Like ``apply``, returning an ``AsyncResult``; ``callback(result)`` or
        ``error_callback(exception)`` runs when it is done."""
        self._check_running()
        ref = self._run_batch(None, func, [(args, kwargs)])
        return self._track(([ref], callback, error_callback), single_result=True)

    # ------------------------------------------------------------------ map

    def _chunk_and_run(self, func, iterable, chunksize, unpack_args) -> list:
        if not hasattr(iterable, "__len__"):
            iterable = list(iterable)
        if chunksize is None:
            chunksize = self._calculate_chunksize(iterable)
        elif chunksize < 1:
            raise ValueError(f"Chunksize must be 1+, not {chunksize}")
        iterator = iter(iterable)
        refs = []
        with self._submit_lock:
            while True:
                chunk = list(itertools.islice(iterator, chunksize))
                if not chunk:
                    return refs
                batch = [(tuple(args) if unpack_args else (args,), None) for args in chunk]
                refs.append(self._run_batch(len(refs) % len(self._actor_pool), func, batch))

    def _map_async(self, func, iterable, chunksize=None, unpack_args=False, callback=None,
                   error_callback=None) -> AsyncResult:
        self._check_running()
        refs = self._chunk_and_run(func, iterable, chunksize, unpack_args)
        return self._track((refs, callback, error_callback))

    def map(self, func: Callable, iterable: Iterable, chunksize: Optional[int] = None) -> list:
        """``[func(x) for x in iterable]``, in chunks spread round-robin over the actors."""
        return self._map_async(func, iterable, chunksize).get()

    def map_async(self, func: Callable, iterable: Iterable, chunksize: Optional[int] = None,
                  callback: Optional[Callable[[list], None]] = None,
                  error_callback: Optional[Callable[[BaseException], None]] = None) -> AsyncResult:
        """Like ``map``, returning an ``AsyncResult``; ``callback`` gets the whole list."""
        return self._map_async(func, iterable, chunksize, False, callback, error_callback)

    def starmap(self, func: Callable, iterable: Iterable, chunksize: Optional[int] = None) -> list:
        """``[func(*args) for args in iterable]``."""
        return self._map_async(func, iterable, chunksize, unpack_args=True).get()

    def starmap_async(self, func: Callable, iterable: Iterable, chunksize: Optional[int] = None,
                      callback: Optional[Callable[[list], None]] = None,
                      error_callback: Optional[Callable[[BaseException], None]] = None) -> AsyncResult:
        """Like ``starmap``, returning an ``AsyncResult``."""
        return self._map_async(func, iterable, chunksize, True, callback, error_callback)

    def imap(self, func: Callable, iterable: Iterable, chunksize: Optional[int] = 1) -> IMapIterator:
        """Like ``map``, but lazily: results in order, one chunk per actor in flight."""
        self._check_running()
        return IMapIterator(self, func, iterable, chunksize, ordered=True)

    def imap_unordered(self, func: Callable, iterable: Iterable, chunksize: Optional[int] = 1) -> IMapIterator:
        """Like ``imap``, but results come as they finish."""
        self._check_running()
        return IMapIterator(self, func, iterable, chunksize, ordered=False)

    # ------------------------------------------------------------------ lifetime

    def __enter__(self):
        self._check_running()
        return self

    def __exit__(self, exc_type, exc_val, exc_tb):
        self.terminate()

    def __reduce__(self):
        raise NotImplementedError(
            "pool objects cannot be passed between processes or pickled"
        )

    def close(self) -> None:
        """Accept no more work; the actors exit once the work already sent is done."""
        with self._submit_lock:
            if self._closed:
                return
            self._closed = True
            for actor, _ in self._actor_pool:
                self._stop_actor(actor)

    def terminate(self) -> None:
        """Stop at once: the actors are killed, and work in flight fails with ``ActorDiedError``."""
        self.close()
        for actor, _ in self._actor_pool:
            ray.kill(actor)

    def join(self) -> None:
        """Wait for the actors of a closed pool to exit and for pending results' callbacks
        (``ValueError`` if the pool is still running)."""
        if not self._closed:
            raise ValueError("Pool is still running")
        if self._actor_deletion_ids:
            ray.wait(self._actor_deletion_ids, num_returns=len(self._actor_deletion_ids))
            self._actor_deletion_ids = []
        with self._results_lock:
            outstanding = list(self._outstanding)
        for result in outstanding:
            result.wait()
