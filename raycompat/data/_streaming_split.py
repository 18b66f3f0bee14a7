"""``Dataset.streaming_split(n)``: a coordinator actor hands one execution's blocks to n iterators.

Ray's ``SplitCoordinator`` actor runs the dataset once per epoch and gives each block to
the iterator that asks next (``equal=True``: a block waits in a buffer until giving it
keeps the splits within what the buffer can even out, and the buffer is cut into equal
final shares at the end, the remainder dropped); an epoch starts once all ``n``
iterators have asked for it (Ray's barrier: iterating one split alone past its first
epoch waits for the others, as on Ray). raycompat's coordinator is a threaded raycompat actor that runs the plan from
inside the actor, as any task may submit tasks; the blocks stay on the cluster, and the
iterators fetch them by ref.
"""

from __future__ import annotations

import collections
import itertools
import threading

import raycompat
from raycompat.data import _execution as ex
from raycompat.data.iterator import StreamSplitDataIterator


class _SplitCoordinator:
    def __init__(self, node, n: int, equal: bool):
        self.node, self.n, self.equal = node, n, equal
        self.lock = threading.Condition()
        self.epoch = 0
        self.asked: set = set()  # splits that asked for the next epoch
        self.stream = None
        # equal=True, as Ray's OutputSplitter: blocks wait in a buffer and go to a split
        # only while the rest of the buffer can still even the splits out; at the end the
        # buffer is cut into each split's final share.
        self.buffer: collections.deque = collections.deque()
        self.given: list = []
        self.shares = None

    def next_block(self, index: int, epoch: int):
        """The next block ref for split ``index`` in ``epoch`` (wrapped in a list, so it
        stays a ref), or None at the end of its share."""
        with self.lock:
            if epoch > self.epoch:
                self.asked.add(index)
                if len(self.asked) == self.n:
                    self.asked.clear()
                    self._start(epoch)
                    self.lock.notify_all()
                else:
                    self.lock.wait_for(lambda: self.epoch >= epoch)
            if not self.equal:
                block = next(self.stream, None)
                return None if block is None else [block.ref]
            block = self._next_equal(index)
            return None if block is None else [block.ref]

    def _start(self, epoch: int) -> None:
        self.epoch = epoch
        self.stream = ex.prefetch(self.node.stream())
        self.buffer.clear()
        self.given, self.shares = [0] * self.n, None

    def _next_equal(self, index: int):
        while self.shares is None:
            if self.buffer and self._can_give(index, self.buffer[0].meta.num_rows):
                block = self.buffer.popleft()
                self.given[index] += block.meta.num_rows
                return block
            block = next(self.stream, None)
            if block is None:
                self.shares = self._final_shares()
            elif block.meta.num_rows:
                self.buffer.append(block)
        share = self.shares[index]
        return share.pop(0) if share else None

    def _can_give(self, index: int, rows: int) -> bool:
        after = list(self.given)
        after[index] += rows
        needed = sum(max(after) - g for g in after)
        return sum(b.meta.num_rows for b in self.buffer) - rows >= needed

    def _final_shares(self) -> list:
        """The buffer cut so every split ends with the same rows (Ray drops the rest)."""
        top = max(self.given)
        wanted = [top - g for g in self.given]
        left = sum(b.meta.num_rows for b in self.buffer) - sum(wanted)
        wanted = [w + left // self.n for w in wanted]
        edges = list(itertools.accumulate(wanted, initial=0))
        return ex.cut_rows(list(self.buffer), edges)


def streaming_split(dataset, n: int, equal: bool) -> list:
    if n <= 0:
        raise ValueError(f"The number of splits {n} is not positive.")
    coordinator = raycompat.remote(num_cpus=0, max_concurrency=n + 2)(_SplitCoordinator).remote(dataset._node, n, equal)
    text = repr(dataset)
    return [StreamSplitDataIterator(coordinator, i, text) for i in range(n)]
