"""All-to-all operations as a map/reduce exchange of Arrow tables over raycompat tasks.

Ray Data runs ``repartition``, ``random_shuffle``, ``sort`` and ``groupby`` as a shuffle:
each input block is split by a map task into one piece per output (``num_returns=n``, so
every piece is its own ObjectRef and Dask moves only the pieces a reducer needs), and
one reduce task per output concatenates its pieces and finishes the job (sorts, shuffles,
aggregates a group). No user function ever sees dummy data (no Dask ``meta`` guessing),
and pieces are plain tables, so no index survives into a batch.
"""

from __future__ import annotations

import os

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

import raycompat
from raycompat.data import _blocks, _ops
from raycompat.data import aggregate as agg_mod
from raycompat.data import _execution as ex


def _as_list(refs, n):
    return [refs] if n == 1 else list(refs)


# Map side ------------------------------------------------------------------------------
def _partition(table, dest, n):
    """The table's rows split by their destination ``dest`` (one stable sort, then slices)."""
    if n == 1:
        return table
    dest = np.asarray(dest, dtype=np.int64)
    order = np.argsort(dest, kind="stable")
    ordered = table.take(pa.array(order))
    edges = np.concatenate([[0], np.cumsum(np.bincount(dest, minlength=n))])
    return tuple(ordered.slice(int(a), int(b - a)) for a, b in zip(edges[:-1], edges[1:]))


def _split_random(table, n, seed):
    return _partition(table, np.random.default_rng(seed).integers(0, n, table.num_rows), n)


def _hash_of(table, keys) -> np.ndarray:
    """Row hashes of the key columns, the same for a key whatever else its block holds: a
    column's nulls are filled (and flagged in a column of their own) before hashing, so an
    int column with a null is not hashed as floats (1 and 1.0 hash apart, which would split
    a key between reducers). Unhashable keys (lists, structs) hash by their Python repr."""
    import pandas as pd

    frame = {}
    try:
        for i, k in enumerate(keys):
            column = table.column(k)
            nulls = np.zeros(table.num_rows, dtype=bool)  # in every block, so hashes agree
            if column.null_count:
                nulls = np.asarray(pc.is_null(column).to_numpy(zero_copy_only=False), dtype=bool)
                column = pc.fill_null(column, _FILL.get(_kind(column.type), None))
            frame[f"{i}:null"] = nulls
            frame[str(i)] = _blocks.column_to_numpy(column)
        return pd.util.hash_pandas_object(pd.DataFrame(frame), index=False).to_numpy()
    except (TypeError, ValueError, pa.ArrowNotImplementedError, pa.ArrowInvalid):
        rows = [repr(tuple(r.values())) for r in table.select(keys).to_pylist()]
        return pd.util.hash_pandas_object(pd.Series(rows), index=False).to_numpy()


_FILL = {"int": 0, "float": 0.0, "string": "", "bool": False}


def _kind(t: pa.DataType):
    if pa.types.is_integer(t):
        return "int"
    if pa.types.is_floating(t):
        return "float"
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return "string"
    if pa.types.is_boolean(t):
        return "bool"
    return None


def _split_hash(table, keys, n):
    dest = _hash_of(table, keys) % np.uint64(n) if table.num_rows else np.zeros(0, dtype=np.uint64)
    return _partition(table, dest, n)


def _split_range(table, key, boundaries, descending):
    """Rows to the output whose key range holds them; nulls and NaNs go to the last output,
    as Ray sorts them last in both directions (NaN before null, checked on Ray 2.60)."""
    n = len(boundaries) + 1
    if table.num_rows == 0:
        return _partition(table, np.zeros(0, dtype=np.int64), n)
    column = table.column(key)
    present = ~np.asarray(pc.is_null(column, nan_is_null=True).to_numpy(zero_copy_only=False), dtype=bool)
    dest = np.full(table.num_rows, n - 1, dtype=np.int64)
    if present.any():
        values = _blocks.column_to_numpy(column)[present]
        if values.dtype == object:
            edges = np.empty(len(boundaries), dtype=object)
            edges[:] = boundaries
        else:
            edges = np.asarray(boundaries, dtype=values.dtype)
        found = np.searchsorted(edges, values, side="right")
        dest[present] = n - 1 - found if descending else found
    return _partition(table, dest, n)


