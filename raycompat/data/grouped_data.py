"""``groupby`` (Ray's ``ray.data.grouped_data.GroupedData``): aggregations and ``map_groups``.

Rows are hash-partitioned by key in a map/reduce exchange (``_exchange.hash_exchange``);
each reduce task aggregates its groups with pyarrow (``count()``, ``sum(x)``... columns,
named as Ray names them) or runs ``map_groups``' function once per group.
"""

from __future__ import annotations

from raycompat.data import _exchange
from raycompat.data import _execution as ex
from raycompat.data import aggregate as agg_mod
from raycompat.data import read_api
from raycompat.data.dataset import Dataset


class GroupedData:
    """A Dataset grouped by ``key`` (a column name or a list of them)."""

    def __init__(self, dataset: Dataset, key, num_partitions=None):
        self._dataset = dataset
        self._keys = [key] if isinstance(key, str) else list(key or [])
        self._num_partitions = num_partitions

    def __repr__(self):
        return f"GroupedData(dataset={self._dataset!r}, key={self._key!r})"

    @property
    def _key(self):
        return self._keys[0] if len(self._keys) == 1 else self._keys

    def aggregate(self, *aggs) -> Dataset:
        if not self._keys:
            result = self._dataset.aggregate(*aggs)
            return read_api.from_items([result])
        finish = _exchange.GroupAggregate(self._keys, list(aggs))
        n = self._num_partitions
        node = ex.AllToAll(self._dataset._node, "Aggregate", lambda bs: _exchange.hash_exchange(bs, self._keys, finish, "Aggregate", n),
                           keeps_schema=False, keeps_rows=False)
        return self._dataset._with(node)

    def _exchange(self, finish, name):
        """The plan step that brings each group's rows into one block and runs ``finish``
        there: a hash exchange on the keys, or with no key one block of everything (Ray's
        ``groupby(None)``: the whole dataset is one group)."""
        n = self._num_partitions
        if not self._keys:
            return lambda bs: _exchange.finish_all(bs, finish, name)
        return lambda bs: _exchange.hash_exchange(bs, self._keys, finish, name, n)

    def _each(self, cls, on, ignore_nulls=True, **kw) -> Dataset:
        if on is None:  # Ray: every column but the keys
            on = [c for c in self._dataset.columns() if c not in self._keys]
        cols = [on] if isinstance(on, str) else list(on)
        return self.aggregate(*[cls(c, ignore_nulls=ignore_nulls, **kw) for c in cols])

    def count(self) -> Dataset:
        return self.aggregate(agg_mod.Count())

    def sum(self, on=None, ignore_nulls: bool = True) -> Dataset:
        return self._each(agg_mod.Sum, on, ignore_nulls)

    def min(self, on=None, ignore_nulls: bool = True) -> Dataset:
        return self._each(agg_mod.Min, on, ignore_nulls)

    def max(self, on=None, ignore_nulls: bool = True) -> Dataset:
        return self._each(agg_mod.Max, on, ignore_nulls)

    def mean(self, on=None, ignore_nulls: bool = True) -> Dataset:
        return self._each(agg_mod.Mean, on, ignore_nulls)

    def std(self, on=None, ddof: int = 1, ignore_nulls: bool = True) -> Dataset:
        return self._each(agg_mod.Std, on, ignore_nulls, ddof=ddof)

    def map_groups(self, fn, *, compute=None, batch_format="default", fn_args=None, fn_kwargs=None,
                   fn_constructor_args=None, fn_constructor_kwargs=None, num_cpus=None, num_gpus=None,
                   memory=None, concurrency=None, **ray_remote_args) -> Dataset:
        """``fn(batch)`` once per group, each batch all the rows of one key.

        Ray shuffles the rows so each group is whole in one block, then runs
        ``map_batches`` over the blocks with a wrapper calling ``fn`` per group, so a
        callable class runs on an actor pool and ``compute``/``concurrency``/resources
        apply. raycompat does the same; a plain function with none of those runs in the
        exchange's reduce tasks instead (one task per block fewer).
        """
        fn_args, fn_kwargs = tuple(fn_args or ()), dict(fn_kwargs or {})
        is_class = isinstance(fn, type)
        options = dict(num_cpus=num_cpus, num_gpus=num_gpus, memory=memory, **ray_remote_args)
        if not is_class and compute is None and concurrency is None and not any(v is not None for v in options.values()):
            finish = _exchange.MapGroups(self._keys, fn, batch_format, fn_args, fn_kwargs)
            node = ex.AllToAll(self._dataset._node, "MapGroups", self._exchange(finish, "MapGroups"),
                               keeps_schema=False, keeps_rows=False)
            return self._dataset._with(node)
        grouped = self._dataset._with(ex.AllToAll(
            self._dataset._node, "MapGroups", self._exchange(_exchange.unchanged, "MapGroups")))
        if is_class:
            return grouped.map_batches(
                _ClassPerGroup, batch_size=None, batch_format="pyarrow", compute=compute, concurrency=concurrency,
                fn_constructor_args=(self._keys, fn, batch_format, fn_args, fn_kwargs,
                                     tuple(fn_constructor_args or ()), dict(fn_constructor_kwargs or {})),
                **options)
        return grouped.map_batches(_exchange.MapGroups(self._keys, fn, batch_format, fn_args, fn_kwargs),
                                   batch_size=None, batch_format="pyarrow", compute=compute,
                                   concurrency=concurrency, **options)


class _ClassPerGroup:
    """``map_groups`` of a callable class: one instance per actor, called per group."""

    def __init__(self, keys, cls, batch_format, fn_args, fn_kwargs, ctor_args, ctor_kwargs):
        self.per_group = _exchange.MapGroups(keys, cls(*ctor_args, **ctor_kwargs), batch_format, fn_args, fn_kwargs)

    def __call__(self, table):
        return self.per_group(table)
