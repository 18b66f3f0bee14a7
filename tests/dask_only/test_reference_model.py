"""Each rule of raycompat's reference model (``raycompat/_dask/object-lifetime.md``),
seen from the scheduler: who holds which key, and when it goes."""

from __future__ import annotations

import gc
import pickle
import time

import pytest

from conftest import wait_until


def _client():
    from raycompat._dask import driver

    return driver.current_session().client


def _known(keys) -> set:
    def present(dask_scheduler, keys):
        return [k for k in keys if k in dask_scheduler.tasks]

    return set(_client().run_on_scheduler(present, keys=list(keys)))


def _held_by(holder: str) -> set:
    def wants(dask_scheduler, name):
        cs = dask_scheduler.clients.get(name)
        return [] if cs is None else [ts.key for ts in cs.wants_what]

    return set(_client().run_on_scheduler(wants, name=holder))


def _gone(keys) -> bool:
    gc.collect()
    return not _known(keys)


def test_refs_in_a_result_are_its_contents(ray):
    """Rule 3: refs sealed into a value stored under a key live exactly as long as that key."""

    @ray.remote
    def inner(i):
        return i

    @ray.remote
    def outer(n):
        return [inner.remote(i) for i in range(n)]

    result = outer.remote(5)
    refs = ray.get(result)
    inner_keys = {r._key for r in refs}
    assert _held_by("raycompat-in-" + result._key) == inner_keys
    del refs
    gc.collect()
    time.sleep(0.5)
    assert _known(inner_keys) == inner_keys, "the result still holds its contents"
    assert ray.get(ray.get(result)) == list(range(5))
    outer_key = result._key
    del result
    assert wait_until(lambda: _gone(inner_keys | {outer_key}), 30)
    assert not _held_by("raycompat-in-" + outer_key)


def test_refs_inside_put_live_with_the_put(ray):
    inner = ray.put("deep")
    outer = ray.put([inner])
    inner_key, outer_key = inner._key, outer._key
    del inner
    gc.collect()
    time.sleep(0.5)
    assert inner_key in _known([inner_key])
    del outer
    assert wait_until(lambda: _gone([inner_key, outer_key]), 30)


def test_a_ref_pickled_by_the_user_is_pinned_to_the_job(ray):
    """Rule 5: as Ray pins a ref serialized out of band until its owner exits."""
    from raycompat._dask import driver

    ref = ray.put("out of band")
    blob = pickle.dumps(ref)
    key = ref._key
    del ref
    gc.collect()
    time.sleep(0.5)
    assert key in _held_by("raycompat-pins-" + driver.current_session().job_id)
    assert ray.get(pickle.loads(blob)) == "out of band"


def test_a_ref_to_a_key_nobody_holds_raises_object_lost(ray):
    """Rule 6: a ``get`` that can never complete raises instead of waiting."""
    ref = ray.put("soon gone")
    blob = pickle.dumps(ref)  # pinned to the job: release that pin by hand
    key = ref._key
    from raycompat._dask import driver

    def release(dask_scheduler, name, key):
        dask_scheduler.client_releases_keys(keys=[key], client=name)

    _client().run_on_scheduler(release, name="raycompat-pins-" + driver.current_session().job_id, key=key)
    del ref
    assert wait_until(lambda: _gone([key]), 30)
    start = time.monotonic()
    with pytest.raises(ray.exceptions.ObjectLostError):
        ray.get(pickle.loads(blob), timeout=60)
    assert time.monotonic() - start < 30


def test_actor_result_with_refs_is_held_on_the_actor_worker(ray):
    """Rule 4: an actor's result with refs inside is a key of its own, held by the caller."""

    @ray.remote
    class Maker:
        def make(self):
            return [ray.put(b"x" * 100)]

    maker = Maker.remote()
    box_ref = maker.make.remote()
    box = ray.get(box_ref)
    held = box_ref._future._held_value
    assert held is not None and held.key in _known([held.key])
    assert _held_by("raycompat-in-" + held.key) == {box[0]._key}
    inner_key, held_key = box[0]._key, held.key
    del box, box_ref, held
    assert wait_until(lambda: _gone([inner_key, held_key]), 30)


def test_running_actor_call_passed_to_a_task_is_a_placeholder(ray):
    """Rule 7: the call's own key waits as a task until the caller fills it."""
    import threading

    @ray.remote
    class Gate:
        def __init__(self):
            self.event = threading.Event()

        def wait(self):
            self.event.wait(30)
            return "through"

        def open(self):
            self.event.set()

    @ray.remote
    def echo(x):
        return x

    gate = Gate.options(max_concurrency=2).remote()
    pending = gate.wait.remote()
    echoed = echo.remote(pending)
    key = pending._key
    assert wait_until(lambda: key in _known([key]), 30)
    gate.open.remote()
    assert ray.get(echoed, timeout=60) == "through"
    del pending, echoed
    assert wait_until(lambda: _gone([key]), 30)


def test_actors_live_in_hosts_that_run_no_tasks_and_are_reused(ray):
    """Fault isolation (object-lifetime.md): an actor's process is an actor host, which
    runs no task; once the actor is gone, the next actor reuses that process."""
    import os

    @ray.remote
    class Where:
        def pid(self):
            return os.getpid()

    @ray.remote
    def task_pid():
        return os.getpid()

    first = Where.remote()
    host_pid = ray.get(first.pid.remote(), timeout=60)
    task_pids = set(ray.get([task_pid.remote() for _ in range(40)], timeout=60))
    assert host_pid not in task_pids

    def host_names(dask_scheduler):
        return [ws.name for ws in dask_scheduler.workers.values() if ws.status.name == "paused"]

    assert any(str(n).startswith("raycompat-actor-") for n in _client().run_on_scheduler(host_names))
    key = first._creation.key
    del first
    assert wait_until(lambda: _gone([key]), 30)
    second = Where.remote()
    assert ray.get(second.pid.remote(), timeout=60) == host_pid