def _sample(table, key, k):
    if table.num_rows == 0:
        return []
    idx = np.random.default_rng(0).choice(table.num_rows, min(k, table.num_rows), replace=False)
    return _blocks.column_to_numpy(table.column(key).take(pa.array(idx))).tolist()


_split_random_r = raycompat.remote(_split_random)
_split_hash_r = raycompat.remote(_split_hash)
_split_range_r = raycompat.remote(_split_range)
_sample_r = raycompat.remote(_sample)


# Reduce side ---------------------------------------------------------------------------
def _reduce(finish, *parts):
    return ex.timed(lambda: finish(_blocks.concat(list(parts))))


_reduce_r = raycompat.remote(num_returns=2)(_reduce)




def _reduce_all(name, finish, pieces_by_output) -> list:
    """One reduce task per output; ``finish`` is one step for all, or a list of one each."""
    out = []
    for j, pieces in enumerate(pieces_by_output):
        step = finish[j] if isinstance(finish, list) else finish
        table_ref, meta_ref = _reduce_r.options(name=name).remote(step, *pieces)
        out.append(ex.BlockRef(table_ref, meta_ref))
    return out


def check_columns(blocks, keys) -> None:
    """Ray's error for a sort or groupby key the data does not have (raised in the driver)."""
    schema = next((m.schema for m in ex.metas(blocks) if m.num_rows), None)
    if schema is None:
        return
    for k in keys:
        if k not in schema.names:
            raise ValueError(
                f"You specified the column '{k}', but there's no such column in the dataset. "
                f"The dataset has columns: {list(schema.names)}"
            )


def _exchange(blocks, n, split_remote, split_args, name, finish) -> list:
    pieces = [
        _as_list(split_remote.options(num_returns=n, name=f"{name}Map").remote(b.ref, *split_args(i)), n)
        for i, b in enumerate(blocks)
    ]
    return _reduce_all(f"{name}Reduce", finish, [[p[j] for p in pieces] for j in range(n)])


# Operations ------------------------------------------------------------------------------
def repartition(blocks, n) -> list:
    """``n`` blocks of (almost) equal row counts, rows in order."""
    total = sum(m.num_rows for m in ex.metas(blocks))
    return _cut(blocks, np.linspace(0, total, n + 1).astype(int))


def repartition_to(blocks, counts) -> list:
    """Blocks of exactly ``counts`` rows each, rows in order (``zip`` aligns with it)."""
    return _cut(blocks, np.concatenate([[0], np.cumsum(counts)]).astype(int))


def _cut(blocks, edges) -> list:
    counts = [m.num_rows for m in ex.metas(blocks)]
    starts = np.concatenate([[0], np.cumsum(counts)])
    out = []
    for lo, hi in zip(edges[:-1], edges[1:]):
        refs, spec = [], []
        for b, s, c in zip(blocks, starts[:-1], counts):
            a, z = max(lo, s), min(hi, s + c)
            if z > a:
                refs.append(b.ref)
                spec.append((int(a - s), int(z - s)))
        if not refs and blocks:
            refs, spec = [blocks[0].ref], [(0, 0)]
        table_ref, meta_ref = ex.slice_concat_remote.options(name="Repartition").remote(spec, *refs)
        out.append(ex.BlockRef(table_ref, meta_ref))
    return out


class _Shuffled:
    def __init__(self, seed):
        self.seed = seed

    def __call__(self, table):
        rng = np.random.default_rng(self.seed)
        return table.take(pa.array(rng.permutation(table.num_rows))) if table.num_rows else table


def random_shuffle(blocks, seed=None, n=None) -> list:
    if not blocks:
        return []
    n = n or len(blocks)
    base = np.random.SeedSequence(seed).generate_state(len(blocks) + n)
    shuffles = [_Shuffled(int(s)) for s in base[len(blocks):]]
    return _exchange(blocks, n, _split_random_r, lambda i: (n, int(base[i])), "RandomShuffle", shuffles)


def unchanged(table):
    return table


class Sorted:
    def __init__(self, keys, descending):
        self.keys, self.descending = keys, descending

    def __call__(self, table):
        if table.num_rows == 0:
            return table
        return table.take(_ops.sort_indices(table, self.keys, self.descending))


