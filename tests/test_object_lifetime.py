"""Object lifetime and fault isolation, as Ray 2.60 has them (issue 10).

Ray keeps an object alive while some process (driver, task, actor) holds a ref to it,
also when the ref travels nested inside arguments, return values, ``put`` values and
actor state, and frees it when the last holder lets go. Each test below passes on Ray
2.60 (``RAYCOMPAT_TEST_ENGINE=ray``); what Ray did is written next to it.
"""

from __future__ import annotations

import gc
import os
import threading
import time

import psutil
import pytest

from conftest import wait_until


# ---------------------------------------------------------------- 1. actor results as args


def test_remote_does_not_wait_for_an_actor_call_argument(ray):
    """Ray 2.60: ``proc.remote(gate.passage.remote(i))`` returns at once while ``passage``
    waits for a later ``open`` call; every result arrives once the gates open."""

    @ray.remote
    class Gate:
        def __init__(self):
            import asyncio

            self.events = {}
            self.asyncio = asyncio

        def _event(self, k):
            return self.events.setdefault(k, self.asyncio.Event())

        async def passage(self, k):
            await self._event(k).wait()
            return k

        async def open(self, k):
            self._event(k).set()

    @ray.remote
    def proc(x):
        return x * 10

    gate = Gate.remote()
    built = []

    def build():
        built.extend(proc.remote(gate.passage.remote(i)) for i in range(3))

    builder = threading.Thread(target=build, daemon=True)
    builder.start()
    builder.join(timeout=30)
    assert not builder.is_alive(), ".remote() blocked on a running actor call's result"
    for i in range(3):
        gate.open.remote(i)
    assert ray.get(built, timeout=60) == [0, 10, 20]


def test_actor_result_mixes_with_task_refs_in_wait_and_tasks(ray):
    """An actor call's ref, passed on before it is done, is a dependency like any other."""

    @ray.remote
    class Slow:
        def value(self, x, delay):
            time.sleep(delay)
            return x

    @ray.remote
    def add(a, b):
        return a + b

    slow = Slow.remote()
    pending = slow.value.remote(5, 1.0)
    total = add.remote(pending, 1)
    ready, not_ready = ray.wait([total, pending], num_returns=2, timeout=60)
    assert len(ready) == 2 and not not_ready
    assert ray.get(total) == 6


# ---------------------------------------------------------------- 2. nested refs in actor args


def _drop_and_settle(ray):
    """Drop the driver's garbage and give frees time to reach the cluster."""
    gc.collect()
    time.sleep(1.0)


def test_nested_ref_in_actor_constructor_argument_stays_alive(ray):
    """Ray 2.60: the actor borrows the inner ref; the driver has no other handle to it."""

    @ray.remote
    class Holder:
        def __init__(self, box):
            self.box = box

        def read(self):
            return ray.get(self.box[0], timeout=20)

    holder = Holder.remote([ray.put("x" * 10)])
    ray.get(holder.__ray_ready__.remote(), timeout=60)
    _drop_and_settle(ray)
    assert ray.get(holder.read.remote(), timeout=60) == "x" * 10


class _Keeper:
    """An actor that keeps the refs it is given and reads them later."""

    def __init__(self):
        self.kept = []

    def keep(self, box):
        self.kept.extend(box)

    def read(self):
        """The values, got inside the actor (the engine the tests run on)."""
        import importlib

        engine = importlib.import_module(os.environ.get("RAYCOMPAT_TEST_ENGINE", "raycompat"))
        return engine.get(self.kept, timeout=20)


def test_nested_ref_in_actor_call_argument_kept_by_the_actor(ray):
    keeper = ray.remote(_Keeper).remote()
    ray.get(keeper.keep.remote([ray.put("y"), ray.put("z")]), timeout=60)
    _drop_and_settle(ray)
    assert ray.get(keeper.read.remote(), timeout=60) == ["y", "z"]


def test_nested_ref_returned_from_a_task_outlives_the_task(ray):
    @ray.remote
    def make():
        return [ray.put("inner")]

    box = ray.get(make.remote(), timeout=60)
    _drop_and_settle(ray)
    assert ray.get(box[0], timeout=30) == "inner"


def test_ref_inside_put_value_lives_while_the_outer_ref_does(ray):
    outer = ray.put([ray.put("deep")])
    _drop_and_settle(ray)
    inner = ray.get(outer, timeout=30)[0]
    assert ray.get(inner, timeout=30) == "deep"


def test_nested_ref_in_task_argument_stored_in_actor(ray):
    """A task receives a nested ref and hands it to an actor, which reads it later."""
    Store = ray.remote(_Keeper)

    @ray.remote
    def forward(store, box):
        ray.get(store.keep.remote(box))

    store = Store.remote()
    ray.get(forward.remote(store, [ray.put("via task")]), timeout=60)
    _drop_and_settle(ray)
    assert ray.get(store.read.remote(), timeout=60) == ["via task"]


# ---------------------------------------------------------------- 3. escaped refs are freed


def _cluster_rss_mb() -> float:
    """RSS of this driver and every process it started (the local cluster's)."""
    me = psutil.Process()
    total = 0
    for p in [me, *me.children(recursive=True)]:
        try:
            total += p.memory_info().rss
        except psutil.Error:
            pass
    return total / 2**20


