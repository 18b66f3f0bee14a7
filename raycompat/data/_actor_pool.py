"""Callable classes in ``map_batches``: a pool of raycompat actors (Ray's ``ActorPoolStrategy``).

Ray Data constructs the class once per actor of a pool and hands each block to an actor;
the map operations after it fuse into the same actor call. raycompat does the same with
``raycompat.remote`` actors (each in a process of its own on the embedded cluster),
streaming: a block goes to the actor with the fewest calls in flight as soon as the
consumer pulls for it, the pool grows while blocks wait and every actor is busy, and the
actors go once the input ends and every call is answered, or when the consumer stops
(``take(1)`` runs the few blocks its window pulls, not the whole dataset).

Differences from Ray: an actor call's result travels back through the driver (raycompat's
actor results belong to the caller, as Ray's do, but are held in the caller's process);
the pool grows past ``initial_size`` one actor at a time as blocks wait and does not
shrink before the end.
"""

from __future__ import annotations

import sys
from typing import Optional

import raycompat
from raycompat.data import _execution as ex
from raycompat.data import _ops


class ActorPoolStrategy:
    """How many actors run a callable class (Ray's ``ray.data.ActorPoolStrategy``)."""

    def __init__(self, *, size: Optional[int] = None, min_size: Optional[int] = None, max_size: Optional[int] = None,
                 initial_size: Optional[int] = None, max_tasks_in_flight_per_actor: Optional[int] = None,
                 max_concurrent_calls_per_actor: Optional[int] = None, enable_true_multi_threading: bool = False):
        if size is not None:
            if size < 1:
                raise ValueError("size must be >= 1", size)
            if max_size is not None or min_size is not None or initial_size is not None:
                raise ValueError("min_size, max_size, and initial_size cannot be set at the same time as `size`")
            min_size = max_size = initial_size = size
        min_size = 1 if min_size is None else min_size
        if max_size is not None and max_size < min_size:
            raise ValueError("min_size must be <= max_size", min_size, max_size)
        self.min_size, self.max_size = min_size, max_size if max_size is not None else float("inf")
        self.initial_size = initial_size or min_size
        self.max_tasks_in_flight_per_actor = max_tasks_in_flight_per_actor
        self.max_concurrent_calls_per_actor = max_concurrent_calls_per_actor
        self.num_workers = 0
        self.enable_true_multi_threading = enable_true_multi_threading
        self.ready_to_total_workers_ratio = 0.8

    def __eq__(self, other):
        return isinstance(other, ActorPoolStrategy) and vars(self) == vars(other)

    def __repr__(self):
        return (
            f"ActorPoolStrategy(min_size={self.min_size}, max_size={self.max_size}, "
            f"initial_size={self.initial_size}, max_tasks_in_flight_per_actor="
            f"{self.max_tasks_in_flight_per_actor}, max_concurrent_calls_per_actor="
            f"{self.max_concurrent_calls_per_actor}, num_workers={self.num_workers}, "
            f"enable_true_multi_threading={self.enable_true_multi_threading}, "
            f"ready_to_total_workers_ratio={self.ready_to_total_workers_ratio})"
        )


class TaskPoolStrategy:
    """Functions as tasks, at most ``size`` at once (Ray's ``ray.data.TaskPoolStrategy``)."""

    def __init__(self, size: Optional[int] = None):
        if size is not None and size < 1:
            raise ValueError("`size` must be >= 1", size)
        self.size = size

    def __eq__(self, other):
        return (isinstance(other, TaskPoolStrategy) and self.size == other.size) or (
            other == "tasks" and self.size is None
        )

    def __repr__(self):
        return f"TaskPoolStrategy(size={self.size})"


def pool_bounds(compute, concurrency) -> ActorPoolStrategy:
    """The pool's strategy from ``compute``/``concurrency``, as Ray reads them: ``n`` is a
    fixed pool of n, ``(min, max[, initial])`` an autoscaling one, neither ``min_size=1``
    and no upper bound but the cluster's."""
    if isinstance(compute, ActorPoolStrategy):
        return compute
    if isinstance(concurrency, int):
        return ActorPoolStrategy(size=concurrency)
    if isinstance(concurrency, tuple):
        if len(concurrency) not in (2, 3) or not all(isinstance(c, int) for c in concurrency):
            raise ValueError(f"``concurrency`` is expected to be set as a tuple of integers, but got: {concurrency}.")
        return ActorPoolStrategy(min_size=concurrency[0], max_size=concurrency[1],
                                 initial_size=concurrency[2] if len(concurrency) == 3 else None)
    return ActorPoolStrategy(min_size=1, max_size=None)


