"""Resources and blocking: Ray releases a blocked task's CPU, so nested ``get`` never
deadlocks, while ``num_cpus``/custom resources still limit concurrency."""

import time

import pytest

from conftest import ON_RAY


def _intervals_overlap(spans):
    spans = sorted(spans)
    return any(b[0] < a[1] for a, b in zip(spans, spans[1:]))


def test_nested_get_does_not_deadlock(ray):
    @ray.remote
    def child(x):
        return x

    @ray.remote
    def parent(x):
        return ray.get(child.remote(x)) + 1

    # 4 parents blocked on children on 2 CPUs: Ray finishes this (verified).
    assert ray.get([parent.remote(i) for i in range(4)], timeout=120) == [1, 2, 3, 4]


def test_recursive_task_tree(ray):
    @ray.remote
    def fib(n):
        if n < 2:
            return n
        return sum(ray.get([fib.remote(n - 1), fib.remote(n - 2)]))

    assert ray.get(fib.remote(8), timeout=180) == 21


def test_wait_inside_task_does_not_deadlock(ray):
    @ray.remote
    def child(x):
        return x

    @ray.remote
    def parent():
        refs = [child.remote(i) for i in range(3)]
        ready, _ = ray.wait(refs, num_returns=3)
        return len(ready)

    assert ray.get([parent.remote() for _ in range(3)], timeout=120) == [3, 3, 3]


def _spans(ray, n, seconds=1.0, **options):
    """Run ``n`` tasks with ``options``; each returns its (start, end) wall-clock span."""

    def span():
        start = time.time()
        time.sleep(seconds)
        return start, time.time()

    fn = ray.remote(**options)(span) if options else ray.remote(span)
    return ray.get([fn.remote() for _ in range(n)], timeout=120)


def _all_overlap(spans):
    return max(s for s, _ in spans) < min(e for _, e in spans)


def test_num_cpus_two_tasks_never_overlap(ray):
    assert not _intervals_overlap(_spans(ray, 3, 0.5, num_cpus=2))


def test_default_tasks_use_both_cpus(ray):
    assert _intervals_overlap(_spans(ray, 2))


def test_fractional_cpus_pack_more(ray):
    assert _all_overlap(_spans(ray, 4, num_cpus=0.5))
    # ... but never more than the CPUs allow: 6 half-CPU tasks on 2 CPUs run 4 + 2.
    spans = _spans(ray, 6, num_cpus=0.5)
    starts = sorted(s for s, _ in spans)
    assert starts[4] >= min(e for _, e in spans) - 0.05


def test_zero_cpu_tasks_do_not_take_cpus(ray):
    assert _all_overlap(_spans(ray, 4, num_cpus=0))


@pytest.mark.differs_from_ray
def test_infeasible_task_stays_pending(ray):
    @ray.remote(num_cpus=64)
    def too_big():
        return 1

    with pytest.warns(UserWarning) if not ON_RAY else _nullcontext():
        r = too_big.remote()
    with pytest.raises(ray.exceptions.GetTimeoutError):
        ray.get(r, timeout=1)
    ray.cancel(r)


def test_get_assigned_resources(ray):
    @ray.remote(num_cpus=0.5)
    def assigned():
        return ray.get_runtime_context().get_assigned_resources()

    assert ray.get(assigned.remote())["CPU"] == 0.5


def test_cluster_resources(ray):
    total = ray.cluster_resources()
    assert total["CPU"] == 2.0
    assert "memory" in total
    nodes = ray.nodes()
    assert len(nodes) >= 1
    for key in ("NodeID", "Alive", "NodeManagerAddress", "Resources"):
        assert key in nodes[0]
    assert nodes[0]["Alive"] is True
    avail = ray.available_resources()
    assert avail.get("CPU", 0) <= 2.0


def test_blocked_task_releases_cpu(ray):
    @ray.remote
    def child():
        return "child ran"

    @ray.remote(num_cpus=2)
    def parent():
        return ray.get(child.remote())

    # The parent holds both CPUs; its 1-CPU child can only run because the parent's
    # CPUs are released while it blocks in get. (Ray's available_resources() is
    # eventually consistent, so the test checks progress, not the counter.)
    assert ray.get(parent.remote(), timeout=60) == "child ran"


class _nullcontext:
    def __enter__(self):
        return self

    def __exit__(self, *a):
        return False
