"""``from_dask``/``to_dask``: raycompat.data blocks to and from ``dask.dataframe`` partitions.

A block is a raycompat ObjectRef over a Dask future holding the sealed task result:
``to_dask`` submits one plain Dask task per block that unseals it into a pandas frame
and makes a ``dask.dataframe`` of those futures with an explicit ``meta`` (the first
blocks' schema, known from their metadata), so Dask never calls anything on dummy data and
no block is fetched. ``from_dask`` computes the partitions on the cluster and converts each
to an Arrow table in a Dask task next to it: the tables become ObjectRefs over those
futures, so no partition passes through the driver.
"""

from __future__ import annotations

import uuid

import distributed
import pyarrow as pa

from raycompat._dask import batching, driver, refs, results
from raycompat._dask.serialization import Sealed


def _to_pandas(table: pa.Table, arrow_backed: bool):
    # late: raycompat.data imports this module (through its dataset module).
    from raycompat.data._blocks import table_to_pandas

    return table_to_pandas(table, arrow_backed)


def _to_table(df) -> pa.Table:
    return pa.Table.from_pandas(df.reset_index(drop=True), preserve_index=False)


def _sealed(fn, value):
    """``fn(value)`` sealed as a raycompat task's result is, so tasks and ``get`` take it."""
    return Sealed.seal(fn(value))


def _block_to_pandas(stored, index, arrow_backed):
    return _to_pandas(results.value_of(stored, refs._Slot(index)), arrow_backed)


def to_dask(block_refs: list, meta=None, schema=None, arrow_backed=True):
    import dask.dataframe as dd

    if not block_refs:
        raise ValueError("to_dask() of a Dataset without blocks")
    client = block_refs[0]._dask_future().client
    batching.flush(client)  # the blocks' tasks must be on the scheduler before ours
    parts = [
        client.submit(_block_to_pandas, ref._dask_future(), ref._index, arrow_backed, pure=False, key=f"to_dask-{uuid.uuid4().hex}")
        for ref in block_refs
    ]
    # The blocks' refs go when the caller's Dataset does: convert while they are held.
    distributed.wait(parts)
    if meta is None:
        meta = _to_pandas(schema.empty_table(), arrow_backed) if schema is not None else parts[0].result().iloc[:0]
    return dd.from_delayed(parts, meta=meta, verify_meta=False)


class _unsealed:
    """``fn`` of a sealed value."""

    def __init__(self, fn):
        self.fn = fn

    def __call__(self, sealed):
        return self.fn(sealed.unseal())


def partitions_as_refs(df, metadata_of) -> list:
    """The dataframe's partitions as (table ref, metadata ref) pairs: each partition is
    computed on the cluster and converted to an Arrow table there (``metadata_of(table)``
    alongside, a small value), held by ObjectRefs over the Dask futures."""
    client = driver.client()  # raycompat's own (started if need be), not Dask's default
    partitions = client.compute(df.to_delayed())
    tables = [client.submit(_sealed, _to_table, p, key=f"from_dask-{uuid.uuid4().hex}") for p in partitions]
    metas = [client.submit(_sealed, _unsealed(metadata_of), t, key=f"from_dask-meta-{uuid.uuid4().hex}") for t in tables]
    return [(refs.ObjectRef(t), refs.ObjectRef(m)) for t, m in zip(tables, metas)]