def test_refs_escaping_into_data_are_freed(ray):
    """Ray 2.60: a loop of ``box = get(make.remote())`` (2 MB inside a nested ref), then
    ``use.remote(box)`` and ``del box``, keeps the cluster's memory flat (the issue's
    reproducer: raycompat grew 2 MB per iteration until shutdown)."""
    np = pytest.importorskip("numpy")

    @ray.remote
    def make():
        return [ray.put(np.ones(250_000))]

    @ray.remote
    def use(box):
        return float(ray.get(box[0])[0])

    def rounds(n):
        for _ in range(n):
            box = ray.get(make.remote(), timeout=60)
            assert ray.get(use.remote(box), timeout=60) == 1.0
            del box

    rounds(60)  # warm-up: worker pools, allocator arenas
    gc.collect()
    time.sleep(1.0)
    before = _cluster_rss_mb()
    rounds(300)  # 600 MB if nothing were freed
    gc.collect()
    time.sleep(2.0)
    grown = _cluster_rss_mb() - before
    assert grown < 200, f"the cluster grew {grown:.0f} MB over 300 rounds of 2 MB"


# ---------------------------------------------------------------- 4. tasks cannot kill actors


class _Counter:
    def __init__(self):
        self.n = 0

    def inc(self):
        self.n += 1
        return self.n


@pytest.mark.own_actor_processes
def test_crashing_tasks_do_not_kill_actors(ray):
    """Ray 2.60: every actor has a process of its own; tasks that kill their worker
    processes (``os._exit``) leave the actor and its state untouched."""

    Counter = ray.remote(_Counter)

    @ray.remote(max_retries=0)
    def crash():
        os._exit(1)

    counters = [Counter.remote() for _ in range(2)]
    assert ray.get([c.inc.remote() for c in counters], timeout=60) == [1, 1]
    for ref in [crash.remote() for _ in range(4)]:
        with pytest.raises(ray.exceptions.WorkerCrashedError):
            ray.get(ref, timeout=120)
    assert ray.get([c.inc.remote() for c in counters], timeout=60) == [2, 2]


@pytest.mark.own_actor_processes
def test_force_cancel_does_not_kill_actors(ray, tmp_path):
    Counter = ray.remote(_Counter)

    @ray.remote
    def spin(marker):
        open(marker, "w").close()
        while True:
            time.sleep(0.05)

    counters = [Counter.remote() for _ in range(2)]
    assert ray.get([c.inc.remote() for c in counters], timeout=60) == [1, 1]
    markers = [str(tmp_path / f"spin-{i}") for i in range(2)]
    spinning = [spin.remote(m) for m in markers]
    assert wait_until(lambda: all(os.path.exists(m) for m in markers), 60)
    for ref in spinning:
        ray.cancel(ref, force=True)
    for ref in spinning:
        with pytest.raises((ray.exceptions.TaskCancelledError, ray.exceptions.WorkerCrashedError)):
            ray.get(ref, timeout=60)
    assert ray.get([c.inc.remote() for c in counters], timeout=60) == [2, 2]


# ---------------------------------------------------------------- 6. lost objects raise


def _get_until_owner_died(ray, ref) -> None:
    """``get`` ``ref`` (or a list of refs) until it raises ``OwnerDiedError``: Ray returns the value until
    its owner's death has reached the driver (about a second), raycompat raises at once.
    No single ``get`` may wait."""
    deadline = time.monotonic() + 30
    while True:
        start = time.monotonic()
        try:
            ray.get(ref, timeout=30)
        except ray.exceptions.OwnerDiedError as e:
            assert isinstance(e, ray.exceptions.ObjectLostError)
            assert "The object's owner has exited" in str(e)
            return
        finally:
            assert time.monotonic() - start < 10
        assert time.monotonic() < deadline, "the owner's death never reached get"
        time.sleep(0.2)


@pytest.mark.parametrize("size", [4_000, 1_000_000])
def test_get_of_a_put_whose_actor_died_raises_owner_died(ray, size):
    """An actor ``put``s an object, returns its ref nested, and exits. Ray 2.60 (checked):
    ``get`` returns the value until the death is known (a second), then raises
    ``OwnerDiedError``, for small and large objects alike."""

    @ray.remote(max_restarts=0)
    class Owner:
        def make(self, n):
            return [ray.put("d" * n)]

        def die(self):
            os._exit(1)

    owner = Owner.remote()
    box = ray.get(owner.make.remote(size), timeout=60)
    with pytest.raises(ray.exceptions.RayActorError):
        ray.get(owner.die.remote(), timeout=60)
    local = ray.put(1)  # made after the death: on a live process on any cluster
    # In a list with a ref that is fine, too (a get of several refs).
    _get_until_owner_died(ray, [local, box[0]] if size > 4_000 else box[0])


def test_get_of_a_put_whose_task_worker_died_raises_owner_died(ray):
    """A task ``put``s an object and returns its ref nested; then its worker process is
    killed. Ray 2.60 (checked): ``OwnerDiedError`` (the task's worker owns its puts)."""

    @ray.remote(max_retries=0)
    def make():
        return [ray.put("d" * 100_000), os.getpid()]

    ref, pid = ray.get(make.remote(), timeout=60)
    os.kill(pid, 9)
    _get_until_owner_died(ray, ref)