def sort(blocks, keys, descending) -> list:
    if not blocks:
        return []
    check_columns(blocks, keys)
    n = len(blocks)
    key = keys[0]
    desc0 = descending if isinstance(descending, bool) else descending[0]
    samples = sorted(v for s in raycompat.get([_sample_r.remote(b.ref, key, 20) for b in blocks]) for v in s
                     if v is not None and v == v)  # nulls and NaNs sort last: no boundary
    if samples and n > 1:
        idx = np.linspace(0, len(samples), n + 1).astype(int)[1:-1]
        boundaries = [samples[min(i, len(samples) - 1)] for i in idx]
    else:
        boundaries, n = [], 1
    return _exchange(blocks, n, _split_range_r, lambda i: (key, boundaries, desc0), "Sort", Sorted(keys, descending))


def finish_all(blocks, finish, name) -> list:
    """Every block into one reduce task running ``finish`` (a group of everything)."""
    if not blocks:
        return []
    return _reduce_all(f"{name}Reduce", finish, [[b.ref for b in blocks]])


def hash_exchange(blocks, keys, finish, name, n=None) -> list:
    """Rows with equal ``keys`` meet in one reduce task, which runs ``finish`` on them."""
    if not blocks:
        return []
    check_columns(blocks, keys)
    n = n or len(blocks)
    return _exchange(blocks, n, _split_hash_r, lambda i: (keys, n), name, finish)


# Blocks unpickled from out-of-band buffers need not be 64-byte aligned; Acero (pyarrow's
# group_by) copes but prints a warning per call unless told to ignore it.
os.environ.setdefault("ACERO_ALIGNMENT_HANDLING", "ignore")


_KEYS_FIRST: list = []


def _keys_come_first() -> bool:
    """Whether this pyarrow's group_by puts the key columns before the aggregates (newer
    releases) or after them; asked once of a tiny table, since names may repeat."""
    if not _KEYS_FIRST:
        probe = pa.table({"k": [1], "v": [1]}).group_by(["k"], use_threads=False).aggregate([("v", "sum")])
        _KEYS_FIRST.append(probe.column_names[0] == "k")
    return _KEYS_FIRST[0]


class GroupAggregate:
    """The reduce step of ``groupby(keys).aggregate(*aggs)``: pyarrow's hash aggregation,
    or, when an aggregation has no Arrow kernel (a custom ``AggregateFn``, ``AbsMax``), each
    group's rows through every aggregation in Python."""

    def __init__(self, keys, aggs):
        self.keys, self.aggs = keys, aggs

    def __call__(self, table):
        if table.num_columns == 0:
            return table
        if not all(a.arrow_vectorized for a in self.aggs):
            return self._per_group(table)
        specs = [a.arrow_spec() for a in self.aggs]
        # A std of no more values than ddof is NaN on Ray, null in pyarrow: count each std
        # column's values (and nulls, when they are not ignored) to tell the two apart.
        stds = {i: a for i, a in enumerate(self.aggs) if isinstance(a, agg_mod.Std)}
        extra = []
        for a in stds.values():
            extra.append((a.on, "count", pc.CountOptions(mode="only_valid")))
            extra.append((a.on, "count", pc.CountOptions(mode="only_null")))
        result = table.group_by(self.keys, use_threads=False).aggregate(
            [(c, f) if o is None else (c, f, o) for c, f, o in specs + extra]
        )
        # Aggregates by position (two may share pyarrow's name): after the keys in newer
        # pyarrow, before them in older.
        n_aggs, n_keys = len(specs) + len(extra), len(self.keys)
        first, key_at = (n_keys, 0) if _keys_come_first() else (0, n_aggs)
        columns = [result.column(first + j) for j in range(n_aggs)]
        cols = {k: result.column(key_at + j) for j, k in enumerate(self.keys)}
        counts = iter(columns[len(specs):])
        for i, name in enumerate(agg_mod.unique_names(self.aggs)):
            column = columns[i]
            if i in stds:
                n_valid, n_null = next(counts), next(counts)
                nan = pc.and_(pc.is_null(column), pc.greater(n_valid, 0))
                if not stds[i].ignore_nulls:
                    nan = pc.and_(nan, pc.equal(n_null, 0))
                column = pc.if_else(nan, pa.scalar(float("nan")), column)
            cols[name] = column
        out = pa.table(cols)
        return out.take(_ops.sort_indices(out, self.keys, False))

    def _per_group(self, table):
        """Custom aggregations: each group's rows through every aggregation in Python."""
        if table.num_rows == 0:
            return pa.table({})
        table = table.take(_ops.sort_indices(table, self.keys, False))
        starts = group_starts(table, self.keys) + [table.num_rows]
        names = agg_mod.unique_names(self.aggs)
        rows = []
        for a, b in zip(starts[:-1], starts[1:]):
            group = table.slice(a, b - a)
            key_values = [group.column(k)[0].as_py() for k in self.keys]
            key = key_values[0] if len(key_values) == 1 else tuple(key_values)
            row = dict(zip(self.keys, key_values))
            for agg, name in zip(self.aggs, names):
                row[name] = agg.group_value(key, group)
            rows.append(row)
        return _blocks.table_from_rows(rows)


