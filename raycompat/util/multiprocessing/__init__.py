"""``ray.util.multiprocessing``: ``multiprocessing.Pool``'s API on a pool of actors.

As in Ray, ``TimeoutError`` and ``JoinableQueue`` are the stdlib's own.
"""

from multiprocessing import JoinableQueue, TimeoutError

from raycompat.util.multiprocessing.pool import Pool

__all__ = ["JoinableQueue", "Pool", "TimeoutError"]
