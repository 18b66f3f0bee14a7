"""``get_runtime_context()`` and ids, on the driver and inside tasks (pinned on Ray 2.60)."""

import importlib

import pytest

from conftest import ENGINE


def test_runtime_context_driver_and_task(ray):
    ctx = ray.get_runtime_context()
    assert ctx.get_task_id() is None
    job = ctx.get_job_id()
    assert isinstance(job, str) and job
    assert isinstance(ctx.namespace, str)

    @ray.remote
    def inside():
        c = ray.get_runtime_context()
        return c.get_job_id(), c.get_task_id(), c.get_node_id(), c.namespace

    tjob, task_id, node_id, ns = ray.get(inside.remote())
    assert tjob == job
    assert task_id is not None
    assert ns == ctx.namespace
    assert node_id in {n["NodeID"] for n in ray.nodes()}


def test_gpu_ids_empty_without_gpus(ray):
    assert ray.get_gpu_ids() == []


def test_runtime_context_on_the_driver_matches_ray(ray):
    # Ray 2.60 on the driver: no task or actor; worker-only methods raise.
    ctx = ray.get_runtime_context()
    assert ctx.get_task_name() is None and ctx.get_task_function_name() is None
    assert ctx.get_actor_id() is None and ctx.get_actor_name() is None
    assert sorted(ctx.get()) == ["job_id", "namespace", "node_id"]
    with pytest.raises(RuntimeError, match="only available in an actor"):
        ctx.current_actor
    with pytest.raises(AssertionError):
        ctx.was_current_actor_reconstructed
    with pytest.raises(AssertionError):
        ctx.get_assigned_resources()
    with pytest.raises(RuntimeError, match="only available when the process is a worker"):
        ctx.is_canceled()


def probe():
    c = _engine().get_runtime_context()
    return {
        "task_name": c.get_task_name(),
        "function_name": c.get_task_function_name(),
        "actor_id": c.get_actor_id(),
        "actor_name": c.get_actor_name(),
        "resources": c.get_assigned_resources(),
        "canceled": c.is_canceled(),
        "keys": sorted(c.get()),
        "worker_id": c.get_worker_id(),
        "task_id": c.get_task_id(),
    }


def _engine():
    return importlib.import_module(ENGINE)


def test_runtime_context_in_tasks(ray):
    task = ray.remote(num_cpus=0.5)(probe)
    info = ray.get(task.remote())
    assert info["task_name"] == "probe"
    # Ray names the function by module and qualified name.
    assert info["function_name"] == f"{__name__}.probe"
    assert info["actor_id"] is None and info["actor_name"] is None
    assert info["resources"] == {"CPU": 0.5}
    assert info["canceled"] is False
    assert info["keys"] == ["job_id", "namespace", "node_id", "task_id"]
    assert len(info["worker_id"]) == 56 and len(info["task_id"]) == 48
    renamed = ray.get(task.options(name="renamed").remote())
    assert renamed["task_name"] == "renamed" and renamed["function_name"] == f"{__name__}.probe"
    assert renamed["task_id"] != info["task_id"]


def test_runtime_context_in_actors(ray):
    @ray.remote
    class Inspector:
        def look(self):
            c = ray.get_runtime_context()
            return (c.get_task_name(), c.get_actor_id(), c.get_actor_name(),
                    c.was_current_actor_reconstructed, c.current_actor, c.get_assigned_resources())

    plain = Inspector.remote()
    name, actor_id, actor_name, rebuilt, handle, resources = ray.get(plain.look.remote())
    assert name == "Inspector.look"
    assert isinstance(actor_id, str) and len(actor_id) == 32
    assert actor_name == ""  # Ray: "" for an unnamed actor
    assert rebuilt is False and resources == {}
    assert handle == plain  # current_actor is a handle to this very actor
    named = Inspector.options(name="inspector-bob").remote()
    assert ray.get(named.look.remote())[2] == "inspector-bob"


def test_is_canceled_in_a_running_actor_call(ray, tmp_path):
    # Ray does not interrupt a running sync actor call on cancel: it sets is_canceled().
    started, seen = str(tmp_path / "started"), str(tmp_path / "seen")

    @ray.remote
    class Worker:
        def watch(self, started, seen):
            import time

            open(started, "w").close()
            c = ray.get_runtime_context()
            deadline = time.time() + 30
            while time.time() < deadline:
                if c.is_canceled():
                    open(seen, "w").close()
                    return "saw it"
                time.sleep(0.01)
            return "never"

    import os
    import time

    ref = Worker.remote().watch.remote(started, seen)
    deadline = time.time() + 60
    while not os.path.exists(started) and time.time() < deadline:
        time.sleep(0.01)
    ray.cancel(ref)
    with pytest.raises(ray.exceptions.TaskCancelledError):
        ray.get(ref, timeout=60)
    while not os.path.exists(seen) and time.time() < deadline:
        time.sleep(0.01)
    assert os.path.exists(seen)
