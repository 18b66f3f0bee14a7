"""``ray.util.state``: Ray's state API lists actors, tasks and nodes with Ray's fields.

On real Ray the state API is served by the dashboard, which needs ``ray[default]``: there
the module restarts Ray with its dashboard (and back without after), and is skipped on a
minimal Ray install.
"""

from __future__ import annotations

import os
import socket
import time
import uuid

import pytest

from conftest import ON_RAY, engine_module, init_kwargs, wait_until


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def ray(ray):
    """The session's engine; real Ray restarted with the dashboard its state API needs."""
    if not ON_RAY:
        yield ray
        return
    pytest.importorskip("aiohttp", reason="Ray's state API needs ray[default] (its dashboard server)")
    ray.shutdown()
    ray.init(**init_kwargs(include_dashboard=True, dashboard_port=_free_port()))
    yield ray
    ray.shutdown()
    ray.init(**init_kwargs())


@pytest.fixture(scope="module")
def state():
    return __import__(f"{engine_module().__name__}.util.state", fromlist=["list_actors"])


def _unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def _probe_class(ray):
    class StateProbe:
        def ids(self):
            ctx = ray.get_runtime_context()
            return ctx.get_actor_id(), os.getpid(), ctx.get_node_id()

        def ping(self):
            return "pong"

    # A class's qualified name is Ray's class_name: make it the plain name (raycompat
    # shows a nested class by its name alone, README "Differences from Ray").
    StateProbe.__qualname__ = "StateProbe"
    return ray.remote(StateProbe)


def test_list_actors_shows_a_live_named_actor_with_rays_fields(ray, state):
    name = _unique("probe")
    actor = _probe_class(ray).options(name=name).remote()
    actor_id, pid, node_id = ray.get(actor.ids.remote())

    assert wait_until(lambda: len(state.list_actors(filters=[("name", "=", name)])) == 1, 30)
    (row,) = state.list_actors(filters=[("name", "=", name)])
    assert type(row).__name__ == "ActorState"
    assert (row.actor_id, row.class_name, row.state, row.name) == (actor_id, "StateProbe", "ALIVE", name)
    assert row["state"] == row.get("state") == "ALIVE"  # item access, as Ray's rows
    ctx = ray.get_runtime_context()
    assert (row.pid, row.node_id, row.ray_namespace, row.job_id) == (pid, node_id, ctx.namespace, ctx.get_job_id())
    assert row.death_cause is None and row.num_restarts is None  # detail columns: only with detail=True
    detailed = state.get_actor(actor_id)
    assert detailed.actor_id == actor_id and detailed.num_restarts == 0 and detailed.death_cause is None
    assert state.get_actor("f" * 32) is None


def test_a_killed_actor_is_listed_dead_with_rays_death_cause(ray, state):
    actor = _probe_class(ray).remote()
    actor_id, _, _ = ray.get(actor.ids.remote())
    ray.kill(actor)

    def dead():
        row = state.get_actor(actor_id)
        return row is not None and row.state == "DEAD"

    assert wait_until(dead, 30)
    cause = state.get_actor(actor_id).death_cause["actor_died_error_context"]
    assert cause["reason"] == "RAY_KILL"
    assert "killed by `ray.kill`" in cause["error_message"]
    assert actor_id not in {a.actor_id for a in state.list_actors(filters=[("state", "=", "ALIVE")])}


def test_filters_match_as_rays(ray, state):
    name = _unique("filtered")
    actor = _probe_class(ray).options(name=name).remote()
    ray.get(actor.ping.remote())
    assert wait_until(lambda: len(state.list_actors(filters=[("name", "=", name)])) == 1, 30)
    # String values match case-insensitively; filters are ANDed; != excludes.
    assert [a.name for a in state.list_actors(filters=[("name", "=", name.upper()), ("state", "=", "alive")])] == [name]
    assert name not in {a.name for a in state.list_actors(filters=[("name", "!=", name)])}
    assert state.list_actors(filters=[("name", "=", name), ("state", "=", "DEAD")]) == []
    with pytest.raises(ValueError, match="Unsupported filter predicate"):
        state.list_actors(filters=[("name", ">", name)])
    exception = __import__(f"{engine_module().__name__}.util.state.exception", fromlist=["x"])
    with pytest.raises(exception.RayStateApiException, match="not supported"):
        state.list_actors(filters=[("required_resources", "=", "x")])


