"""``ray.util.as_completed`` and ``ray.util.map_unordered`` (Ray 2.60's
``ray/util/helpers.py``, Apache-2.0), on raycompat's public ``wait``/``get``."""

from __future__ import annotations

from typing import Any, Iterable, Iterator, Optional, Sequence

import raycompat as ray

DEFAULT_CHUNK_SIZE = 10
DEFAULT_BACKPRESSURE_SIZE = 100


def _wait_and_get_single_batch(refs: Sequence, *, chunk_size: int, yield_obj_refs: bool = False, **kwargs):
    if chunk_size < 1:
        raise ValueError("`chunk_size` must be >= 1")
    ready, refs = ray.wait(list(refs), num_returns=min(chunk_size, len(refs)), **kwargs)
    if not yield_obj_refs:
        return ray.get(ready), refs
    return ready, refs


def as_completed(refs: Sequence, *, chunk_size: int = DEFAULT_CHUNK_SIZE, yield_obj_refs: bool = False,
                 **kwargs) -> Iterator[Any]:
    """Yield the values of ``refs`` (or the refs) as they complete, up to ``chunk_size`` at a time."""
    if chunk_size < 1:
        raise ValueError("`chunk_size` must be >= 1")
    if "num_returns" in kwargs:
        raise ValueError("Use the `chunksize` argument instead of `num_returns`.")
    while refs:
        results, refs = _wait_and_get_single_batch(
            refs, chunk_size=chunk_size, yield_obj_refs=yield_obj_refs, **kwargs
        )
        yield from results


def map_unordered(fn, items: Iterable[Any], *, backpressure_size: Optional[int] = DEFAULT_BACKPRESSURE_SIZE,
                  chunk_size: int = DEFAULT_CHUNK_SIZE, yield_obj_refs: bool = False, **kwargs) -> Iterator[Any]:
    """Apply the remote function ``fn`` to ``items``, at most ``backpressure_size`` in flight,
    yielding results as they complete."""
    if backpressure_size is None:
        backpressure_size = float("inf")
    elif backpressure_size <= 0:
        raise ValueError("backpressure_size must be positive.")
    if chunk_size < 1:
        raise ValueError("`chunk_size` must be >= 1")
    if "num_returns" in kwargs:
        raise ValueError("Use the `chunk_size` argument instead of `num_returns`.")
    refs: list = []
    for item in items:
        refs.append(fn.remote(item))
        if len(refs) >= backpressure_size:
            results, refs = _wait_and_get_single_batch(
                refs, chunk_size=chunk_size, yield_obj_refs=yield_obj_refs, **kwargs
            )
            yield from results
    yield from as_completed(refs, chunk_size=chunk_size, yield_obj_refs=yield_obj_refs, **kwargs)
