"""Placement groups: bundles reserved out of the cluster's resources, tasks and actors
scheduled into them, and Ray 2.60's errors, table and lifetimes (each checked on Ray
2.60 with ``RAYCOMPAT_TEST_ENGINE=ray``). The session cluster has 2 CPUs on one node; a
test removes its groups before it ends, so the next test has both CPUs again."""

import time
import warnings

import pytest

from conftest import ON_RAY, wait_until


@pytest.fixture
def pg_api(ray):
    """``ray.util`` with every group a test makes removed afterwards."""
    made = []
    real = ray.util.placement_group

    def placement_group(*args, **kwargs):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # raycompat warns of an unplaceable group
            pg = real(*args, **kwargs)
        made.append(pg)
        return pg

    yield placement_group
    for pg in made:
        ray.util.remove_placement_group(pg)
    assert wait_until(lambda: ray.available_resources().get("CPU", 0) == 2, timeout=30)


def _strategy(ray, pg, index=-1, capture=None):
    from importlib import import_module

    mod = import_module(ray.__name__ + ".util.scheduling_strategies")
    return mod.PlacementGroupSchedulingStrategy(
        pg, placement_group_bundle_index=index, placement_group_capture_child_tasks=capture
    )


def _cpus_available(ray):
    return ray.available_resources().get("CPU", 0)


def test_ready_table_and_reservation(ray, pg_api):
    pg = pg_api([{"CPU": 1}], strategy="PACK", name="reserved-one")
    assert ray.get(pg.ready(), timeout=60) == pg
    assert pg.wait(10) is True
    assert pg.bundle_specs == [{"CPU": 1.0}] and pg.bundle_count == 1
    assert len(pg.id.hex()) == 36
    entry = ray.util.placement_group_table(pg)
    assert {k: entry[k] for k in ("placement_group_id", "name", "bundles", "strategy", "state")} == {
        "placement_group_id": pg.id.hex(),
        "name": "reserved-one",
        "bundles": {0: {"CPU": 1.0}},
        "strategy": "PACK",
        "state": "CREATED",
    }
    assert entry["bundles_to_node_id"][0] in {n["NodeID"] for n in ray.nodes()}
    assert set(entry["stats"]) >= {"scheduling_latency_ms", "scheduling_state"}
    assert pg.id.hex() in ray.util.placement_group_table()
    # The bundle's CPU is out of what other tasks may use.
    assert wait_until(lambda: _cpus_available(ray) == 1, timeout=30)
    assert ray.util.get_placement_group("reserved-one") == pg
    ray.util.remove_placement_group(pg)
    assert wait_until(lambda: ray.util.placement_group_table(pg)["state"] == "REMOVED", timeout=30)
    assert wait_until(lambda: _cpus_available(ray) == 2, timeout=30)
    with pytest.raises(ValueError, match="Failed to look up placement group with name: reserved-one"):
        ray.util.get_placement_group("reserved-one")


def test_group_holding_every_cpu_keeps_other_tasks_waiting(ray, pg_api):
    @ray.remote
    def outside():
        return "ran"

    pg = pg_api([{"CPU": 2}])
    ray.get(pg.ready(), timeout=60)
    ref = outside.remote()
    ready, _ = ray.wait([ref], timeout=1.5)
    assert ready == []  # both CPUs are the group's
    inside = outside.options(scheduling_strategy=_strategy(ray, pg)).remote()
    assert ray.get(inside, timeout=60) == "ran"
    ray.util.remove_placement_group(pg)
    assert ray.get(ref, timeout=60) == "ran"


def test_tasks_in_a_bundle_share_its_cpus(ray, pg_api):
    @ray.remote
    def span():
        start = time.time()
        time.sleep(0.4)
        return start, time.time()

    pg = pg_api([{"CPU": 1}])
    ray.get(pg.ready(), timeout=60)
    spans = sorted(ray.get([span.options(scheduling_strategy=_strategy(ray, pg, 0)).remote() for _ in range(3)],
                           timeout=60))
    # One CPU in the bundle: its tasks run one at a time.
    assert all(b[0] >= a[1] - 0.01 for a, b in zip(spans, spans[1:])), spans


def test_strict_pack_bundles_by_index(ray, pg_api):
    @ray.remote(num_cpus=1)
    def which():
        return ray.util.get_current_placement_group()

    pg = pg_api([{"CPU": 1}, {"CPU": 1}], strategy="STRICT_PACK")
    assert pg.wait(60)
    entry = ray.util.placement_group_table(pg)
    assert entry["strategy"] == "STRICT_PACK" and len(set(entry["bundles_to_node_id"].values())) == 1
    refs = [which.options(scheduling_strategy=_strategy(ray, pg, i)).remote() for i in (0, 1, 0, 1)]
    assert ray.get(refs, timeout=60) == [pg] * 4


def test_current_group_and_captured_child_tasks(ray, pg_api):
    @ray.remote
    def current():
        return ray.util.get_current_placement_group()

    @ray.remote
    def parent():
        return ray.get(current.remote()), ray.util.get_current_placement_group()

    pg = pg_api([{"CPU": 1}])  # the other CPU stays free for tasks outside the group
    ray.get(pg.ready(), timeout=60)
    assert ray.util.get_current_placement_group() is None  # the driver is in no group
    assert ray.get(current.remote(), timeout=60) is None
    assert ray.get(current.options(scheduling_strategy=_strategy(ray, pg)).remote(), timeout=60) == pg
    # Captured: the child (no strategy of its own) runs in the parent's group.
    captured = parent.options(scheduling_strategy=_strategy(ray, pg, capture=True)).remote()
    assert ray.get(captured, timeout=60) == (pg, pg)
    # Not captured: the child runs outside it.
    free = parent.options(scheduling_strategy=_strategy(ray, pg)).remote()
    assert ray.get(free, timeout=60) == (None, pg)


