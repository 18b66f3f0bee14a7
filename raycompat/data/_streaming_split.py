"""``Dataset.streaming_split(n)``: a coordinator actor hands one execution's blocks to n iterators.

Ray's ``SplitCoordinator`` actor runs the dataset once per epoch and gives each block to
the iterator that asks next (``equal=True``: the same number of rows to each, the
remainder dropped); an epoch starts once all ``n`` iterators have asked for it (Ray's
barrier: iterating one split alone past its first epoch waits for the others, as on
Ray). raycompat's coordinator is a threaded raycompat actor that runs the plan from
inside the actor, as any task may submit tasks; the blocks stay on the cluster, and the
iterators fetch them by ref.
"""

from __future__ import annotations

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
        self.shares: list = []  # equal=True: each split's blocks for this epoch

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
            if self.equal:
                share = self.shares[index]
                return [share.pop(0).ref] if share else None
            block = next(self.stream, None)
            return None if block is None else [block.ref]

    def _start(self, epoch: int) -> None:
        self.epoch = epoch
        self.stream = ex.prefetch(self.node.stream())
        if self.equal:
            self.shares = _equal_shares(list(self.stream), self.n)


def _equal_shares(blocks: list, n: int) -> list:
    """The blocks cut into n shares of ``total // n`` rows each (Ray drops the remainder)."""
    per = sum(m.num_rows for m in ex.metas(blocks)) // n
    return ex.cut_rows(blocks, [k * per for k in range(n + 1)])


def streaming_split(dataset, n: int, equal: bool) -> list:
    if n <= 0:
        raise ValueError(f"The number of splits {n} is not positive.")
    coordinator = raycompat.remote(num_cpus=0, max_concurrency=n + 2)(_SplitCoordinator).remote(dataset._node, n, equal)
    text = repr(dataset)
    return [StreamSplitDataIterator(coordinator, i, text) for i in range(n)]
