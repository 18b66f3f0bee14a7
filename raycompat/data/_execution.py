"""The lazy plan of a Dataset and how it runs: one raycompat task per block.

Ray Data turns a Dataset's logical plan into operators that stream blocks through Ray
tasks and actors. raycompat keeps the plan as a small tree of nodes (``ReadSource``,
``RefSource``, ``MapStage``, ``Limit``, ``AllToAll``, ``Union``, ``ActorMapStage``) and
runs it on raycompat's own tasks (``raycompat.remote``, so Dask runs them, under the same
CPU/GPU ledger as any task): a read and the row/batch operations after it are *one* task
per block, returning the block (an Arrow table) and its ``BlockMetadata`` as two
ObjectRefs, so the driver counts rows and learns schemas without fetching data.

Nothing runs until a consumer pulls blocks from ``stream()``; consumers pull through
``prefetch`` (a window of twice the cluster's CPUs), so ``take``/``limit`` submit only the
blocks they need plus that window.
"""

from __future__ import annotations

import collections
import itertools
import time
from typing import Iterator, Optional

import pyarrow as pa

import raycompat
from raycompat._private.options import actor_options, task_options
from raycompat.data import _blocks, _ops


# Blocks -------------------------------------------------------------------------------
class BlockRef:
    """A block's ObjectRef and its metadata (known, or an ObjectRef to it)."""

    __slots__ = ("ref", "_meta")

    def __init__(self, ref, meta):
        self.ref, self._meta = ref, meta

    @property
    def meta(self) -> _blocks.BlockMetadata:
        if not isinstance(self._meta, _blocks.BlockMetadata):
            self._meta = raycompat.get(self._meta)
        return self._meta


class BlockEntry:
    """One block of a ``RefBundle``: its ref and metadata (Ray's ``BlockEntry``)."""

    __slots__ = ("ref", "metadata")

    def __init__(self, ref, metadata):
        self.ref, self.metadata = ref, metadata


class RefBundle:
    """Blocks as ``iter_internal_ref_bundles`` yields them (Ray's ``RefBundle``: here one
    block each)."""

    def __init__(self, blocks, owns_blocks: bool = False, schema=None):
        self.blocks = tuple(blocks)
        self.owns_blocks = owns_blocks
        self.schema = schema

    @property
    def block_refs(self) -> list:
        return [b.ref for b in self.blocks]

    @property
    def metadata(self) -> list:
        return [b.metadata for b in self.blocks]

    def num_rows(self) -> int:
        return sum(m.num_rows for m in self.metadata)

    def size_bytes(self) -> int:
        return sum(m.size_bytes or 0 for m in self.metadata)

    def __repr__(self):
        return f"RefBundle(num_blocks={len(self.blocks)}, num_rows={self.num_rows()})"


def metas(blocks) -> list:
    """The blocks' metadata, fetched in one ``get`` for those not known yet."""
    pending = [b for b in blocks if not isinstance(b._meta, _blocks.BlockMetadata)]
    if pending:
        for b, meta in zip(pending, raycompat.get([b._meta for b in pending])):
            b._meta = meta
    return [b._meta for b in blocks]


def timed(fn, *args):
    start = time.perf_counter()
    table = fn(*args)
    return table, _blocks.metadata_of(table, time.perf_counter() - start)


def _read_apply(read_task, ops):
    return timed(lambda: _ops.apply(ops, read_task()))


def _apply(table, ops):
    return timed(lambda: _ops.apply(ops, table))


def _apply_many(ops, *tables):
    return timed(lambda: _ops.apply(ops, _blocks.concat(list(tables))))


class ReadMany:
    """Several read tasks as one (bundled up to a ``map_batches`` batch size)."""

    def __init__(self, tasks):
        self.tasks = list(tasks)

    def __call__(self):
        return _blocks.concat([t() for t in self.tasks])


_read_apply_remote = raycompat.remote(num_returns=2)(_read_apply)
_apply_remote = raycompat.remote(num_returns=2)(_apply)
_apply_many_remote = raycompat.remote(num_returns=2)(_apply_many)


def task_name(op_name: str) -> str:
    """The Dask key name of a fused operator's tasks: Ray's name with ``→`` for ``->``, since
    Dask's dashboard cuts a key's name at its first ``-`` (``ReadRange->Map(f)`` would show
    as ``ReadRange``)."""
    return op_name.replace("->", "→")


def options_for(remote_args: Optional[dict], kind: str) -> dict:
    """``remote_args`` without the options the other kind takes (``kind``: "task" or
    "actor"; ``max_restarts`` is for a pool's actors, ``max_retries`` for tasks)."""
    valid = task_options if kind == "task" else actor_options
    return {k: v for k, v in (remote_args or {}).items() if k in valid}


