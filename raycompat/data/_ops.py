"""Row and batch operations, each a picklable ``table -> table`` step of a fused block task.

Ray Data fuses consecutive ``map``/``map_batches``/``filter``/``flat_map``/column
operations into one task per block; a chain of these steps is what one raycompat block
task runs (``_execution.run_chain``). ``name`` is the operator's name in Ray's plan repr
(``Map(<lambda>)``, ``MapBatches(fn)``...); ``keeps_rows`` says whether the row count
survives the step, so ``count()`` can come from metadata.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from raycompat.data import _blocks, expressions
from raycompat.exceptions import UserCodeException


def call_udf(fn, *args, **kwargs):
    """``fn(*args)``; its exception surfaces as Ray Data's, a ``UserCodeException`` caused by it."""
    try:
        return fn(*args, **kwargs)
    except Exception as e:
        raise UserCodeException("UDF failed to process a data block.") from e


def _udf_items(iterable):
    """Items of a user generator, its errors wrapped as ``call_udf`` wraps them."""
    it = iter(iterable)
    while True:
        try:
            item = next(it)
        except StopIteration:
            return
        except Exception as e:
            raise UserCodeException("UDF failed to process a data block.") from e
        yield item


def _fn_name(fn) -> str:
    if isinstance(fn, type):
        return fn.__name__
    return getattr(fn, "__name__", type(fn).__name__)


class Op:
    name = "Op"
    keeps_rows = False

    def __call__(self, table: pa.Table) -> pa.Table:
        raise NotImplementedError


class MapRows(Op):
    keeps_rows = True

    def __init__(self, fn, fn_args=(), fn_kwargs=None):
        self.fn, self.fn_args, self.fn_kwargs = fn, tuple(fn_args or ()), dict(fn_kwargs or {})
        self.name = f"Map({_fn_name(fn)})"

    def __call__(self, table):
        out = [_blocks.check_row(call_udf(self.fn, r, *self.fn_args, **self.fn_kwargs)) for r in _blocks.rows_of(table)]
        return _blocks.table_from_rows(out)


class FlatMap(Op):
    def __init__(self, fn, fn_args=(), fn_kwargs=None):
        self.fn, self.fn_args, self.fn_kwargs = fn, tuple(fn_args or ()), dict(fn_kwargs or {})
        self.name = f"FlatMap({_fn_name(fn)})"

    def __call__(self, table):
        out = []
        for r in _blocks.rows_of(table):
            for item in _udf_items(call_udf(self.fn, r, *self.fn_args, **self.fn_kwargs)):
                out.append(_blocks.check_row(item, "flat_map"))
        return _blocks.table_from_rows(out)


class Filter(Op):
    def __init__(self, fn, fn_args=(), fn_kwargs=None):
        self.fn, self.fn_args, self.fn_kwargs = fn, tuple(fn_args or ()), dict(fn_kwargs or {})
        self.name = f"Filter({_fn_name(fn)})"

    def __call__(self, table):
        keep = [bool(call_udf(self.fn, r, *self.fn_args, **self.fn_kwargs)) for r in _blocks.rows_of(table)]
        return table.filter(pa.array(keep, type=pa.bool_())) if keep else table


class MapBatches(Op):
    """``fn`` on batches of ``batch_size`` rows of the block (None: the whole block)."""

    def __init__(self, fn, batch_size=None, batch_format="default", fn_args=(), fn_kwargs=None, name=None):
        _blocks.check_batch_format(batch_format)
        self.fn, self.batch_size, self.batch_format = fn, batch_size, batch_format
        self.fn_args, self.fn_kwargs = tuple(fn_args or ()), dict(fn_kwargs or {})
        self.name = name or f"MapBatches({_fn_name(fn)})"
        self.arrow_backed = _blocks.arrow_backed_default()

    def __call__(self, table):
        n = table.num_rows
        size = n if self.batch_size in (None, "auto") else max(1, int(self.batch_size))
        outs = []
        for start in range(0, n, size or 1) if n else ():
            batch = _blocks.to_batch(table.slice(start, size), self.batch_format, self.arrow_backed)
            result = call_udf(self.fn, batch, *self.fn_args, **self.fn_kwargs)
            if hasattr(result, "__next__") and not isinstance(result, dict):
                outs.extend(_blocks.batch_to_table(r) for r in _udf_items(result))
            else:
                outs.append(_blocks.batch_to_table(result))
        return _blocks.concat(outs) if outs else table.slice(0, 0)


