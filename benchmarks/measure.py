"""What the benchmarks measure that is not time: the cluster's memory."""

from __future__ import annotations


def tree_rss_mb() -> float:
    """RSS of this process and every process it started (a local cluster's), in MB."""
    import psutil

    me = psutil.Process()
    total = me.memory_info().rss
    for p in me.children(recursive=True):
        try:
            total += p.memory_info().rss
        except psutil.Error:
            pass
    return total / 2**20