def test_blocking_get_gives_the_bundle_cpu_back(ray, pg_api):
    @ray.remote
    def leaf(x):
        return x * 2

    @ray.remote
    def parent(x):
        return ray.get(leaf.remote(x))  # the captured child needs the bundle's only CPU

    pg = pg_api([{"CPU": 1}])
    ray.get(pg.ready(), timeout=60)
    ref = parent.options(scheduling_strategy=_strategy(ray, pg, 0, capture=True)).remote(21)
    assert ray.get(ref, timeout=60) == 42


def test_actor_in_a_group_and_removal(ray, pg_api):
    @ray.remote
    class Worker:
        def group(self):
            return ray.util.get_current_placement_group()

    @ray.remote
    def hold():
        time.sleep(30)

    pg = pg_api([{"CPU": 1}])
    ray.get(pg.ready(), timeout=60)
    actor = Worker.options(num_cpus=1, scheduling_strategy=_strategy(ray, pg, 0)).remote()
    assert ray.get(actor.group.remote(), timeout=60) == pg
    # The actor holds the bundle's CPU: this task waits for it.
    waiting = hold.options(scheduling_strategy=_strategy(ray, pg, 0)).remote()
    time.sleep(0.5)
    ray.util.remove_placement_group(pg)
    with pytest.raises(ray.exceptions.TaskPlacementGroupRemoved):
        ray.get(waiting, timeout=60)
    with pytest.raises(ray.exceptions.ActorDiedError):
        ray.get(actor.group.remote(), timeout=60)


def test_unplaceable_group_stays_pending(ray, pg_api):
    # Two bundles on two different nodes, on a one-node cluster.
    pg = pg_api([{"CPU": 1}, {"CPU": 1}], strategy="STRICT_SPREAD")
    assert pg.wait(1) is False
    ready, _ = ray.wait([pg.ready()], timeout=0.5)
    assert ready == []
    assert ray.util.placement_group_table(pg)["state"] == "PENDING"
    too_big = pg_api([{"CPU": 64}])
    assert too_big.wait(0.5) is False


def test_bad_arguments_raise_rays_errors(ray, pg_api):
    @ray.remote
    def f():
        return 1

    cases = [
        ([], {}, "Bundles must be a non-empty list of resource dictionaries"),
        ([{}], {}, "Bundles cannot be an empty dictionary or resources with only 0 values"),
        ({"CPU": 1}, {}, "Placement group bundles must be a list"),
        ([{"CPU": 0}], {}, "Bundles cannot be an empty dictionary"),
        ([{"CPU": 1}], {"strategy": "TIGHT"}, "Invalid placement group strategy TIGHT"),
        ([{"CPU": 1}], {"lifetime": "forever"}, "Placement group `lifetime` argument must be either"),
    ]
    for bundles, kwargs, message in cases:
        with pytest.raises(ValueError, match=message):
            ray.util.placement_group(bundles, **kwargs)
    with pytest.raises(ValueError, match="Please supply a non-empty value to get_placement_group"):
        ray.util.get_placement_group("")

    pg = pg_api([{"CPU": 1}])
    with pytest.raises(ValueError, match=r"placement group bundle index 3 is invalid. Valid placement group indexes: 0-1"):
        f.options(scheduling_strategy=_strategy(ray, pg, 3)).remote()
    with pytest.raises(ValueError, match=r"resource request \{'CPU': 2\} cannot fit into any bundles"):
        f.options(num_cpus=2, scheduling_strategy=_strategy(ray, pg)).remote()

    @ray.remote
    class A:
        pass

    empty_cpu = pg_api([{"memory": 1000}])
    with pytest.raises(ValueError, match="the actor requires 1 CPU for creation"):
        A.options(scheduling_strategy=_strategy(ray, empty_cpu)).remote()


@pytest.mark.differs_from_ray
def test_task_of_a_group_removed_before_it_ran(ray, pg_api):
    """Ray 2.60 (checked): a task waiting for a group that is removed before it was ever
    placed, or submitted to a removed group, never runs and its ``get`` never returns.
    raycompat raises Ray's ``TaskPlacementGroupRemoved`` instead (a ``get`` that can
    never complete is an error here)."""
    @ray.remote
    def f():
        return 1

    pg = pg_api([{"CPU": 1}, {"CPU": 1}], strategy="STRICT_SPREAD")  # never placed here
    waiting = f.options(scheduling_strategy=_strategy(ray, pg)).remote()
    ray.util.remove_placement_group(pg)
    late = f.options(scheduling_strategy=_strategy(ray, pg)).remote()
    for ref in (waiting, late):
        if ON_RAY:
            with pytest.raises(ray.exceptions.GetTimeoutError):
                ray.get(ref, timeout=2)
        else:
            with pytest.raises(ray.exceptions.TaskPlacementGroupRemoved):
                ray.get(ref, timeout=60)
