"""``Dataset`` and ``MaterializedDataset`` (Ray's ``ray.data.dataset``).

A Dataset is an immutable, lazy plan (``_execution`` nodes); each transformation returns
a new Dataset with one more node, fusing row/batch operations into the previous map
stage (one task per block, as Ray's operator fusion). Consumers run the plan on raycompat
tasks; all-to-all operations run as a map/reduce exchange (``_exchange``); callable
classes in ``map_batches`` run on a pool of raycompat actors (``_actor_pool``).
"""

from __future__ import annotations

import time
import warnings
from typing import Any, Dict, Iterator, List, Optional

import numpy as np
import pyarrow as pa

import raycompat
from raycompat._dask import data_bridge
from raycompat._private.options import actor_options, task_options
from raycompat.data import _actor_pool, _blocks, _exchange, _files, _ops, _repr, _streaming_split
from raycompat.data import _execution as ex
from raycompat.data import aggregate as agg_mod
from raycompat.data import expressions
from raycompat.data._ignored import warn_ignored
from raycompat.data._progress import DatasetProgress
from raycompat.data.context import DataContext
from raycompat.data.iterator import DataIterator, batches_of, torch_batches


class Schema:
    """A Dataset's schema (Ray's ``ray.data.dataset.Schema``): ``names`` and ``types``."""

    def __init__(self, base_schema: pa.Schema):
        self.base_schema = base_schema

    @property
    def names(self) -> List[str]:
        return list(self.base_schema.names)

    @property
    def types(self) -> list:
        return list(self.base_schema.types)

    def __eq__(self, other):
        return isinstance(other, Schema) and self.base_schema == other.base_schema

    def __repr__(self):
        width = max([len("Column")] + [len(n) for n in self.names])
        lines = [f"{'Column':<{width}}  Type", f"{'-' * 6:<{width}}  ----"]
        lines += [f"{n:<{width}}  {t}" for n, t in zip(self.names, self.types)]
        return "\n".join(lines)


def _remote_args(num_cpus=None, num_gpus=None, memory=None, **ray_remote_args) -> dict:
    """The options for a stage's tasks or actors, as Ray passes ``ray_remote_args`` to
    ``.options()``: every task or actor option goes through (each kind of stage keeps
    its own, ``_execution.options_for``); any other keyword is Ray's ValueError."""
    args = {k: v for k, v in (("num_cpus", num_cpus), ("num_gpus", num_gpus), ("memory", memory)) if v is not None}
    for key, value in ray_remote_args.items():
        if key not in task_options and key not in actor_options:
            raise ValueError(f"Invalid option keyword {key} for remote functions. Valid ones are {list(task_options)}.")
        if key not in ("name", "num_returns"):  # raycompat.data names its tasks and sets their returns
            args[key] = value
    return args


