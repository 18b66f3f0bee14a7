"""``ray.util.ActorPool``: a fixed pool of actors to map work over.

Ray's own utility is pure Python over ``ray.wait``/``ray.get``; this is the same
algorithm (Ray 2.60's ``ray/util/actor_pool.py``, Apache-2.0) written against
raycompat's public API, so it runs unchanged on either engine and the same tests check
both.
"""

from __future__ import annotations

from typing import Any, Callable, List, Optional, TypeVar

import raycompat as ray

V = TypeVar("V")


class ActorPool:
    """Utility class to operate on a fixed pool of actors.

    Arguments:
        actors: List of actor handles to use in this pool.

    Examples:
        >>> pool = ActorPool([a1, a2])  # doctest: +SKIP
        >>> list(pool.map(lambda a, v: a.double.remote(v), [1, 2, 3, 4]))  # doctest: +SKIP
        [2, 4, 6, 8]
    """

    def __init__(self, actors: list):
        self._idle_actors = list(actors)
        self._future_to_actor: dict = {}
        self._index_to_future: dict = {}
        self._next_task_index = 0
        self._next_return_index = 0
        self._pending_submits: list = []

    def map(self, fn: Callable[[Any, V], Any], values: List[V]):
        """Apply ``fn(actor, value)`` over the values; an iterator of results, in order."""
        while self.has_next():
            try:
                self.get_next(timeout=0, ignore_if_timedout=True)
            except TimeoutError:
                pass
        for v in values:
            self.submit(fn, v)

        def get_generator():
            while self.has_next():
                yield self.get_next()

        return get_generator()

    def map_unordered(self, fn: Callable[[Any, V], Any], values: List[V]):
        """Like ``map``, but results come as they finish."""
        while self.has_next():
            try:
                self.get_next_unordered(timeout=0)
            except TimeoutError:
                pass
        for v in values:
            self.submit(fn, v)

        def get_generator():
            while self.has_next():
                yield self.get_next_unordered()

        return get_generator()

    def submit(self, fn: Callable[[Any, V], Any], value: V):
        """Schedule one ``fn(actor, value)``; it waits for an idle actor if none is free."""
        if self._idle_actors:
            actor = self._idle_actors.pop()
            future = fn(actor, value)
            future_key = tuple(future) if isinstance(future, list) else future
            self._future_to_actor[future_key] = (self._next_task_index, actor)
            self._index_to_future[self._next_task_index] = future
            self._next_task_index += 1
        else:
            self._pending_submits.append((fn, value))

    def has_next(self) -> bool:
        """Whether there are any pending results to return."""
        return bool(self._future_to_actor)

    def get_next(self, timeout: Optional[float] = None, ignore_if_timedout: bool = False):
        """The next result in submission order (``TimeoutError`` after ``timeout``)."""
        if not self.has_next():
            raise StopIteration("No more results to get")
        if self._next_return_index >= self._next_task_index:
            raise ValueError("It is not allowed to call get_next() after get_next_unordered().")
        future = self._index_to_future[self._next_return_index]
        timeout_msg = "Timed out waiting for result"
        raise_timeout_after_ignore = False
        if timeout is not None:
            res, _ = ray.wait([future], timeout=timeout)
            if not res:
                if not ignore_if_timedout:
                    raise TimeoutError(timeout_msg)
                raise_timeout_after_ignore = True
        del self._index_to_future[self._next_return_index]
        self._next_return_index += 1
        future_key = tuple(future) if isinstance(future, list) else future
        _, actor = self._future_to_actor.pop(future_key)
        if raise_timeout_after_ignore:
            self._return_actor(actor)
            raise TimeoutError(timeout_msg + ". The task {} has been ignored.".format(future))
        return self._get_result(future, actor)

    def get_next_unordered(self, timeout: Optional[float] = None, ignore_if_timedout: bool = False):
        """Any next result, whichever finishes first."""
        if not self.has_next():
            raise StopIteration("No more results to get")
        res, _ = ray.wait(list(self._future_to_actor), num_returns=1, timeout=timeout)
        timeout_msg = "Timed out waiting for result"
        raise_timeout_after_ignore = False
        if res:
            [future] = res
        elif not ignore_if_timedout:
            raise TimeoutError(timeout_msg)
        else:
            raise_timeout_after_ignore = True
        i, actor = self._future_to_actor.pop(future)
        del self._index_to_future[i]
        self._next_return_index = max(self._next_return_index, i + 1)
        if raise_timeout_after_ignore:
            self._return_actor(actor)
            raise TimeoutError(timeout_msg + ". The task {} has been ignored.".format(future))
        return self._get_result(future, actor)

    def _get_result(self, future, actor):
        is_alive = True
        try:
            return ray.get(future)
        except ray.exceptions.ActorDiedError:
            is_alive = False
            raise
        finally:
            self._return_actor(actor, is_alive=is_alive)

    def _return_actor(self, actor, is_alive: bool = True):
        # A dead actor stays out of the idle set, or submit() would keep picking it.
        if is_alive:
            self._idle_actors.append(actor)
        if self._pending_submits and self._idle_actors:
            self.submit(*self._pending_submits.pop(0))

    def has_free(self) -> bool:
        """Whether an actor is idle and no submit is waiting for one."""
        return len(self._idle_actors) > 0 and len(self._pending_submits) == 0

    def pop_idle(self):
        """Remove and return an idle actor, or None if none is free."""
        if self.has_free():
            return self._idle_actors.pop()
        return None

    def push(self, actor):
        """Add an actor to the pool (``ValueError`` if it is already in it)."""
        busy_actors = []
        if self._future_to_actor.values():
            _, busy_actors = zip(*self._future_to_actor.values())
        if actor in self._idle_actors or actor in busy_actors:
            raise ValueError("Actor already belongs to current ActorPool")
        self._return_actor(actor)