def _fitting_actors(args: dict, resources: dict) -> int:
    """How many actors asking for ``args`` fit in ``resources`` (the cluster's totals, or
    what is free now)."""
    asked = dict(args.get("resources") or {})
    asked["CPU"], asked["GPU"] = args.get("num_cpus") or 0, args.get("num_gpus") or 0
    fits = [int(resources.get(name, 0) // amount) for name, amount in asked.items() if amount]
    return min(fits) if fits else sys.maxsize


def _unfinished(refs: list) -> list:
    if not refs:
        return refs
    return raycompat.wait(refs, num_returns=len(refs), timeout=0, fetch_local=False)[1]


class _MapWorker:
    """One actor of the pool: the user's instance within the fused operations."""

    def __init__(self, cls, args, kwargs, ops, class_index):
        self.ops = ops
        self.ops[class_index].fn = cls(*args, **kwargs)

    @raycompat.method(num_returns=2)
    def process(self, source, task_idx):
        """``source``: the input block, or the read task fused into this stage."""
        ops = _ops.for_task(self.ops, task_idx)
        return ex.timed(lambda: _ops.apply(ops, source() if callable(source) else source))


class _Pool:
    """The running pool of one ``ActorMapStage``: actors and the calls each has in flight.

    Ray's ``ActorPoolMapOperator`` hands each input to the actor with the fewest calls in
    flight, at most ``max_tasks_in_flight_per_actor`` (Ray's default: twice the actor's
    concurrency, 2) each; it starts ``initial_size`` actors and adds one while inputs
    wait, every actor is busy, none is still starting and the cluster has room, up to the
    strategy's ``max_size`` (the cluster's size when unbounded). So do we. An actor holds
    its CPUs while it lives, and Ray keeps a budget per operator so no stage starves the
    others; here a pool grows past ``initial_size`` only into CPUs beyond one left free for
    the rest of the pipeline (two while upstream tasks are unfinished): a pool holding
    every CPU would wait for blocks whose tasks, or for a consumer whose actors, wait for
    those CPUs.
    """

    def __init__(self, stage: "ActorMapStage", upstream_busy):
        self.stage, self.upstream_busy = stage, upstream_busy
        strategy = stage.strategy
        # Ray restarts a pool's actors and retries their calls without limit by default.
        self.args = {"num_cpus": 1, "max_restarts": -1, "max_task_retries": -1,
                     **ex.options_for(stage.remote_args, "actor")}
        fit = max(1, _fitting_actors(self.args, raycompat.cluster_resources()))
        upper = strategy.max_size if strategy.max_size != float("inf") else max(strategy.min_size, ex.cluster_cpus())
        self.max_size = max(1, min(int(upper), fit))
        self.initial_size = max(1, min(strategy.initial_size, self.max_size))
        self.max_in_flight = strategy.max_tasks_in_flight_per_actor or 2
        self.actor_cls = raycompat.remote(_MapWorker).options(**self.args)
        self.actors: list = []
        self.in_flight: list = []  # per actor: the table refs of its unanswered calls
        self.starting: list = []  # ``__ray_ready__`` refs of actors not known to be up
        self.submitted = 0

    def _grow(self) -> None:
        s = self.stage
        self.actors.append(self.actor_cls.remote(s.cls, s.ctor_args, s.ctor_kwargs, s.ops, s.class_index))
        self.in_flight.append([])
        self.starting.append(self.actors[-1].__ray_ready__.remote())

    def _room_for_one_more(self) -> bool:
        if len(self.actors) >= self.max_size:
            return False
        busy = self.upstream_busy()
        if len(self.actors) < self.initial_size and not busy:
            return True
        self.starting[:] = _unfinished(self.starting)
        if self.starting:  # Ray does not scale up while actors are pending
            return False
        free = dict(raycompat.available_resources())
        free["CPU"] = free.get("CPU", 0) - (2 if busy else 1)
        return _fitting_actors(self.args, free) >= 1

    def submit(self, source) -> ex.BlockRef:
        """Call an actor on ``source`` once one has room (waiting for a call to end)."""
        while len(self.actors) < (1 if self.upstream_busy() else self.initial_size):
            self._grow()
        while True:
            for calls in self.in_flight:
                calls[:] = _unfinished(calls)
            i = min(range(len(self.actors)), key=lambda j: len(self.in_flight[j]))
            if self.in_flight[i] and self._room_for_one_more():
                self._grow()
                i = len(self.actors) - 1
            if len(self.in_flight[i]) < self.max_in_flight:
                table_ref, meta_ref = self.actors[i].process.remote(source, self.submitted)
                self.submitted += 1
                self.in_flight[i].append(table_ref)
                return ex.BlockRef(table_ref, meta_ref)
            raycompat.wait([r for calls in self.in_flight for r in calls], num_returns=1, fetch_local=False)

    def drain(self) -> None:
        pending = [r for calls in self.in_flight for r in calls]
        if pending:
            raycompat.wait(pending, num_returns=len(pending), fetch_local=False)

    def close(self) -> None:
        # Killed, not left to the reference model: a dropped handle here left the pool's
        # actors holding their CPUs (seen as a hang of the next stage's tests).
        for a in self.actors:
            raycompat.kill(a)
        self.actors, self.in_flight, self.starting = [], [], []


class ActorMapStage(ex.Node):
    """A callable class's operation on an actor pool, with the function operations fused
    around it: before it a read or task-pool maps with the same resources (Ray fuses
    ``ReadRange->MapBatches(Cls)`` into one ``ActorPoolMapOperator``, so the read runs in
    the actor and needs no CPU of its own), after it maps with none of their own."""

    def __init__(self, input, cls, ctor_args, ctor_kwargs, ops, strategy: ActorPoolStrategy, remote_args, class_index=0):
        self.inputs, self.cls, self.ctor_args, self.ctor_kwargs = (input,), cls, tuple(ctor_args), dict(ctor_kwargs)
        self.ops, self.strategy, self.remote_args = list(ops), strategy, dict(remote_args)
        self.class_index = class_index
        self.name = "->".join(op.name for op in ops)

    @classmethod
    def over(cls, node: ex.Node, klass, ctor_args, ctor_kwargs, op, strategy, remote_args) -> "ActorMapStage":
        """The stage for ``op`` after ``node``, fused with it where Ray fuses."""
        if isinstance(node, ex.MapStage) and node.fuses_with(remote_args, None):
            return cls(node.inputs[0], klass, ctor_args, ctor_kwargs, list(node.ops) + [op], strategy, remote_args,
                       class_index=len(node.ops))
        return cls(node, klass, ctor_args, ctor_kwargs, [op], strategy, remote_args)

    def fused_with(self, op) -> "ActorMapStage":
        return ActorMapStage(self.inputs[0], self.cls, self.ctor_args, self.ctor_kwargs, self.ops + [op],
                             self.strategy, self.remote_args, self.class_index)

    def reads(self) -> bool:
        return isinstance(self.inputs[0], ex.ReadSource)

    def stream(self):
        """Blocks as the pool takes them in: each output is an actor call's refs, yielded
        at once; the actors go once the input ends and every call is answered (or when the
        consumer stops early: ``take(1)`` leaves the rest of the input unread)."""
        source = self.inputs[0]
        if self.reads():
            pool = _Pool(self, lambda: False)
            inputs = iter(source.read_tasks)
        else:
            pending: list = []
            exhausted = [isinstance(source, ex.RefSource)]

            def upstream_busy() -> bool:
                pending[:] = _unfinished(pending)
                return bool(pending) or not exhausted[0]

            pool = _Pool(self, upstream_busy)

            def blocks():
                for b in ex.prefetch(source.stream()):
                    pending.append(b.ref)
                    yield b.ref
                exhausted[0] = True

            inputs = blocks()
        try:
            for arg in inputs:
                yield pool.submit(arg)
            pool.drain()
        finally:
            pool.close()
