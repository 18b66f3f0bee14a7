"""Aggregations (Ray's ``ray.data.aggregate``): ``Count``, ``Sum``, ``Min``, ``Max``, ``Mean``, ``Std``.

Ray names each result after the aggregation: ``count()``, ``sum(x)``, ``mean(x)``...
(``alias_name`` overrides it; a repeated name gets ``_2``, ``_3``...). Globally each
block yields a small partial state in its own task and the driver merges them (Std by
Chan's parallel variance); per group they become one ``pyarrow``
``group_by().aggregate()`` in each reduce task. With ``ignore_nulls=False`` a null in
the column makes the result None, as on Ray 2.60 (checked); ``std`` of no more values
than ``ddof`` is NaN.
"""

from __future__ import annotations

import math
from typing import Callable, Optional

import pyarrow as pa
import pyarrow.compute as pc


class AggregateFn:
    """A custom aggregation (Ray's ``AggregateFn``): ``init(key)`` makes an accumulator,
    ``accumulate_row(acc, row)`` (or ``accumulate_block(acc, table)``) folds rows in,
    ``merge`` joins two, ``finalize`` makes the result named ``name``. Globally each
    block's accumulator comes from a task and the driver merges them (``init(None)``);
    per group, the reduce task holding the group folds all its rows."""

    arrow_vectorized = False

    def __init__(self, init: Callable, merge: Callable, name: str, accumulate_row: Optional[Callable] = None,
                 accumulate_block: Optional[Callable] = None, finalize: Optional[Callable] = None):
        if (accumulate_row is None) == (accumulate_block is None):
            raise ValueError("Exactly one of accumulate_row or accumulate_block must be provided.")
        if not isinstance(name, str):
            raise TypeError("`name` must be provided.")
        self.name, self.init, self.merge_fn = name, init, merge
        self.accumulate_row, self.accumulate_block = accumulate_row, accumulate_block
        self.finalize_fn = finalize or (lambda a: a)

    def _accumulate(self, acc, table: pa.Table):
        if self.accumulate_block is not None:
            return self.accumulate_block(acc, table)
        for row in table.to_pylist():
            acc = self.accumulate_row(acc, row)
        return acc

    # global aggregation: partial per block, merged in the driver
    def block_state(self, table: pa.Table):
        return self._accumulate(self.init(None), table)

    def merge(self, a, b):
        return self.merge_fn(a, b)

    def finalize(self, state):
        return self.finalize_fn(state)

    # one group's rows, all in one reduce task
    def group_value(self, key, table: pa.Table):
        return self.finalize_fn(self._accumulate(self.init(key), table))

    def __repr__(self):
        return f"AggregateFn(name={self.name!r})"


class AggregateFnV2(AggregateFn):
    """Ray's base for aggregations written per block: a subclass calls
    ``super().__init__(name, zero_factory, on=..., ignore_nulls=...)`` and implements
    ``aggregate_block(block) -> accumulator`` and ``combine(current, new)``, optionally
    ``finalize(accumulator)``. A block's accumulator comes from its task (globally) or
    from a group's rows (per group); a None accumulator (a block of nulls) is skipped."""

    arrow_vectorized = False

    def __init__(self, name: str, zero_factory: Callable, *, on: Optional[str], ignore_nulls: bool):
        if not name:
            raise ValueError(f"Non-empty string has to be provided as name (got {name})")
        self.name, self.zero_factory, self.on, self.ignore_nulls = name, zero_factory, on, ignore_nulls

    def get_target_column(self) -> Optional[str]:
        return self.on

    def aggregate_block(self, block: pa.Table):
        raise NotImplementedError(f"{type(self).__name__} must implement aggregate_block")

    def combine(self, current_accumulator, new):
        raise NotImplementedError(f"{type(self).__name__} must implement combine")

    def finalize(self, accumulator):
        return accumulator

    def block_state(self, table: pa.Table):
        return self.aggregate_block(table) if table.num_rows else None

    def merge(self, a, b):
        if a is None or b is None:
            return b if a is None else a
        return self.combine(a, b)

    def group_value(self, key, table: pa.Table):
        state = self.merge(self.zero_factory(), self.block_state(table))
        return self.finalize(state)


class _ColumnAggregate(AggregateFnV2):
    """raycompat's built-in aggregations over a column ``on``: ``name`` is the result's
    column or key (``sum(x)``), ``alias_name`` overrides it; per group they run as one
    pyarrow hash aggregation."""

    kind = ""
    arrow_vectorized = True

    def __init__(self, on: Optional[str] = None, ignore_nulls: bool = True, alias_name: Optional[str] = None):
        self.on, self.ignore_nulls = on, ignore_nulls
        self.name = alias_name or f"{self.kind}({on or ''})"

    # global aggregation: partial per block, merged in the driver
    def block_state(self, table: pa.Table):
        raise NotImplementedError

    def merge(self, a, b):
        raise NotImplementedError

    def finalize(self, state):
        return state

    def group_value(self, key, table: pa.Table):
        return self.finalize(self.block_state(table))

    # per group: pyarrow's hash aggregation
    def arrow_spec(self):
        raise NotImplementedError

    def __repr__(self):
        return f"{type(self).__name__}(on={self.on!r})"


class _HasNull:
    """The partial state of a block with a null when nulls are not ignored: it wins every
    merge and finalizes to None (compared by type: it comes back pickled from a task)."""

    def __repr__(self):
        return "<null>"