def submit_apply(ref_or_read, ops, name, remote_args=None, read=False) -> BlockRef:
    fn = _read_apply_remote if read else _apply_remote
    table_ref, meta_ref = fn.options(name=task_name(name), **options_for(remote_args, "task")).remote(ref_or_read, tuple(ops))
    return BlockRef(table_ref, meta_ref)


def put_block(table: pa.Table) -> BlockRef:
    return BlockRef(raycompat.put(table), _blocks.metadata_of(table))


def cluster_cpus() -> int:
    return max(1, int(raycompat.cluster_resources().get("CPU", 1)))


def prefetch(blocks: Iterator[BlockRef], window: Optional[int] = None) -> Iterator[BlockRef]:
    """Pull ``window`` blocks ahead of the consumer (their tasks run meanwhile)."""
    window = window or 2 * cluster_cpus()
    ahead: collections.deque = collections.deque()
    for b in blocks:
        ahead.append(b)
        if len(ahead) >= window:
            yield ahead.popleft()
    while ahead:
        yield ahead.popleft()


# Plan nodes ------------------------------------------------------------------------------
class Stats:
    """What each operator ran, for ``Dataset.stats()``."""

    #: Lines kept: a dataset iterated again and again (epochs) must not grow without end.
    MAX_LINES = 100

    def __init__(self, lines: Optional[list] = None):
        self.lines: list = list(lines or [])

    def derived(self) -> "Stats":
        """A derived dataset's own stats, starting from its parent's."""
        return Stats(self.lines)

    def record(self, name: str, blocks, started: float):
        n = blocks if isinstance(blocks, int) else len(blocks)
        self.lines.append(
            f"Operator {len(self.lines) + 1} {name}: {n} tasks executed, {n} blocks produced "
            f"in {time.perf_counter() - started:.2f}s"
        )
        del self.lines[:-self.MAX_LINES]


class Node:
    name = "Node"
    inputs: tuple = ()

    def stream(self) -> Iterator[BlockRef]:
        raise NotImplementedError

    def known_schema(self) -> Optional[pa.Schema]:
        return None

    def known_num_rows(self) -> Optional[int]:
        return None

    def repr_num_rows(self) -> Optional[int]:
        """The row count the repr shows (Ray shows ``?`` for file reads it could count)."""
        return None if source_of(self).rows_hidden_in_repr else self.known_num_rows()

    rows_hidden_in_repr = False


class ReadSource(Node):
    """Blocks read by ``read_tasks`` (picklable callables returning a table)."""

    def __init__(self, name, read_tasks, schema=None, num_rows=None):
        self.name, self.read_tasks = name, list(read_tasks)
        self.schema, self.num_rows = schema, num_rows

    def stream(self):
        for task in self.read_tasks:
            yield submit_apply(task, (), self.name, read=True)

    def known_schema(self):
        return self.schema

    def known_num_rows(self):
        return self.num_rows


class RefSource(Node):
    """Blocks that exist already (materialized, ``from_*``)."""

    name = "Input"

    def __init__(self, blocks):
        self.blocks = list(blocks)

    def stream(self):
        return iter(self.blocks)

    def known_schema(self):
        metas(self.blocks)
        for b in self.blocks:
            if b.meta.schema is not None and b.meta.num_rows:
                return b.meta.schema
        return self.blocks[0].meta.schema if self.blocks else None

    def known_num_rows(self):
        return sum(m.num_rows for m in metas(self.blocks))


