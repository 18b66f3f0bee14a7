"""Callable classes in ``map_batches``: a pool of raycompat actors (Ray's ``ActorPoolStrategy``).

Ray Data constructs the class once per actor of a pool and sends each block to an actor;
the map operations after it fuse into the same actor call. raycompat does the same with
``raycompat.remote`` actors (each in a process of its own on the embedded cluster): blocks
go round-robin to the pool, each call returns the new block and its metadata as two
ObjectRefs, and the actors are killed once every block is done.

Differences from Ray: the upstream blocks all finish before the pool starts (Ray streams
them in under a resource budget; waiting first keeps actors that hold CPUs from starving
the read tasks they wait for), and the pool has a fixed size (the upper bound of
``concurrency``/``ActorPoolStrategy``, capped by the CPUs the actors can get), where Ray
autoscales between the bounds.
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


def pool_size(compute, concurrency) -> int:
    if isinstance(compute, ActorPoolStrategy):
        bound = compute.max_size if compute.max_size != float("inf") else max(compute.min_size, ex.cluster_cpus())
        return int(bound)
    if isinstance(concurrency, int):
        return concurrency
    if isinstance(concurrency, tuple):
        return int(concurrency[1] if len(concurrency) > 1 else concurrency[0])
    return 1


def _fitting_actors(args: dict) -> int:
    """How many actors asking for ``args`` the cluster's totals can hold at once (blocks go
    round-robin to the pool, so an actor that could never start would hold its blocks)."""
    totals = raycompat.cluster_resources()
    asked = dict(args.get("resources") or {})
    asked["CPU"], asked["GPU"] = args.get("num_cpus") or 0, args.get("num_gpus") or 0
    fits = [int(totals.get(name, 0) // amount) for name, amount in asked.items() if amount]
    return min(fits) if fits else sys.maxsize


class _MapWorker:
    """One actor of the pool: the user's instance and the fused operations after it."""

    def __init__(self, cls, args, kwargs, ops):
        self.ops = ops
        self.ops[0].fn = cls(*args, **kwargs)

    @raycompat.method(num_returns=2)
    def process(self, table):
        return ex.timed(lambda: _ops.apply(self.ops, table))


class ActorMapStage(ex.Node):
    def __init__(self, input, cls, ctor_args, ctor_kwargs, ops, size, remote_args):
        self.inputs, self.cls, self.ctor_args, self.ctor_kwargs = (input,), cls, tuple(ctor_args), dict(ctor_kwargs)
        self.ops, self.size, self.remote_args = list(ops), size, dict(remote_args)
        self.name = "->".join(op.name for op in ops)

    def fused_with(self, op) -> "ActorMapStage":
        return ActorMapStage(self.inputs[0], self.cls, self.ctor_args, self.ctor_kwargs, self.ops + [op], self.size, self.remote_args)

    def stream(self):
        upstream = list(self.inputs[0].stream())
        if not upstream:
            return
        raycompat.wait([b.ref for b in upstream], num_returns=len(upstream), fetch_local=False)
        args = {"num_cpus": 1, **self.remote_args}
        size = max(1, min(self.size, len(upstream), _fitting_actors(args)))
        actor_cls = raycompat.remote(_MapWorker).options(**args)
        actors = [actor_cls.remote(self.cls, self.ctor_args, self.ctor_kwargs, self.ops) for _ in range(size)]
        try:
            out = []
            for i, b in enumerate(upstream):
                table_ref, meta_ref = actors[i % size].process.remote(b.ref)
                out.append(ex.BlockRef(table_ref, meta_ref))
            ex.metas(out)  # a failed call raises here, before its actor goes
        finally:
            for a in actors:
                raycompat.kill(a)
        yield from out
