"""``from_dask``/``to_dask``: raycompat.data blocks to and from ``dask.dataframe`` partitions.

A block is a raycompat ObjectRef, which Dask's tools see as a collection of its one
future (``refs.py``): ``to_dask`` wraps each block in a ``dask.delayed`` conversion to
pandas and makes a ``dask.dataframe`` of them with an explicit ``meta`` (the first
block's empty frame), so Dask never calls anything on dummy data. ``from_dask`` computes
the partitions on the cluster and converts each to an Arrow table there.
"""

from __future__ import annotations

import dask
import pyarrow as pa


def _to_pandas(table: pa.Table):
    return table.to_pandas().reset_index(drop=True)


def _to_table(df) -> pa.Table:
    return pa.Table.from_pandas(df.reset_index(drop=True), preserve_index=False)


def to_dask(refs: list, meta=None):
    import dask.dataframe as dd

    parts = [dask.delayed(_to_pandas)(ref) for ref in refs]
    if meta is None:
        meta = dask.compute(parts[0])[0].iloc[:0] if parts else None
    return dd.from_delayed(parts, meta=meta, verify_meta=False)


def partitions_as_tables(df) -> list:
    """The dataframe's partitions as Arrow tables (computed on the cluster)."""
    return list(dask.compute(*[dask.delayed(_to_table)(p) for p in df.to_delayed()]))
