"""``ray.util.ActorPool`` (Ray's tests' cases, on both engines)."""

import time

import pytest


@pytest.fixture(scope="module")
def pool_actor(ray):
    @ray.remote
    class Doubler:
        def double(self, v):
            return 2 * v

        def slow_double(self, v):
            time.sleep(0.05 * (5 - v))
            return 2 * v

    return Doubler


def test_map_in_order(ray, pool_actor):
    pool = ray.util.ActorPool([pool_actor.remote(), pool_actor.remote()])
    assert list(pool.map(lambda a, v: a.double.remote(v), [1, 2, 3, 4])) == [2, 4, 6, 8]


def test_map_unordered(ray, pool_actor):
    pool = ray.util.ActorPool([pool_actor.remote(), pool_actor.remote()])
    out = list(pool.map_unordered(lambda a, v: a.slow_double.remote(v), [1, 2, 3, 4]))
    assert sorted(out) == [2, 4, 6, 8]


def test_submit_get_next_and_free(ray, pool_actor):
    a1, a2 = pool_actor.remote(), pool_actor.remote()
    pool = ray.util.ActorPool([a1, a2])
    pool.submit(lambda a, v: a.double.remote(v), 1)
    pool.submit(lambda a, v: a.double.remote(v), 2)
    assert pool.has_next() and not pool.has_free()
    pool.submit(lambda a, v: a.double.remote(v), 3)  # waits for an idle actor
    assert [pool.get_next(), pool.get_next(), pool.get_next()] == [2, 4, 6]
    assert not pool.has_next()
    with pytest.raises(StopIteration):
        pool.get_next()
    idle = pool.pop_idle()
    assert idle in (a1, a2)
    pool.push(idle)
    with pytest.raises(ValueError, match="Actor already belongs to current ActorPool"):
        pool.push(idle)


def test_get_next_timeout_and_mixing(ray):
    @ray.remote
    class Sleeper:
        def nap(self, t):
            time.sleep(t)
            return t

    pool = ray.util.ActorPool([Sleeper.remote()])
    pool.submit(lambda a, v: a.nap.remote(v), 2)
    with pytest.raises(TimeoutError):
        pool.get_next(timeout=0.1)
    assert pool.get_next() == 2
    pool.submit(lambda a, v: a.nap.remote(v), 0)
    pool.submit(lambda a, v: a.nap.remote(v), 0.1)
    assert sorted([pool.get_next_unordered(), pool.get_next_unordered()]) == [0, 0.1]
    assert not pool.has_next()
