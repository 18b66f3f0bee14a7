"""Batches across blocks, and ``DataIterator`` (Ray's ``ray.data.iterator``).

``iter_batches`` cuts the stream of blocks into batches of exactly ``batch_size`` rows,
carrying the remainder of one block into the next batch, as Ray does; ``drop_last``
drops a short final batch. ``streaming_split`` hands each consumer a ``DataIterator``
over its share.
"""

from __future__ import annotations

from typing import Iterator, Optional

import numpy as np
import pyarrow as pa

from raycompat.data import _blocks


def batches_of(tables: Iterator[pa.Table], batch_size: Optional[int], batch_format, drop_last=False,
               shuffle_buffer=None, shuffle_seed=None, collate_fn=None) -> Iterator:
    _blocks.check_batch_format(batch_format)
    rng = np.random.default_rng(shuffle_seed) if shuffle_buffer else None

    def emit(table):
        if rng is not None:
            table = table.take(pa.array(rng.permutation(table.num_rows)))
        batch = _blocks.to_batch(table, batch_format)
        return collate_fn(batch) if collate_fn is not None else batch

    pending, rows = [], 0
    for table in tables:
        if batch_size is None:
            if table.num_rows:
                yield emit(table)
            continue
        pending.append(table)
        rows += table.num_rows
        while rows >= batch_size:
            whole = _blocks.concat(pending)
            yield emit(whole.slice(0, batch_size))
            rest = whole.slice(batch_size)
            pending, rows = [rest], rest.num_rows
    if batch_size is not None and rows and not drop_last:
        yield emit(_blocks.concat(pending))


class DataIterator:
    """An iterator over one share of a Dataset (``streaming_split``, ``iterator()``)."""

    def __init__(self, dataset):
        self._dataset = dataset

    def iter_batches(self, **kwargs):
        return self._dataset.iter_batches(**kwargs)

    def iter_rows(self):
        return self._dataset.iter_rows()

    def materialize(self):
        return self._dataset.materialize()

    def stats(self) -> str:
        return self._dataset.stats()

    def __repr__(self):
        return f"DataIterator({self._dataset!r})"