def group_starts(table, keys, nulls_apart: bool = False) -> list:
    """The first row of each group of a table sorted by ``keys``. Nulls (and NaNs) form one
    group, as in Arrow's group_by, unless ``nulls_apart``: then each such row is a group
    of its own, as Ray 2.60's ``map_groups`` splits them (checked)."""
    if not keys or not table.num_rows:
        return [0] if table.num_rows else []
    change = np.zeros(table.num_rows, dtype=bool)
    change[0] = True
    for k in keys:
        column = table.column(k)
        a, b = column.slice(1), column.slice(0, table.num_rows - 1)
        same = pc.fill_null(pc.equal(a, b), False)
        if not nulls_apart:
            same = pc.or_(same, pc.and_(pc.is_null(a), pc.is_null(b)))
            if pa.types.is_floating(column.type):
                same = pc.or_(same, pc.fill_null(pc.and_(pc.is_nan(a), pc.is_nan(b)), False))
        change[1:] |= ~np.asarray(same.to_numpy(zero_copy_only=False), dtype=bool)
    return list(np.flatnonzero(change))


class MapGroups:
    """The reduce step of ``groupby(keys).map_groups(fn)``: ``fn`` on each group's batch."""

    def __init__(self, keys, fn, batch_format, fn_args, fn_kwargs):
        self.keys, self.fn, self.batch_format = keys, fn, batch_format
        self.fn_args, self.fn_kwargs = fn_args, fn_kwargs
        self.arrow_backed = _blocks.arrow_backed_default()

    def __call__(self, table):
        if table.num_rows == 0:
            return table
        if self.keys:
            table = table.take(_ops.sort_indices(table, self.keys, False))
        starts = group_starts(table, self.keys, nulls_apart=True) + [table.num_rows]
        outs = []
        for a, b in zip(starts[:-1], starts[1:]):
            batch = _blocks.to_batch(table.slice(a, b - a), self.batch_format, self.arrow_backed)
            outs.append(_blocks.batch_to_table(_ops.call_udf(self.fn, batch, *self.fn_args, **self.fn_kwargs)))
        return _blocks.concat(outs)


def _block_states(aggs, table):
    return [a.block_state(table) for a in aggs]


_block_states_r = raycompat.remote(_block_states)


def global_aggregate(blocks, aggs) -> dict:
    states = raycompat.get([_block_states_r.remote(aggs, b.ref) for b in blocks])
    names = agg_mod.unique_names(aggs)
    result = {}
    for i, agg in enumerate(aggs):
        state = None
        first = True
        for s in states:
            state = s[i] if first else agg.merge(state, s[i])
            first = False
        result[names[i]] = agg.finalize(state) if not first else None
    return result



def _zip_tables(*tables):
    out = tables[0]
    for t in tables[1:]:
        for name in t.column_names:
            new, k = name, 1
            while new in out.column_names:
                new, k = f"{name}_{k}", k + 1
            out = out.append_column(new, t.column(name))
    return ex.timed(lambda: out)


_zip_r = raycompat.remote(num_returns=2)(_zip_tables)


def zip_blocks(parts: list) -> list:
    """``zip``: the other datasets' rows cut to the first's block sizes, then one task per
    block puts the columns side by side (a repeated name gets ``_1``, ``_2``..., as in Ray)."""
    counts = [m.num_rows for m in ex.metas(parts[0])]
    for other in parts[1:]:
        total = sum(m.num_rows for m in ex.metas(other))
        if total != sum(counts):
            raise ValueError(f"Cannot zip datasets of different number of rows: {sum(counts)}, {total}")
    aligned = [parts[0]] + [repartition_to(p, counts) for p in parts[1:]]
    out = []
    for i in range(len(counts)):
        t, m = _zip_r.options(name="Zip").remote(*[p[i].ref for p in aligned])
        out.append(ex.BlockRef(t, m))
    return out