class Dataset:
    """A distributed collection of rows (dicts), lazily built from blocks of Arrow tables."""

    def __init__(self, node: ex.Node, stats: Optional[ex.Stats] = None):
        self._node = node
        self._stats = stats or ex.Stats()
        self._name = None

    # plan building ------------------------------------------------------------------
    def _with(self, node: ex.Node, cls=None) -> "Dataset":
        return (cls or Dataset)(node, self._stats.derived())

    def _map(self, op: _ops.Op, remote_args: Optional[dict] = None, concurrency=None) -> "Dataset":
        node = self._node
        remote_args = remote_args or {}
        max_in_flight = concurrency if isinstance(concurrency, int) else None
        if isinstance(node, ex.MapStage) and node.fuses_with(remote_args, max_in_flight):
            return self._with(node.fused_with(op))
        if isinstance(node, _actor_pool.ActorMapStage) and not remote_args and max_in_flight is None:
            return self._with(node.fused_with(op))
        return self._with(ex.MapStage(node, (op,), remote_args, max_in_flight))

    def _udf(self, op: _ops.Op, fn, compute, concurrency, ctor_args, ctor_kwargs, remote_args) -> "Dataset":
        """A user function as a fused task step, or a callable class on an actor pool."""
        if isinstance(fn, type):
            if compute == "tasks" or isinstance(compute, _actor_pool.TaskPoolStrategy):
                raise ValueError(
                    f"You specified the callable class {fn} as your UDF with the compute {compute}, but "
                    "Ray Data can't schedule callable classes with the task pool strategy. To fix this "
                    "error, pass an ActorPoolStrategy to compute or None to use the default compute strategy."
                )
            op.fn = None  # each actor puts its own instance here
            stage = _actor_pool.ActorMapStage.over(self._node, fn, ctor_args or (), ctor_kwargs or {}, op,
                                                   _actor_pool.pool_bounds(compute, concurrency), remote_args)
            return self._with(stage)
        if isinstance(compute, _actor_pool.ActorPoolStrategy) or compute == "actors":
            raise ValueError(
                f"You specified the function {fn} as your UDF with the compute {compute}, but "
                "Ray Data can't schedule regular functions with the actor pool strategy. To fix "
                "this error, pass a TaskPoolStrategy to compute or None to use the default "
                "compute strategy."
            )
        if isinstance(concurrency, tuple):
            raise ValueError(
                f"``concurrency`` is set as a tuple of integers, but ``fn`` is not a callable "
                f"class: {fn}. Use ``concurrency=n`` to control maximum number of workers to use."
            )
        if isinstance(compute, _actor_pool.TaskPoolStrategy) and compute.size is not None:
            concurrency = compute.size
        return self._map(op, remote_args, concurrency)

    def map(self, fn, *, compute=None, fn_args=None, fn_kwargs=None, fn_constructor_args=None,
            fn_constructor_kwargs=None, num_cpus=None, num_gpus=None, memory=None, concurrency=None, **ray_remote_args) -> "Dataset":
        """``fn(row) -> row`` on every row (a dict in, a dict out)."""
        return self._udf(_ops.MapRows(fn, fn_args, fn_kwargs), fn, compute, concurrency, fn_constructor_args,
                         fn_constructor_kwargs, _remote_args(num_cpus, num_gpus, memory, **ray_remote_args))

    def flat_map(self, fn, *, compute=None, fn_args=None, fn_kwargs=None, fn_constructor_args=None,
                 fn_constructor_kwargs=None, num_cpus=None, num_gpus=None, memory=None, concurrency=None, **ray_remote_args) -> "Dataset":
        """``fn(row) -> list of rows`` on every row."""
        return self._udf(_ops.FlatMap(fn, fn_args, fn_kwargs), fn, compute, concurrency, fn_constructor_args,
                         fn_constructor_kwargs, _remote_args(num_cpus, num_gpus, memory, **ray_remote_args))

    def filter(self, fn=None, expr=None, *, compute=None, fn_args=None, fn_kwargs=None, fn_constructor_args=None,
               fn_constructor_kwargs=None, num_cpus=None, num_gpus=None, memory=None, concurrency=None, **ray_remote_args) -> "Dataset":
        """The rows for which ``fn(row)`` is true, or the expression ``expr`` holds
        (an ``expressions`` tree, or a string such as ``"id > 3"``)."""
        remote_args = _remote_args(num_cpus, num_gpus, memory, **ray_remote_args)
        if expr is not None:
            if fn is not None:
                raise ValueError("Exactly one of 'fn' or 'expr' must be provided.")
            tree = expressions.parse(expr) if isinstance(expr, str) else expr
            return self._map(_ops.FilterExpr(tree), remote_args, concurrency)
        return self._udf(_ops.Filter(fn, fn_args, fn_kwargs), fn, compute, concurrency, fn_constructor_args,
                         fn_constructor_kwargs, remote_args)

    def map_batches(self, fn, *, batch_size="default", compute=None, batch_format="default", zero_copy_batch=True,
                    fn_args=None, fn_kwargs=None, fn_constructor_args=None, fn_constructor_kwargs=None,
                    num_cpus=None, num_gpus=None, memory=None, concurrency=None, **ray_remote_args) -> "Dataset":
        """``fn(batch) -> batch`` on batches of ``batch_size`` rows of each block.

        A function runs in the block's fused task (``concurrency=n``: at most n at once); a
        callable class runs on a pool of raycompat actors (``concurrency=n`` or
        ``compute=ActorPoolStrategy(size=n)``), each constructing it once with
        ``fn_constructor_args/kwargs``.
        """
        if batch_size == "default":
            batch_size = None
        op = _ops.MapBatches(fn, batch_size, batch_format, fn_args, fn_kwargs)
        return self._udf(op, fn, compute, concurrency, fn_constructor_args, fn_constructor_kwargs,
                         _remote_args(num_cpus, num_gpus, memory, **ray_remote_args))

    def add_column(self, col: str, fn, *, batch_format="pandas", compute=None, concurrency=None, **ray_remote_args) -> "Dataset":
        """A new column ``col`` computed by ``fn(batch)`` (a pandas batch by default)."""
        return self._map(_ops.AddColumn(col, fn, batch_format))

    def with_column(self, column_name: str, expr, *, compute=None, num_cpus=None, num_gpus=None, memory=None, **ray_remote_args) -> "Dataset":
        """A column ``column_name`` computed from an expression (``col("id") * 2``)."""
        return self._map(_ops.WithColumn(column_name, expr), _remote_args(num_cpus, num_gpus, memory, **ray_remote_args))

    def select_columns(self, cols, *, compute=None, concurrency=None, **ray_remote_args) -> "Dataset":
        return self._map(_ops.SelectColumns([cols] if isinstance(cols, str) else cols))

    def drop_columns(self, cols, *, compute=None, concurrency=None, **ray_remote_args) -> "Dataset":
        cols = [cols] if isinstance(cols, str) else list(cols)
        schema = self._node.known_schema()
        if schema is not None:
            missing = [c for c in cols if c not in schema.names]
            if missing:
                raise KeyError(
                    f"drop_columns: column(s) not found in dataset schema: {missing}. "
                    f"Available columns: {list(schema.names)}"
                )
        return self._map(_ops.DropColumns(cols))

    def rename_columns(self, names, *, concurrency=None, **ray_remote_args) -> "Dataset":
        if isinstance(names, list):
            schema = self.schema()
            names = dict(zip(schema.names, names))
        return self._map(_ops.RenameColumns(names))

    def random_sample(self, fraction: float, *, seed=None) -> "Dataset":
        return self._map(_ops.RandomSample(fraction, seed))

    def limit(self, limit: int) -> "Dataset":
        """The first ``limit`` rows: only the blocks they need are computed."""
        return self._with(ex.Limit(self._node, limit))

    # all-to-all ------------------------------------------------------------------------
    def repartition(self, num_blocks: Optional[int] = None, target_num_rows_per_block: Optional[int] = None, *,
                    strict: bool = False, shuffle: bool = False, keys=None, sort: bool = False) -> "Dataset":
        """``num_blocks`` blocks (rows in order; ``shuffle=True``: a random exchange;
        ``keys``: hash-partitioned by them, ``sort``: each block sorted by them), or blocks
        of ``target_num_rows_per_block`` rows, streaming, the last one smaller."""
        if target_num_rows_per_block is not None:
            for name, value in (("keys", keys is not None), ("sort", sort is not False), ("shuffle", shuffle)):
                if value:
                    warnings.warn(f"`{name}` is ignored when `target_num_rows_per_block` is set.")
        elif strict:
            warnings.warn("`strict` is ignored when `target_num_rows_per_block` is not set. Use "
                          "`target_num_rows_per_block` instead of `num_blocks` to enable `strict` mode.")
        if num_blocks is None and target_num_rows_per_block is None:
            raise ValueError("Either `num_blocks` or `target_num_rows_per_block` must be set")
        if num_blocks is not None and target_num_rows_per_block is not None:
            raise ValueError("Only one of `num_blocks` or `target_num_rows_per_block` must be set, but not both.")
        if target_num_rows_per_block is not None and shuffle:
            raise ValueError("`shuffle` must be False when `target_num_rows_per_block` is set.")
        if target_num_rows_per_block is not None:
            return self._with(ex.Rebatch(self._node, int(target_num_rows_per_block), strict))
        if keys is not None:
            keys = [keys] if isinstance(keys, str) else list(keys)
            finish = _exchange.Sorted(keys, False) if sort else _exchange.unchanged
            return self._with(ex.AllToAll(self._node, "Repartition",
                                          lambda bs: _exchange.hash_exchange(bs, keys, finish, "Repartition", num_blocks)))
        if shuffle:
            return self._with(ex.AllToAll(self._node, "Repartition", lambda bs: _exchange.random_shuffle(bs, None, num_blocks)))
        return self._with(ex.AllToAll(self._node, "Repartition", lambda bs: _exchange.repartition(bs, num_blocks)))

    def random_shuffle(self, *, seed: Optional[int] = None, num_blocks=None, **ray_remote_args) -> "Dataset":
        return self._with(ex.AllToAll(self._node, "RandomShuffle", lambda bs: _exchange.random_shuffle(bs, seed, num_blocks)))

    def sort(self, key, descending=False, boundaries=None) -> "Dataset":
        keys = [key] if isinstance(key, str) else list(key)
        return self._with(ex.AllToAll(self._node, "Sort", lambda bs: _exchange.sort(bs, keys, descending)))

    def groupby(self, key, num_partitions=None) -> "GroupedData":  # noqa: F821 - imported late
        # late: grouped_data imports this module for Dataset.
        from raycompat.data.grouped_data import GroupedData

        return GroupedData(self, key, num_partitions)

    def unique(self, column: str, ignore_nulls: bool = False) -> List[Any]:
        table = self.select_columns([column]).groupby(column).count()._concat()
        values = table.column(column).to_pylist()
        return [v for v in values if not (ignore_nulls and v is None)]

    def union(self, *other: "Dataset") -> "Dataset":
        return self._with(ex.Union([self._node] + [o._node for o in other]))

    def zip(self, *other: "Dataset") -> "Dataset":
        """Columns of every dataset side by side (duplicate names get ``_1``, ``_2``...)."""
        nodes = [self._node] + [o._node for o in other]

        return self._with(ex.Combine(nodes, "Zip", _exchange.zip_blocks))

    # splitting -------------------------------------------------------------------------
    def _blocks(self) -> List[ex.BlockRef]:
        return ex.execute(self._node, self._stats)

    def split(self, n: int, *, equal: bool = False, locality_hints=None) -> List["MaterializedDataset"]:
        if n <= 0:
            raise ValueError(f"The number of splits {n} is not positive.")
        blocks = self._blocks()
        if equal:
            per = sum(m.num_rows for m in ex.metas(blocks)) // n
            return self._split_rows(blocks, [i * per for i in range(n + 1)])
        # Ray splits by whole blocks: with fewer blocks than n, some splits are empty.
        groups = np.array_split(np.arange(len(blocks)), n)
        return [MaterializedDataset(ex.RefSource([blocks[i] for i in g]), self._stats) for g in groups]

    def split_at_indices(self, indices: List[int]) -> List["MaterializedDataset"]:
        if sorted(indices) != list(indices):
            raise ValueError("indices must be sorted")
        if indices and indices[0] < 0:
            raise ValueError("indices must be positive")
        blocks = self._blocks()
        total = sum(m.num_rows for m in ex.metas(blocks))
        edges = [0] + [min(i, total) for i in indices] + [total]
        return self._split_rows(blocks, edges)

    def _split_rows(self, blocks, edges) -> List["MaterializedDataset"]:
        return [MaterializedDataset(ex.RefSource(parts), self._stats) for parts in ex.cut_rows(blocks, edges)]

    def _counted(self):
        """This dataset and its row count, running the plan at most once (materialized
        when the count is not known from metadata), as Ray's ``_try_count_or_materialize``."""
        n = self._node.known_num_rows()
        if n is not None:
            return self, n
        ds = self.materialize()
        return ds, ds.count()

    def split_proportionately(self, proportions: List[float]) -> List["MaterializedDataset"]:
        if len(proportions) < 1:
            raise ValueError("proportions must be at least of length 1")
        if sum(proportions) >= 1:
            raise ValueError("proportions must sum to less than 1")
        if any(p <= 0 for p in proportions):
            raise ValueError("proportions must be bigger than 0")
        ds, n = self._counted()
        indices = [int(n * p) for p in np.cumsum(proportions)]
        subtract = 0  # each split gets at least one row (Ray's rule)
        for i in range(len(indices) - 2, -1, -1):
            indices[i] -= subtract
            if indices[i] == indices[i + 1]:
                subtract += 1
                indices[i] -= 1
        if any(i <= 0 for i in indices):
            raise ValueError("Couldn't create non-empty splits with the given proportions.")
        return ds.split_at_indices(indices)

    def train_test_split(self, test_size, *, shuffle: bool = False, seed=None, stratify=None):
        ds = self.random_shuffle(seed=seed) if shuffle else self
        if not isinstance(test_size, (int, float)):
            raise TypeError(f"`test_size` must be int or float got {type(test_size)}.")
        if shuffle and stratify is not None:
            raise ValueError(
                "Cannot specify both 'shuffle=True' and 'stratify' parameters. "
                "Stratified splitting maintains class proportions and is incompatible with shuffling."
            )
        if isinstance(test_size, float):
            if not 0 < test_size < 1:
                raise ValueError(f"If `test_size` is a float, it must be bigger than 0 and smaller than 1. Got {test_size}.")
            if stratify is None:
                return ds.split_proportionately([1 - test_size])
        else:
            ds, n = ds._counted()
            if test_size <= 0 or test_size >= n:
                raise ValueError(f"If `test_size` is an int, it must be bigger than 0 and smaller than the size of the dataset ({n}). Got {test_size}.")
            if stratify is None:
                return ds.split_at_indices([n - test_size])
            test_size = test_size / n
        # Ray's stratified split: in each group of ``stratify``, its last int(n * test_size)
        # rows are test rows.
        flagged = ds.groupby(stratify).map_groups(_TrainFlag(test_size)).materialize()
        train = flagged.filter(lambda row: row[_TRAIN_TEST_SPLIT_COLUMN]).drop_columns([_TRAIN_TEST_SPLIT_COLUMN])
        test = flagged.filter(lambda row: not row[_TRAIN_TEST_SPLIT_COLUMN]).drop_columns([_TRAIN_TEST_SPLIT_COLUMN])
        return train, test

    def streaming_split(self, n: int, *, equal: bool = False, locality_hints=None) -> List["DataIterator"]:
        """``n`` iterators sharing one execution per epoch (``_streaming_split``)."""
        return _streaming_split.streaming_split(self, n, equal)

    def iterator(self) -> "DataIterator":
        """A ``DataIterator`` over the whole Dataset."""
        return DataIterator(self)

    # consuming -------------------------------------------------------------------------
    def iter_internal_ref_bundles(self) -> Iterator[ex.RefBundle]:
        for b in ex.prefetch(self._node.stream()):
            yield ex.RefBundle((ex.BlockEntry(b.ref, b.meta),), schema=b.meta.schema)

    def _tables(self) -> Iterator[pa.Table]:
        started, seen = time.perf_counter(), 0
        progress = DatasetProgress(self._plan_names())
        try:
            for b in ex.prefetch(self._node.stream()):
                seen += 1  # a count, not the refs: a consumed block may go
                table = raycompat.get(b.ref)
                del b
                progress.block_done()
                yield table
        finally:
            progress.finish()
        self._stats.record(self._node.name, seen, started)

    def _plan_names(self) -> list:
        return ex.operator_chain(self._node)

    def _concat(self) -> pa.Table:
        blocks = self._blocks()
        return _blocks.concat(raycompat.get([b.ref for b in blocks]))

    def iter_batches(self, *, prefetch_batches: int = 1, batch_size: Optional[int] = 256, batch_format: Optional[str] = "default",
                     drop_last: bool = False, local_shuffle_buffer_size=None, local_shuffle_seed=None, _collate_fn=None) -> Iterator:
        """Batches of exactly ``batch_size`` rows across block boundaries (the last may be short)."""
        return batches_of(self._tables(), batch_size, batch_format, drop_last, local_shuffle_buffer_size, local_shuffle_seed, _collate_fn)

    def iter_torch_batches(self, *, prefetch_batches: int = 1, batch_size: Optional[int] = 256, dtypes=None,
                           device="auto", collate_fn=None, drop_last: bool = False, local_shuffle_buffer_size=None,
                           local_shuffle_seed=None, pin_memory: bool = False) -> Iterator:
        """Batches as dicts of ``torch.Tensor`` (Ray's; needs torch installed)."""
        return torch_batches(self.iter_batches, batch_size=batch_size, dtypes=dtypes, device=device,
                             collate_fn=collate_fn, drop_last=drop_last, local_shuffle_buffer_size=local_shuffle_buffer_size,
                             local_shuffle_seed=local_shuffle_seed)

    def iter_rows(self) -> Iterator[Dict[str, Any]]:
        for table in self._tables():
            yield from _blocks.rows_of(table)

    def take(self, limit: int = 20) -> List[Dict[str, Any]]:
        rows = []
        for table in self.limit(limit)._tables():
            rows.extend(_blocks.rows_of(table))
        return rows[:limit]

    def take_all(self, limit: Optional[int] = None) -> List[Dict[str, Any]]:
        rows = []
        for table in (self if limit is None else self.limit(limit + 1))._tables():
            rows.extend(_blocks.rows_of(table))
            if limit is not None and len(rows) > limit:
                raise ValueError(f"The dataset has more than the given limit of {limit} records.")
        return rows

    def take_batch(self, batch_size: int = 20, *, batch_format: Optional[str] = "default"):
        table = _blocks.concat(list(self.limit(batch_size)._tables()))
        if table.num_rows == 0:
            raise ValueError("The dataset is empty.")
        return _blocks.to_batch(table, batch_format)

    def show(self, limit: int = 20) -> None:
        for row in self.take(limit):
            print(row)

    def count(self) -> int:
        """The row count: from metadata alone when the plan keeps it, else from block metadata."""
        known = self._node.known_num_rows()
        if known is not None:
            return known
        return sum(m.num_rows for m in ex.metas(self._blocks()))

    def schema(self, fetch_if_missing: bool = True) -> Optional[Schema]:
        schema = self._node.known_schema()
        if schema is None and fetch_if_missing:
            for b in ex.prefetch(self._node.stream()):
                if b.meta.schema is not None and b.meta.num_rows:
                    schema = b.meta.schema
                    break
                schema = schema or b.meta.schema
        if schema is None or (not schema.names and fetch_if_missing is False):
            return None
        return Schema(schema)

    def columns(self, fetch_if_missing: bool = True) -> Optional[List[str]]:
        schema = self.schema(fetch_if_missing)
        return None if schema is None else schema.names

    def num_blocks(self) -> int:
        raise NotImplementedError(
            "Number of blocks is only available for `MaterializedDataset`,because the number of "
            "blocks may dynamically change during execution.Call `ds.materialize()` to get a "
            "`MaterializedDataset`."
        )

    def size_bytes(self) -> int:
        return sum(m.size_bytes or 0 for m in ex.metas(self._blocks()))

    def input_files(self) -> List[str]:
        source = ex.source_of(self._node)
        return [t.path for t in getattr(source, "read_tasks", []) if hasattr(t, "path")]

    def materialize(self) -> "MaterializedDataset":
        """Run the plan to the end, as Ray does: a UDF's error is raised here."""
        progress = DatasetProgress(self._plan_names())
        try:
            blocks = self._blocks()
            pending = [b.ref for b in blocks]
            while pending:
                ready, pending = raycompat.wait(pending, num_returns=len(pending), timeout=0.5, fetch_local=False)
                progress.block_done(len(ready))
            ex.metas(blocks)  # each block's task also made its metadata: raises its error
        finally:
            progress.finish()
        return MaterializedDataset(ex.RefSource(blocks), self._stats)

    def to_pandas(self, limit: Optional[int] = None):
        """One DataFrame of every row; the plan runs once (the count comes from the same
        blocks' metadata when the plan does not know it)."""
        known = self._node.known_num_rows()
        if limit is not None and known is not None:
            self._check_pandas_limit(known, limit)
        blocks = self._blocks()
        if limit is not None and known is None:
            self._check_pandas_limit(sum(m.num_rows for m in ex.metas(blocks)), limit)
        return _blocks.table_to_pandas(_blocks.concat(raycompat.get([b.ref for b in blocks])))

    @staticmethod
    def _check_pandas_limit(count: int, limit: int) -> None:
        if count > limit:
            raise ValueError(
                f"the dataset has more than the given limit of {limit} rows: {count}. If you "
                f"are sure that a DataFrame with {count} rows will fit in local memory, set "
                "ds.to_pandas(limit=None) to disable limits."
            )

    def to_arrow_refs(self) -> list:
        return [b.ref for b in self._blocks()]

    def to_pandas_refs(self) -> list:
        arrow_backed = _blocks.arrow_backed_default()
        return [_files.convert_remote.remote(b.ref, "pandas", None, arrow_backed) for b in self._blocks()]

    def to_numpy_refs(self, *, column: Optional[str] = None) -> list:
        return [_files.convert_remote.remote(b.ref, "numpy", column) for b in self._blocks()]

    def to_dask(self, meta=None, verify_meta: bool = True):
        """A ``dask.dataframe`` with one partition per block."""
        blocks = self._blocks()
        schema = next((m.schema for m in ex.metas(blocks) if m.num_rows and m.schema is not None), None)
        return data_bridge.to_dask([b.ref for b in blocks], meta, schema, _blocks.arrow_backed_default())

    def get_internal_block_refs(self) -> list:
        return [b.ref for b in self._blocks()]

    # aggregations ----------------------------------------------------------------------
    def aggregate(self, *aggs) -> Dict[str, Any]:
        return _exchange.global_aggregate(self._blocks(), list(aggs))

    def _column_agg(self, cls, on, ignore_nulls=True, **kw):
        cols = [on] if isinstance(on, str) else list(on or self.columns())
        result = self.aggregate(*[cls(c, ignore_nulls=ignore_nulls, **kw) for c in cols])
        if len(cols) == 1:
            return next(iter(result.values()))
        return result

    def sum(self, on=None, ignore_nulls: bool = True):
        return self._column_agg(agg_mod.Sum, on, ignore_nulls)

    def min(self, on=None, ignore_nulls: bool = True):
        return self._column_agg(agg_mod.Min, on, ignore_nulls)

    def max(self, on=None, ignore_nulls: bool = True):
        return self._column_agg(agg_mod.Max, on, ignore_nulls)

    def mean(self, on=None, ignore_nulls: bool = True):
        return self._column_agg(agg_mod.Mean, on, ignore_nulls)

    def std(self, on=None, ddof: int = 1, ignore_nulls: bool = True):
        return self._column_agg(agg_mod.Std, on, ignore_nulls, ddof=ddof)

    # writing ---------------------------------------------------------------------------
    def write_parquet(self, path: str, **kwargs) -> None:
        """One Parquet file per block in the directory ``path``."""
        warn_ignored("write_parquet", kwargs)
        _files.write(self._blocks(), path, "parquet")

    def write_csv(self, path: str, **kwargs) -> None:
        """One CSV file per block in the directory ``path``."""
        warn_ignored("write_csv", kwargs)
        _files.write(self._blocks(), path, "csv")

    def write_json(self, path: str, **kwargs) -> None:
        """One JSON-lines file per block in the directory ``path``."""
        warn_ignored("write_json", kwargs)
        _files.write(self._blocks(), path, "json")

    # introspection ---------------------------------------------------------------------
    def stats(self) -> str:
        return "\n".join(self._stats.lines)

    @property
    def context(self):
        return DataContext.get_current()

    @property
    def name(self) -> Optional[str]:
        return self._name

    def set_name(self, name: Optional[str]) -> None:
        self._name = name

    def __repr__(self) -> str:
        return _repr.dataset_repr(self, isinstance(self, MaterializedDataset))

    __str__ = __repr__

    def __len__(self) -> int:
        raise AttributeError(
            "Use `ds.count()` to compute the length of a distributed Dataset. "
            "This may be an expensive operation."
        )

    def __iter__(self):
        raise TypeError(
            "`Dataset` objects aren't iterable. To iterate records, call "
            "`ds.iter_rows()` or `ds.iter_batches()`. For more information, read "
            "https://docs.ray.io/en/latest/data/iterating-over-data.html."
        )

    def __bool__(self) -> bool:
        return True


#: Ray's name for the column a stratified ``train_test_split`` adds and drops.
_TRAIN_TEST_SPLIT_COLUMN = "__ray_train_test_split_is_train__"


class _TrainFlag:
    """A group's rows flagged train, but for its last ``int(n * test_size)`` (Ray's rule)."""

    def __init__(self, test_size: float):
        self.test_size = test_size

    def __call__(self, group: dict) -> dict:
        n = len(next(iter(group.values()))) if group else 0
        test = int(n * self.test_size)
        group[_TRAIN_TEST_SPLIT_COLUMN] = np.array([True] * (n - test) + [False] * test)
        return group


class MaterializedDataset(Dataset):
    """A Dataset whose blocks are computed and held in the object store."""

    def num_blocks(self) -> int:
        """The blocks the data is held in (Ray has the count only once materialized)."""
        return len(self._blocks())