def _read(path):
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return ""


def test_list_tasks_shows_a_running_task_then_its_end(ray, state, tmp_path):
    started, release = str(tmp_path / "started"), str(tmp_path / "release")

    @ray.remote
    def held(started, release):
        ctx = ray.get_runtime_context()
        with open(started + ".tmp", "w") as f:
            f.write(f"{ctx.get_task_id()} {os.getpid()} {ctx.get_node_id()}")
        os.replace(started + ".tmp", started)
        deadline = time.time() + 60
        while not os.path.exists(release) and time.time() < deadline:
            time.sleep(0.05)
        return 1

    name = _unique("held")
    ref = held.options(name=name).remote(started, release)
    assert wait_until(lambda: _read(started), 60)
    task_id, pid, node_id = _read(started).split()

    def task_row():
        rows = state.list_tasks(filters=[("task_id", "=", task_id)])
        return rows[0] if rows else None

    assert wait_until(lambda: (task_row() or {}).get("state") == "RUNNING", 30)
    row = task_row()
    assert type(row).__name__ == "TaskState"
    assert (row.name, row.func_or_class_name, row.type) == (name, "held", "NORMAL_TASK")
    assert (row.worker_pid, row.node_id, row.job_id) == (int(pid), node_id, ray.get_runtime_context().get_job_id())
    assert row.error_type is None and row.actor_id is None
    with open(release, "w"):
        pass
    assert ray.get(ref) == 1
    assert wait_until(lambda: task_row().state == "FINISHED", 30)
    assert [t.task_id for t in state.list_tasks(filters=[("name", "=", name)])] == [task_id]


@pytest.fixture
def failing(ray):
    @ray.remote
    def fails():
        raise ValueError("no")

    return fails


def test_a_failed_task_has_rays_error_type(ray, state, failing):
    name = _unique("fails")
    with pytest.raises(ValueError):
        ray.get(failing.options(name=name).remote())

    def failed():
        rows = state.list_tasks(filters=[("name", "=", name)])
        return rows and rows[0].state == "FAILED"

    assert wait_until(failed, 30)
    (row,) = state.list_tasks(filters=[("name", "=", name)], detail=True)
    assert row.error_type == "TASK_EXECUTION_EXCEPTION"
    assert "ValueError" in row.error_message


def test_actor_calls_and_creation_are_tasks_of_the_actor(ray, state):
    actor = _probe_class(ray).remote()
    actor_id, _, _ = ray.get(actor.ids.remote())
    ray.get(actor.ping.remote())

    def kinds():
        rows = state.list_tasks(filters=[("actor_id", "=", actor_id)])
        return {(r.type, r.func_or_class_name, r.state) for r in rows}

    want = {("ACTOR_CREATION_TASK", "StateProbe.__init__", "FINISHED"),
            ("ACTOR_TASK", "StateProbe.ping", "FINISHED"), ("ACTOR_TASK", "StateProbe.ids", "FINISHED")}
    assert wait_until(lambda: want <= kinds(), 30), kinds()


def test_summarize_tasks_counts_by_name(ray, state):
    @ray.remote
    def counted(x):
        return x

    name = _unique("counted")
    assert ray.get([counted.options(name=name).remote(i) for i in range(3)]) == [0, 1, 2]

    def summary():
        return state.summarize_tasks()["cluster"]["summary"].get(name)

    assert wait_until(lambda: (summary() or {}).get("state_counts", {}).get("FINISHED") == 3, 30), summary()
    assert summary()["type"] == "NORMAL_TASK"
    assert state.summarize_tasks()["cluster"]["total_tasks"] >= 3
    assert len(state.list_tasks(limit=1)) == 1


def test_list_nodes_shows_the_alive_head_node(ray, state):
    nodes = state.list_nodes()
    assert nodes and all(type(n).__name__ == "NodeState" for n in nodes)
    alive = [n for n in nodes if n.state == "ALIVE"]
    assert sum(n.is_head_node for n in alive) == 1
    assert {n.node_id for n in alive} == {n["NodeID"] for n in ray.nodes() if n["Alive"]}
    assert sum(n.resources_total.get("CPU", 0) for n in alive) == ray.cluster_resources()["CPU"]
    (head,) = [n for n in alive if n.is_head_node]
    assert head.labels == {"ray.io/node-id": head.node_id} and head.node_ip
    assert state.get_node(head.node_id).node_id == head.node_id
