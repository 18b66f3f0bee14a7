"""``ray.util.as_completed`` and ``ray.util.map_unordered``."""

import time

import pytest


def test_as_completed_yields_in_completion_order(ray):
    @ray.remote
    def nap(t):
        time.sleep(t)
        return t

    ray.get([nap.remote(0) for _ in range(4)])  # warm the workers (first-call imports)
    # Two tasks on two CPUs: which finishes first does not depend on placement. (With more
    # tasks than CPUs, Dask may queue a short task behind a long one on a busy worker.)
    refs = [nap.remote(t) for t in (0.8, 0.0)]
    assert list(ray.util.as_completed(refs, chunk_size=1)) == [0.0, 0.8]
    out = list(ray.util.as_completed(refs, yield_obj_refs=True))
    assert set(out) == set(refs)
    with pytest.raises(ValueError):
        list(ray.util.as_completed(refs, chunk_size=0))


def test_map_unordered_with_backpressure(ray):
    @ray.remote
    def square(x):
        return x * x

    assert sorted(ray.util.map_unordered(square, range(20), backpressure_size=4, chunk_size=2)) == [
        x * x for x in range(20)
    ]
    with pytest.raises(ValueError):
        list(ray.util.map_unordered(square, range(3), backpressure_size=0))