class MapStage(Node):
    """Row/batch operations fused into one task per block (with the read, if any)."""

    def __init__(self, input: Node, ops: tuple, remote_args: Optional[dict] = None, max_in_flight: Optional[int] = None):
        self.inputs, self.ops, self.remote_args = (input,), tuple(ops), dict(remote_args or {})
        self.max_in_flight = max_in_flight
        self.name = "->".join(op.name for op in ops)

    def fuses_with(self, remote_args, max_in_flight) -> bool:
        """Ray fuses only operators with the same resources (and concurrency)."""
        return self.remote_args == remote_args and self.max_in_flight == max_in_flight

    def fused_with(self, op) -> "MapStage":
        return MapStage(self.inputs[0], self.ops + (op,), self.remote_args, self.max_in_flight)

    def _bundle_rows(self) -> Optional[int]:
        """Ray bundles blocks smaller than the first ``map_batches``' batch size until
        they hold a batch, so the function sees full batches across small blocks."""
        first = self.ops[0]
        if isinstance(first, _ops.MapBatches) and isinstance(first.batch_size, int):
            return first.batch_size
        return None

    def stream(self):
        if not self.max_in_flight:
            yield from self._submitted()
            return
        # ``concurrency=n`` for a function: at most n of this stage's tasks run at once.
        running: collections.deque = collections.deque()
        for b in self._submitted():
            running.append(b)
            yield b
            while len(running) >= self.max_in_flight:
                oldest = running.popleft()
                raycompat.wait([oldest.ref], fetch_local=False)

    def _submitted(self):
        source, bundle = self.inputs[0], self._bundle_rows()
        if isinstance(source, ReadSource):
            name = f"{source.name}->{self.name}"
            tasks = source.read_tasks
            if bundle and all(getattr(t, "num_rows", None) is not None for t in tasks):
                tasks = [ReadMany(g) if len(g) > 1 else g[0] for g in _groups(tasks, [t.num_rows for t in tasks], bundle)]
            for i, task in enumerate(tasks):
                yield submit_apply(task, _ops.for_task(self.ops, i), name, self.remote_args, read=True)
            return
        if bundle is None:
            for i, b in enumerate(source.stream()):
                yield submit_apply(b.ref, _ops.for_task(self.ops, i), self.name, self.remote_args)
            return
        pending, rows, i = [], 0, 0
        for b in prefetch(source.stream()):
            pending.append(b)
            rows += b.meta.num_rows
            if rows >= bundle:
                yield self._submit_bundle(pending, i)
                pending, rows, i = [], 0, i + 1
        if pending:
            yield self._submit_bundle(pending, i)

    def _submit_bundle(self, blocks, task_idx) -> BlockRef:
        ops = _ops.for_task(self.ops, task_idx)
        if len(blocks) == 1:
            return submit_apply(blocks[0].ref, ops, self.name, self.remote_args)
        t, m = _apply_many_remote.options(name=task_name(self.name), **options_for(self.remote_args, "task")).remote(
            ops, *[b.ref for b in blocks])
        return BlockRef(t, m)

    def known_schema(self):
        if all(isinstance(op, (_ops.SelectColumns, _ops.Slice)) for op in self.ops):
            schema = self.inputs[0].known_schema()
            if schema is None:
                return None
            for op in self.ops:
                if isinstance(op, _ops.SelectColumns):
                    schema = pa.schema([schema.field(c) for c in op.cols if c in schema.names])
            return schema
        return None

    def known_num_rows(self):
        if all(op.keeps_rows for op in self.ops):
            return self.inputs[0].known_num_rows()
        return None


class Limit(Node):
    name = "Limit"

    def __init__(self, input: Node, n: int):
        self.inputs, self.n = (input,), n
        self.name = f"limit={n}"

    def stream(self):
        remaining = self.n
        if remaining <= 0:
            return
        for b in prefetch(self.inputs[0].stream()):
            rows = b.meta.num_rows
            if rows <= remaining:
                yield b
            else:
                yield submit_apply(b.ref, (_ops.Slice(0, remaining),), "Limit")
            remaining -= min(rows, remaining)
            if remaining <= 0:
                return

    def known_schema(self):
        return self.inputs[0].known_schema()

    def known_num_rows(self):
        rows = self.inputs[0].known_num_rows()
        return None if rows is None else min(rows, self.n)


def _slice_concat(spec, *tables):
    """One block of the rows ``spec[i] = (start, stop)`` of each table, in order."""
    return timed(lambda: _blocks.concat([t.slice(a, b - a) for t, (a, b) in zip(tables, spec)]))


slice_concat_remote = raycompat.remote(num_returns=2)(_slice_concat)


class Rebatch(Node):
    """Blocks of exactly ``rows`` rows, the last one smaller, cut as the input streams in
    (``repartition(target_num_rows_per_block=n)``, Ray's ``StreamingRepartition``). That
    is Ray's ``strict=True``; its default best-effort bundling may also leave a smaller
    block per input block, which exact cuts satisfy too."""

    def __init__(self, input: Node, rows: int, strict: bool = False):
        if rows <= 0:
            raise ValueError(f"target_num_rows_per_block must be positive, got {rows}")
        self.inputs, self.rows = (input,), rows
        self.name = f"StreamingRepartition[num_rows_per_block={rows},strict={strict}]"

    def stream(self):
        pending: list = []  # (block, first row not yet emitted)
        held = 0
        for b in prefetch(self.inputs[0].stream()):
            n = b.meta.num_rows
            if not n:
                continue
            pending.append((b, 0))
            held += n
            while held >= self.rows:
                yield self._cut(pending, self.rows)
                held -= self.rows
        if held:
            yield self._cut(pending, held)

    @staticmethod
    def _cut(pending: list, rows: int) -> BlockRef:
        """The next ``rows`` rows of ``pending`` (consumed from its front) as one block."""
        refs, spec = [], []
        while rows:
            b, start = pending[0]
            take = min(rows, b.meta.num_rows - start)
            refs.append(b.ref)
            spec.append((start, start + take))
            rows -= take
            if start + take == b.meta.num_rows:
                pending.pop(0)
            else:
                pending[0] = (b, start + take)
        t, m = slice_concat_remote.options(name="StreamingRepartition").remote(spec, *refs)
        return BlockRef(t, m)

    def known_schema(self):
        return self.inputs[0].known_schema()

    def known_num_rows(self):
        return self.inputs[0].known_num_rows()


