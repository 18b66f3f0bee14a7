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

import raycompat
from raycompat.data import _blocks
from raycompat.data import _execution as ex


def batches_of(tables: Iterator[pa.Table], batch_size: Optional[int], batch_format, drop_last=False,
               shuffle_buffer=None, shuffle_seed=None, collate_fn=None) -> Iterator:
    """Batches of exactly ``batch_size`` rows across blocks (the last one smaller unless
    ``drop_last``), or one per block (``batch_size=None``)."""
    _blocks.check_batch_format(batch_format)

    def emit(table):
        batch = _blocks.to_batch(table, batch_format)
        return collate_fn(batch) if collate_fn is not None else batch

    if shuffle_buffer:
        tables = _locally_shuffled(tables, batch_size, shuffle_buffer, shuffle_seed)
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


def _locally_shuffled(tables, batch_size, buffer_rows, seed) -> Iterator[pa.Table]:
    """Ray's local shuffle buffer: rows collect until at least ``buffer_rows`` (and a
    batch) wait; each batch is drawn at random from all rows waiting, so rows of
    different blocks mix; whatever remains at the end comes out shuffled too."""
    rng = np.random.default_rng(seed)
    size = batch_size or 1
    floor = max(int(buffer_rows), size)
    shuffled, fresh = None, []  # a permuted table being sliced; blocks not yet mixed in

    def rows_waiting():
        return (shuffled.num_rows if shuffled is not None else 0) + sum(t.num_rows for t in fresh)

    def mix():
        nonlocal shuffled, fresh
        whole = _blocks.concat(([shuffled] if shuffled is not None else []) + fresh)
        shuffled, fresh = whole.take(pa.array(rng.permutation(whole.num_rows))), []

    for table in tables:
        if table.num_rows:
            fresh.append(table)
        while rows_waiting() >= floor + size:
            if shuffled is None or shuffled.num_rows < floor:
                mix()
            yield shuffled.slice(0, size)
            shuffled = shuffled.slice(size)
    if rows_waiting():
        mix()
        yield shuffled


def torch_batches(iter_batches, *, batch_size=256, dtypes=None, device="auto", collate_fn=None, drop_last=False,
                  local_shuffle_buffer_size=None, local_shuffle_seed=None, prefetch_batches=1, pin_memory=False):
    """Ray's ``iter_torch_batches``: numpy batches as dicts of ``torch.Tensor`` (``dtypes``:
    one dtype or one per column) on ``device`` ("auto" is the CPU outside Ray Train), or
    whatever ``collate_fn`` makes of each numpy batch."""
    import torch

    if collate_fn is not None and dtypes is not None:
        raise ValueError(
            "collate_fn cannot be used with dtypes. You should manually convert the output Torch "
            "tensors to the desired dtype inside collate_fn."
        )
    device = torch.device("cpu" if device == "auto" else device)
    batches = iter_batches(batch_size=batch_size, batch_format="numpy", drop_last=drop_last,
                           local_shuffle_buffer_size=local_shuffle_buffer_size, local_shuffle_seed=local_shuffle_seed)
    for batch in batches:
        if collate_fn is not None:
            out = collate_fn(batch)
            if isinstance(out, torch.Tensor):
                out = out.to(device)
            elif isinstance(out, dict) and all(isinstance(v, torch.Tensor) for v in out.values()):
                out = {k: v.to(device) for k, v in out.items()}
            yield out
            continue
        yield {name: torch.as_tensor(values, dtype=dtypes.get(name) if isinstance(dtypes, dict) else dtypes, device=device)
               for name, values in batch.items()}


class DataIterator:
    """An iterator over one share of a Dataset (``streaming_split``, ``iterator()``)."""

    def __init__(self, dataset):
        self._dataset = dataset

    def iter_batches(self, **kwargs):
        return self._dataset.iter_batches(**kwargs)

    def iter_torch_batches(self, **kwargs):
        return torch_batches(self.iter_batches, **kwargs)

    def iter_rows(self):
        return self._dataset.iter_rows()

    def materialize(self):
        return self._dataset.materialize()

    def stats(self) -> str:
        return self._dataset.stats()

    def __repr__(self):
        return f"DataIterator({self._dataset!r})"


class StreamSplitDataIterator(DataIterator):
    """One of ``streaming_split(n)``'s iterators (Ray's class of that name).

    Ray runs the dataset in a coordinator actor and hands its blocks to the ``n``
    iterators as they ask; each pass over an iterator is an epoch, and every epoch runs the
    dataset again (a ``random_shuffle`` reshuffles), once all ``n`` iterators have started
    it. raycompat does the same with a raycompat actor (``_streaming_split``), so the
    iterators can be passed to other tasks and actors, as Ray Train does.
    """

    def __init__(self, coordinator, index: int, dataset_repr: str):
        self._coordinator, self._index, self._repr = coordinator, index, dataset_repr
        self._epoch = 0

    def _tables(self) -> Iterator[pa.Table]:
        self._epoch += 1
        while True:
            block = raycompat.get(self._coordinator.next_block.remote(self._index, self._epoch))
            if block is None:
                return
            yield raycompat.get(block[0])

    def iter_batches(self, *, prefetch_batches: int = 1, batch_size: Optional[int] = 256, batch_format="default",
                     drop_last: bool = False, local_shuffle_buffer_size=None, local_shuffle_seed=None, _collate_fn=None):
        return batches_of(self._tables(), batch_size, batch_format, drop_last, local_shuffle_buffer_size,
                          local_shuffle_seed, _collate_fn)

    def iter_rows(self):
        for table in self._tables():
            yield from _blocks.rows_of(table)

    def materialize(self):
        # late: dataset imports this module.
        from raycompat.data.dataset import MaterializedDataset

        return MaterializedDataset(ex.RefSource([ex.put_block(t) for t in self._tables()]))

    def stats(self) -> str:
        return ""

    def __repr__(self):
        return f"StreamSplitDataIterator(index={self._index}, dataset={self._repr})"