class AddColumn(MapBatches):
    keeps_rows = True

    def __init__(self, col, fn, batch_format="pandas"):
        self.col, self.col_fn = col, fn
        super().__init__(self._add, None, batch_format, name="MapBatches(add_column)")

    def _add(self, batch):
        values = self.col_fn(batch)
        if isinstance(batch, pa.Table):
            values = values if isinstance(values, (pa.Array, pa.ChunkedArray)) else pa.array(values)
            index = batch.schema.get_field_index(self.col)  # an existing column is replaced, as in Ray
            return batch.append_column(self.col, values) if index == -1 else batch.set_column(index, self.col, values)
        batch[self.col] = values
        return batch


class WithColumn(Op):
    """A column computed from an expression (``with_column``)."""

    keeps_rows = True

    def __init__(self, name, expr, task_idx=0):
        self.col, self.expr, self.task_idx = name, expr, task_idx
        self.name = f"WithColumn({name})"

    def for_task(self, task_idx: int) -> "WithColumn":
        return WithColumn(self.col, self.expr, task_idx)

    def __call__(self, table):
        token = expressions.TASK_INDEX.set(self.task_idx)
        try:
            values = expressions.evaluate(self.expr, table)
        finally:
            expressions.TASK_INDEX.reset(token)
        if self.col in table.column_names:
            return table.set_column(table.column_names.index(self.col), self.col, values)
        return table.append_column(self.col, values)


class FilterExpr(Op):
    """The rows where an expression holds (``filter(expr=...)``)."""

    name = "Filter"

    def __init__(self, expr):
        self.expr = expr

    def __call__(self, table):
        mask = expressions.evaluate(self.expr, table)
        return table.filter(pc.fill_null(mask, False))


class SelectColumns(Op):
    keeps_rows = True
    name = "Project"

    def __init__(self, cols):
        self.cols = list(cols)

    def __call__(self, table):
        return call_udf(table.select, self.cols)


class DropColumns(Op):
    keeps_rows = True
    name = "Project"

    def __init__(self, cols):
        self.cols = list(cols)

    def __call__(self, table):
        return table.drop_columns(self.cols)


class RenameColumns(Op):
    keeps_rows = True
    name = "Project"

    def __init__(self, mapping):
        self.mapping = dict(mapping)

    def __call__(self, table):
        return table.rename_columns([self.mapping.get(c, c) for c in table.column_names])


class Slice(Op):
    """Rows ``[start, stop)`` of the block (limit's last block, splits)."""

    name = "Limit"

    def __init__(self, start, stop):
        self.start, self.stop = start, stop

    def __call__(self, table):
        return table.slice(self.start, max(0, self.stop - self.start))


class RandomSample(Op):
    """Each row kept with probability ``fraction``; with a seed, task ``i`` draws from
    ``default_rng([seed, i])`` as Ray's does, so blocks get different masks."""

    def __init__(self, fraction, seed=None, task_idx=0):
        self.fraction, self.seed, self.task_idx = fraction, seed, task_idx
        self.name = "RandomSample"

    def for_task(self, task_idx: int) -> "RandomSample":
        return RandomSample(self.fraction, self.seed, task_idx)

    def __call__(self, table):
        rng = np.random.default_rng(None if self.seed is None else [self.seed, self.task_idx])
        return table.filter(pa.array(rng.random(table.num_rows) < self.fraction))


def for_task(ops, task_idx: int) -> tuple:
    """The ops as task ``task_idx`` of their stage runs them (Ray's ``TaskContext.task_idx``):
    ops that draw random numbers seed with it."""
    if not any(hasattr(op, "for_task") for op in ops):
        return ops
    return tuple(op.for_task(task_idx) if hasattr(op, "for_task") else op for op in ops)


def apply(ops, table: pa.Table) -> pa.Table:
    """Run the fused ops on a block. A block with no rows left goes on as an empty table
    without columns (as Ray skips empty blocks): the ops after it never run on it, and its
    stale schema never reaches ``concat``."""
    for op in ops:
        if table.num_rows == 0:
            return pa.table({})
        table = op(table)
    return table if table.num_rows else pa.table({})


def sort_indices(table: pa.Table, keys, descending) -> pa.Array:
    if isinstance(descending, bool):
        descending = [descending] * len(keys)
    order = [(k, "descending" if d else "ascending") for k, d in zip(keys, descending)]
    return pc.sort_indices(table, sort_keys=order)
