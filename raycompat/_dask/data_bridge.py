"""``from_dask``/``to_dask``: raycompat.data blocks to and from ``dask.dataframe`` partitions.

A block is a raycompat ObjectRef over a Dask future holding the sealed task result:
``to_dask`` submits one plain Dask task per block that unseals it into a pandas frame
and makes a ``dask.dataframe`` of those futures with an explicit ``meta`` (the first
partition's empty frame), so Dask never calls anything on dummy data. ``from_dask`` computes
the partitions on the cluster and converts each to an Arrow table in the driver.
"""

from __future__ import annotations

import uuid

import dask
import distributed
import pyarrow as pa

from raycompat._dask import batching, refs, results


def _to_pandas(table: pa.Table):
    return table.to_pandas().reset_index(drop=True)


def _to_table(df) -> pa.Table:
    return pa.Table.from_pandas(df.reset_index(drop=True), preserve_index=False)


def _block_to_pandas(stored, index):
    return _to_pandas(results.value_of(stored, refs._Slot(index)))


def to_dask(block_refs: list, meta=None):
    import dask.dataframe as dd

    if not block_refs:
        raise ValueError("to_dask() of a Dataset without blocks")
    client = block_refs[0]._dask_future().client
    batching.flush(client)  # the blocks' tasks must be on the scheduler before ours
    parts = [
        client.submit(_block_to_pandas, ref._dask_future(), ref._index, pure=False, key=f"to_dask-{uuid.uuid4().hex}")
        for ref in block_refs
    ]
    # The blocks' refs go when the caller's Dataset does: convert while they are held.
    distributed.wait(parts)
    if meta is None:
        meta = parts[0].result().iloc[:0]
    return dd.from_delayed(parts, meta=meta, verify_meta=False)


def partitions_as_tables(df) -> list:
    """The dataframe's partitions as Arrow tables (computed on the cluster, converted here:
    wrapping the partitions in a delayed conversion loses keys of dask-expr's graph)."""
    return [_to_table(p) for p in dask.compute(*df.to_delayed())]