class AllToAll(Node):
    """An exchange (``repartition``, ``sort``, ``groupby``...): ``fn(blocks) -> blocks``."""

    def __init__(self, input: Node, name: str, fn, keeps_schema=True, keeps_rows=True):
        self.inputs, self.name, self.fn = (input,), name, fn
        self.keeps_schema, self.keeps_rows = keeps_schema, keeps_rows

    def stream(self):
        yield from self.fn(list(self.inputs[0].stream()))

    def known_schema(self):
        return self.inputs[0].known_schema() if self.keeps_schema else None

    def known_num_rows(self):
        return self.inputs[0].known_num_rows() if self.keeps_rows else None


class Combine(Node):
    """An operation over several inputs' blocks (``zip``): ``fn(list of block lists)``."""

    def __init__(self, inputs, name, fn):
        self.inputs, self.name, self.fn = tuple(inputs), name, fn

    def stream(self):
        yield from self.fn([list(i.stream()) for i in self.inputs])


class Union(Node):
    name = "Union"

    def __init__(self, inputs):
        self.inputs = tuple(inputs)

    def stream(self):
        return itertools.chain.from_iterable(i.stream() for i in self.inputs)

    def known_schema(self):
        return self.inputs[0].known_schema()

    def known_num_rows(self):
        return None


def _groups(items, sizes, target) -> list:
    """Consecutive items grouped until each group's sizes reach ``target``."""
    groups, current, total = [], [], 0
    for item, size in zip(items, sizes):
        current.append(item)
        total += size
        if total >= target:
            groups.append(current)
            current, total = [], 0
    if current:
        groups.append(current)
    return groups


def cut_rows(blocks: list, edges) -> list:
    """The blocks' rows cut at the row numbers ``edges``: for each ``[edges[i],
    edges[i+1])`` the whole blocks in it and slices (a task each) of those it cuts."""
    starts = list(itertools.accumulate((m.num_rows for m in metas(blocks)), initial=0))
    out = []
    for lo, hi in zip(edges[:-1], edges[1:]):
        parts = []
        for b, s, e in zip(blocks, starts[:-1], starts[1:]):
            a, z = max(lo, s), min(hi, e)
            if z > a:
                parts.append(b if (a, z) == (s, e) else submit_apply(b.ref, (_ops.Slice(int(a - s), int(z - s)),), "Split"))
        out.append(parts)
    return out


def source_of(node: Node) -> Node:
    while node.inputs:
        node = node.inputs[0]
    return node


def plan_lines(node: Node) -> list:
    """Operator names from the last to the source (Ray's plan repr order)."""
    names = []
    while node.inputs and len(node.inputs) == 1:
        if isinstance(node, MapStage) or hasattr(node, "cls"):
            names.extend(op.name for op in reversed(node.ops))
        else:
            names.append(node.name)
        node = node.inputs[0]
    return names


#: Ray's physical operator for each kind of plan node (its execution-plan log line).
_OPERATORS = {"MapStage": "TaskPoolMapOperator", "ReadSource": "TaskPoolMapOperator", "Limit": "LimitOperator",
              "AllToAll": "AllToAllOperator", "Union": "UnionOperator", "Combine": "ZipOperator",
              "ActorMapStage": "ActorPoolMapOperator", "Rebatch": "TaskPoolMapOperator"}


def operator_chain(node: Node) -> list:
    """Ray's operators for the plan, source first (``TaskPoolMapOperator[ReadRange->Map(f)]``)."""
    chain = []
    while node.inputs or isinstance(node, ReadSource):
        kind = _OPERATORS.get(type(node).__name__, type(node).__name__)
        if hasattr(node, "ops") and isinstance(node.inputs[0], ReadSource):
            chain.append(f"{kind}[{node.inputs[0].name}->{node.name}]")  # fused with its read
            break
        chain.append(f"{kind}[{node.name}]")
        if len(node.inputs) != 1:
            break
        node = node.inputs[0]
    return list(reversed(chain))


def execute(node: Node, stats: Optional[Stats] = None) -> list:
    """Every block of the plan (submitted; they may still be running)."""
    started = time.perf_counter()
    blocks = list(node.stream())
    if stats is not None:
        stats.record(node.name, blocks, started)
    return blocks