HAS_NULL = _HasNull()


def unique_names(aggs) -> list:
    """The aggregations' result names, a repeated one suffixed ``_2``, ``_3``... (Ray's)."""
    seen: dict = {}
    names = []
    for a in aggs:
        seen[a.name] = seen.get(a.name, 0) + 1
        names.append(a.name if seen[a.name] == 1 else f"{a.name}_{seen[a.name]}")
    return names


def _col(table, on):
    if table.num_rows == 0 and on not in table.column_names:
        return pa.array([], type=pa.null())  # an empty block has no columns
    return table.column(on)


class Count(_ColumnAggregate):
    kind = "count"

    def __init__(self, on: Optional[str] = None, ignore_nulls: bool = False, alias_name: Optional[str] = None):
        super().__init__(on, ignore_nulls, alias_name)

    def block_state(self, table):
        if self.on is None:
            return table.num_rows
        return pc.count(_col(table, self.on), mode="only_valid" if self.ignore_nulls else "all").as_py()

    def merge(self, a, b):
        return a + b

    def arrow_spec(self):
        if self.on is None:
            return ([], "count_all", None)
        return (self.on, "count", pc.CountOptions(mode="only_valid" if self.ignore_nulls else "all"))


class _Simple(_ColumnAggregate):
    fn = ""

    def block_state(self, table):
        col = _col(table, self.on)
        if col.null_count and not self.ignore_nulls:
            return HAS_NULL
        if len(col) == col.null_count:
            return None
        return getattr(pc, self.fn)(col).as_py()

    def merge(self, a, b):
        if isinstance(a, _HasNull) or isinstance(b, _HasNull):
            return HAS_NULL
        if a is None or b is None:
            return b if a is None else a
        return self._merge(a, b)

    def finalize(self, state):
        return None if isinstance(state, _HasNull) else state

    def arrow_spec(self):
        return (self.on, self.fn, pc.ScalarAggregateOptions(skip_nulls=self.ignore_nulls, min_count=1))


class Sum(_Simple):
    kind, fn = "sum", "sum"

    def _merge(self, a, b):
        return a + b


class Min(_Simple):
    kind, fn = "min", "min"

    def _merge(self, a, b):
        return min(a, b)


class Max(_Simple):
    kind, fn = "max", "max"

    def _merge(self, a, b):
        return max(a, b)


class Mean(_ColumnAggregate):
    kind = "mean"

    def block_state(self, table):
        col = _col(table, self.on)
        if col.null_count and not self.ignore_nulls:
            return HAS_NULL
        n = len(col) - col.null_count
        return None if n == 0 else (pc.sum(col).as_py(), n)

    def merge(self, a, b):
        if isinstance(a, _HasNull) or isinstance(b, _HasNull):
            return HAS_NULL
        if a is None or b is None:
            return b if a is None else a
        return (a[0] + b[0], a[1] + b[1])

    def finalize(self, state):
        return None if state is None or isinstance(state, _HasNull) else state[0] / state[1]

    def arrow_spec(self):
        return (self.on, "mean", pc.ScalarAggregateOptions(skip_nulls=self.ignore_nulls, min_count=1))


class Std(_ColumnAggregate):
    kind = "std"

    def __init__(self, on: Optional[str] = None, ddof: int = 1, ignore_nulls: bool = True, alias_name: Optional[str] = None):
        super().__init__(on, ignore_nulls, alias_name)
        self.ddof = ddof

    def block_state(self, table):
        col = _col(table, self.on).cast(pa.float64())
        if col.null_count and not self.ignore_nulls:
            return HAS_NULL
        n = len(col) - col.null_count
        if n == 0:
            return None
        mean = pc.mean(col).as_py()
        m2 = pc.sum(pc.power(pc.subtract(col, mean), 2)).as_py()
        return (n, mean, m2)

    def merge(self, a, b):
        if isinstance(a, _HasNull) or isinstance(b, _HasNull):
            return HAS_NULL
        if a is None or b is None:
            return b if a is None else a
        n = a[0] + b[0]
        delta = b[1] - a[1]
        mean = a[1] + delta * b[0] / n
        return (n, mean, a[2] + b[2] + delta * delta * a[0] * b[0] / n)

    def finalize(self, state):
        if state is None or isinstance(state, _HasNull):
            return None
        if state[0] - self.ddof <= 0:
            return math.nan
        return math.sqrt(state[2] / (state[0] - self.ddof))

    def arrow_spec(self):
        # min_count=0: a group of no more values than ddof gives null here, made NaN by
        # GroupAggregate (Ray's result), while a group of nulls only stays null.
        return (self.on, "stddev", pc.VarianceOptions(ddof=self.ddof, skip_nulls=self.ignore_nulls))


class AbsMax(_Simple):
    kind, fn = "abs_max", "max"
    arrow_vectorized = False  # per group: the Python path (max of abs)

    def block_state(self, table):
        col = pc.abs(_col(table, self.on))
        if col.null_count and not self.ignore_nulls:
            return HAS_NULL
        return None if len(col) == col.null_count else pc.max(col).as_py()

    def _merge(self, a, b):
        return max(a, b)



__all__ = ["AbsMax", "AggregateFn", "AggregateFnV2", "Count", "Max", "Mean", "Min", "Std", "Sum"]
