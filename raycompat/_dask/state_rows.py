"""Ray's state rows (``ray.util.state``: actors, tasks, nodes) from the scheduler's state.

Ray's state API asks the GCS and the raylets; raycompat asks the Dask scheduler, where
these functions run (``Client.run_on_scheduler``). Each row is a dict with Ray's field
names (``ActorState``, ``TaskState``, ``NodeState``). What maps to what:

- **a task** is a Dask task running ``worker_task.run_task`` (its ``TaskSpec`` gives
  the name, function, job and resources): ``released``/``waiting`` is Ray's
  ``PENDING_ARGS_AVAIL``; ``queued``/``no-worker``, or assigned to a worker that has
  not started it, ``PENDING_NODE_ASSIGNMENT``; executing on its worker (as of the
  worker's last heartbeat), ``RUNNING``; ``memory`` ``FINISHED``; ``erred``
  ``FAILED``. Tasks Dask has forgotten come from the record of ``task_events.py``.
  ``task_id`` is what ``get_runtime_context().get_task_id()`` says inside the task;
- **an actor call** (``ACTOR_TASK``) is listed once it ended, from the shells' reports
  (``state_plugin.py``), as ``FINISHED``; **an actor's creation** is an
  ``ACTOR_CREATION_TASK`` named ``Class.__init__`` (``name:Class.__init__`` for a named
  actor), as Ray lists it;
- **an actor** is a record of ``state_plugin.py``: ``ALIVE`` while its key is in memory,
  ``RESTARTING`` while ``restarts.py`` restarts it, ``DEAD`` once its key is gone (out
  of scope, or its worker died); ``ray.kill`` and ``exit_actor`` are seen on the
  actor's worker (``shell_states``, asked by the caller, ``util/state/api.py``);
- **a node** is a host (as in ``cluster_info.py``): alive while a worker runs there,
  ``DEAD`` once its last worker left; the scheduler's host is the head node.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict

from distributed.comm import get_address_host

from raycompat._dask import restarts, state_filters, state_plugin
from raycompat._dask.actor_host import is_host
from raycompat._dask.cluster_info import _host_resources
from raycompat._dask.driver import node_id_of_host
from raycompat._dask.serialization import inflate
from raycompat._dask.task_events import NAME as TASK_EVENTS, task_spec

#: Ray's words for why an actor died (``ActorDiedErrorContext``).
DEATH_MESSAGES = {
    "OUT_OF_SCOPE": "The actor is dead because all references to the actor were removed.",
    "RAY_KILL": "The actor is dead because it was killed by `ray.kill`.",
    "WORKER_DIED": "The actor is dead because its worker process has died.",
    "NODE_DIED": "The actor is dead because its node has died.",
}

#: An error's class (the start of Dask's ``exception_text``) -> Ray's ``error_type``.
ERROR_TYPES = (
    ("TaskCancelledError", "TASK_CANCELLED"),
    ("WorkerCrashedError", "WORKER_DIED"),
    ("KilledWorker", "WORKER_DIED"),
    ("OutOfMemoryError", "OUT_OF_MEMORY"),
    ("TaskUnschedulableError", "TASK_UNSCHEDULABLE_ERROR"),
    ("RuntimeEnvSetupError", "RUNTIME_ENV_SETUP_FAILED"),
    ("NodeDiedError", "NODE_DIED"),
    ("ObjectLostError", "OBJECT_LOST"),
    ("OwnerDiedError", "OWNER_DIED"),
    ("ActorDiedError", "ACTOR_DIED"),
)

PENDING_STATES = ("PENDING_ARGS_AVAIL", "PENDING_NODE_ASSIGNMENT")


def task_id_of(key) -> str:
    """As ``RuntimeContext.get_task_id()`` inside the task."""
    return hashlib.blake2b(str(key).encode(), digest_size=24).hexdigest()


def worker_id_of(address: str) -> str:
    """As ``RuntimeContext.get_worker_id()`` inside a task on that worker."""
    return hashlib.blake2b(address.encode(), digest_size=28).hexdigest()


def error_type(text: str) -> str:
    for prefix, kind in ERROR_TYPES:
        if text.startswith(prefix):
            return kind
    return "TASK_EXECUTION_EXCEPTION"


def _host(scheduler, address):
    if not address:
        return None
    ws = scheduler.workers.get(address)
    if ws is not None:
        return ws.host
    try:
        return get_address_host(address)
    except Exception:  # noqa: BLE001 - not an address
        return None


def _node(host):
    return node_id_of_host(host) if host else None


# ---------------------------------------------------------------------------- tasks


def running_state(ts) -> str:
    """Ray's state of a live raycompat task."""
    state = ts.state
    if state == "processing":
        ws = ts.processing_on
        if ws is not None and (ts in ws.executing or ts in ws.long_running):
            return "RUNNING"
        return "PENDING_NODE_ASSIGNMENT"
    if state == "memory":
        return "FINISHED"
    if state == "erred":
        return "FAILED"
    if state in ("no-worker", "queued"):
        return "PENDING_NODE_ASSIGNMENT"
    return "PENDING_ARGS_AVAIL"


def _task_row(key, name, function_name, job_id, state, worker, pid, host, request,
              start=None, stop=None, error=None, actor_id=None, kind="NORMAL_TASK", func=None) -> dict:
    return {
        "task_id": task_id_of(key),
        "attempt_number": 0,
        "name": name,
        "state": state,
        "job_id": job_id,
        "actor_id": actor_id,
        "type": kind,
        "func_or_class_name": func or str(function_name or name).rsplit(".", 1)[-1],
        "parent_task_id": None,
        "node_id": _node(host),
        "worker_id": worker_id_of(worker) if worker else None,
        "worker_pid": pid,
        "error_type": error_type(error) if error else None,
        "language": "PYTHON",
        "required_resources": dict(request or {}),
        "runtime_env_info": None,
        "placement_group_id": None,
        "events": None,
        "profiling_data": None,
        "creation_time_ms": None,
        "start_time_ms": int(start * 1000) if start else None,
        "end_time_ms": int(stop * 1000) if stop else None,
        "task_log_info": None,
        "error_message": error,
        "is_debugger_paused": None,
        "call_site": None,
        "label_selector": {},
        "fallback_strategy": None,
    }


def _error_text(ts):
    text = ts.exception_text
    if not text and ts.exception_blame is not None:
        text = ts.exception_blame.exception_text
    return text or "error"


def task_rows(scheduler) -> list:
    rows: dict = {}
    plugin = scheduler.plugins.get(TASK_EVENTS)
    for key, worker, _thread, start, stop, status, *rest in (plugin.events if plugin is not None else ()):
        about = rest[0] if rest else None
        if about is None:
            continue  # not a raycompat task
        name, function_name, job_id, pid, error = about
        rows[key] = _task_row(key, name, inflate(function_name), job_id,
                              "FINISHED" if status == "OK" else "FAILED", worker, pid,
                              _host(scheduler, worker), None, start, stop, error)
    for key, ts in scheduler.tasks.items():
        spec = task_spec(ts)
        if spec is None:
            continue
        state = running_state(ts)
        worker = ts.processing_on.address if ts.processing_on is not None else None
        if worker is None and ts.who_has:
            worker = next(iter(ts.who_has)).address
        if state in PENDING_STATES:
            worker = None  # Ray: no node until it runs (a Dask worker may hold it queued)
        ws = scheduler.workers.get(worker) if worker else None
        old = rows.get(key)
        row = _task_row(key, spec.name, inflate(spec.function_name), spec.job_id, state, worker,
                        ws.pid if ws is not None else (old or {}).get("worker_pid"),
                        _host(scheduler, worker), spec.request,
                        error=_error_text(ts) if state == "FAILED" else None)
        if old is not None:
            row["start_time_ms"], row["end_time_ms"] = old["start_time_ms"], old["end_time_ms"]
        rows[key] = row
    state = scheduler.plugins.get(state_plugin.NAME)
    if state is not None:
        for i, (name, start, stop, actor_id, worker, pid) in enumerate(state.calls):
            key = f"{actor_id}/{name}/{start!r}/{i}"
            rows[key] = _task_row(key, name, name, None, "FINISHED", worker, pid, _host(scheduler, worker),
                                  None, start, stop, actor_id=actor_id, kind="ACTOR_TASK", func=name)
        jobs = {a["actor_id"]: a["job_id"] for a in actor_rows(scheduler)}
        for key, row in list(rows.items()):
            if row["type"] == "ACTOR_TASK":
                row["job_id"] = jobs.get(row["actor_id"])
        for rec in state.actors.values():
            rows[("creation", rec["actor_id"], rec["key"])] = _creation_row(scheduler, rec)
    return list(rows.values())


def _creation_row(scheduler, rec) -> dict:
    init = f"{rec['class_name']}.__init__"
    death = rec.get("death") or {}
    failed = death.get("reason") == "CREATION_TASK_FAILED"
    state = ("FAILED" if failed else "PENDING_NODE_ASSIGNMENT" if rec["state"] == "PENDING_CREATION"
             else "FINISHED")
    error = (death.get("error_message") or "error") if failed else None
    return _task_row(rec["key"] or rec["actor_id"], f"{rec['name']}:{init}" if rec["name"] else init, init,
                     rec["job_id"], state, rec["worker"], rec["pid"], _host(scheduler, rec["worker"]),
                     rec["placement_request"], rec["start_time"], None, error,
                     actor_id=rec["actor_id"], kind="ACTOR_CREATION_TASK", func=init)


# ---------------------------------------------------------------------------- actors


def _refresh(scheduler, plugin, rec, restarting) -> None:
    """Decide whether a recorded actor still lives (see the module docstring)."""
    if rec["state"] == "DEAD":
        return
    ts = scheduler.tasks.get(rec["key"]) if rec["key"] is not None else None
    if ts is not None and ts.state == "memory":
        rec["state"] = "ALIVE"
        return
    if rec["state"] == "PENDING_CREATION" and ts is not None and ts.state not in ("erred", "forgotten"):
        return
    if rec["actor_id"] in restarting:
        rec["state"] = "RESTARTING"
        return
    worker = rec["worker"]
    if worker is not None and worker not in scheduler.workers:
        host = _host(scheduler, worker)
        alive_hosts = {ws.host for ws in scheduler.workers.values()}
        reason = "WORKER_DIED" if host in alive_hosts else "NODE_DIED"
    else:
        reason = "OUT_OF_SCOPE"
    plugin.mark_dead(rec, {"reason": reason})


def death_cause(rec) -> dict | None:
    """Ray's ``death_cause`` of a dead actor's record."""
    death = rec.get("death")
    if rec["state"] != "DEAD" or death is None:
        return None
    reason = death.get("reason", "WORKER_DIED")
    if reason == "CREATION_TASK_FAILED":
        return {"creation_task_failure_context": {"formatted_exception_string": death.get("error_message", "")}}
    return {
        "actor_died_error_context": {
            "error_message": death.get("error_message") or DEATH_MESSAGES.get(reason, ""),
            "pid": rec["pid"] or 0,
            "ray_namespace": rec["namespace"],
            "class_name": rec["class_name"],
            "actor_id": rec["actor_id"],
            "reason": reason,
            "name": rec["name"] or "",
            "never_started": rec["pid"] is None,
        }
    }


def _actor_row(scheduler, rec) -> dict:
    host = _host(scheduler, rec["worker"])
    return {
        "actor_id": rec["actor_id"],
        "class_name": rec["class_name"],
        "state": rec["state"],
        "job_id": rec["job_id"],
        "name": rec["name"] or "",
        "node_id": _node(host),
        "pid": rec["pid"] or 0,
        "ray_namespace": rec["namespace"],
        "serialized_runtime_env": "{}",
        "required_resources": dict(rec["lifetime_request"] or {}),
        "death_cause": death_cause(rec),
        "is_detached": None,
        "placement_group_id": None,
        "repr_name": "",
        "num_restarts": rec["num_restarts"],
        "num_restarts_due_to_lineage_reconstruction": 0,
        "num_restarts_due_to_node_preemption": 0,
        "call_site": None,
        "label_selector": {},
        "fallback_strategy": None,
        # The caller drops the fields whose name starts with "_" (not Ray's).
        "_worker": rec["worker"] if rec["state"] == "ALIVE" else None,
        "_placement": dict(rec.get("placement_request") or {}),
    }


def actor_rows(scheduler) -> list:
    plugin = scheduler.plugins.get(state_plugin.NAME)
    if plugin is None:
        return []
    restarting = restarts._registry(scheduler)
    for rec in list(plugin.actors.values()):
        _refresh(scheduler, plugin, rec, restarting)
    rows = [_actor_row(scheduler, rec) for rec in plugin.actors.values()]
    known = set(plugin.actors)
    for ts in scheduler.tasks.values():  # Dask actors still waiting for a worker
        if ts.actor and ts.state in ("released", "waiting", "no-worker", "queued"):
            meta = state_plugin.actor_meta(ts)
            if meta is not None and meta["actor_id"] not in known:
                rec = {**state_plugin.actor_fields(meta), "state": "PENDING_CREATION", "key": ts.key,
                       "worker": None, "pid": None, "num_restarts": 0, "death": None}
                rows.append(_actor_row(scheduler, rec))
    return rows


def mark_dead_remote(dask_scheduler, actor_id: str, death: dict) -> bool:
    """What an actor's worker said (``ray.kill``, ``exit_actor``): it is dead for good."""
    plugin = dask_scheduler.plugins.get(state_plugin.NAME)
    rec = plugin.actors.get(actor_id) if plugin is not None else None
    if rec is None:
        return False
    plugin.mark_dead(rec, death)
    return True


def shell_states(dask_worker) -> dict:
    """On a worker: ``{actor_id: None, or (error text, init failed)}`` of its actors'
    shells (``actor_shell.Shell.dead``: set by ``ray.kill``, ``exit_actor`` or a
    constructor that raised, while the actor's key may still be held)."""
    out = {}
    for shell in list(dask_worker.state.actors.values()):
        actor_id = getattr(shell, "actor_id", None)
        if actor_id is None or not hasattr(shell, "dead"):
            continue
        dead = shell.dead
        out[actor_id] = None if dead is None else (str(dead), bool(getattr(dead, "actor_init_failed", False)))
    return out


# ---------------------------------------------------------------------------- nodes


def host_workers(scheduler) -> dict:
    """host -> the ``scheduler_info()``-style dicts of its task workers (no actor hosts)."""
    hosts = defaultdict(list)
    for addr, ws in scheduler.workers.items():
        info = {"nthreads": ws.nthreads, "memory_limit": ws.memory_limit, "resources": dict(ws.resources),
                "name": ws.name, "host": ws.host, "address": addr}
        hosts[ws.host].append(info)
    return {h: [w for w in ws if not is_host(w["name"])] for h, ws in hosts.items()}


def node_resources(scheduler, host: str, workers: list) -> dict:
    plugin = scheduler.plugins.get(state_plugin.NAME)
    totals = plugin.node_totals.get(host) if plugin is not None else None
    if not workers and totals is None:
        return {}
    resources = _host_resources(workers, totals)
    resources[f"node:{host}"] = 1.0
    return resources


def node_rows(scheduler) -> list:
    plugin = scheduler.plugins.get(state_plugin.NAME)
    head = get_address_host(scheduler.address)
    alive = host_workers(scheduler)
    history = plugin.hosts if plugin is not None else {}
    rows = []
    for host in sorted(set(alive) | set(history) | {head}):
        seen = history.get(host, {})
        is_alive = host in alive or host == head
        node_id = node_id_of_host(host)
        start, end = seen.get("start"), seen.get("end")
        rows.append({
            "node_id": node_id,
            "node_ip": host,
            "is_head_node": host == head,
            "state": "ALIVE" if is_alive else "DEAD",
            "state_message": None,
            "node_name": host,
            "resources_total": node_resources(scheduler, host, alive.get(host, [])),
            "labels": {"ray.io/node-id": node_id},
            "start_time_ms": int(start * 1000) if start else None,
            "end_time_ms": int(end * 1000) if end and not is_alive else None,
        })
    return rows


# ---------------------------------------------------------------------------- entry points


ROWS = {"actors": actor_rows, "tasks": task_rows, "nodes": node_rows}


def list_remote(dask_scheduler, resource: str, filters=None, limit=None, filterable=(), types=None,
                id_column=None) -> dict:
    """The rows of ``resource``; filtered, sorted and cut to ``limit`` here when
    ``id_column`` is given (tasks: there may be many), else all of them."""
    rows = ROWS[resource](dask_scheduler)
    total = len(rows)
    if id_column is None:
        return {"total": total, "rows": rows}
    try:
        kept, matched = state_filters.apply(rows, filters, set(filterable), types or {}, id_column, limit)
    except ValueError as e:
        return {"error": str(e)}
    return {"total": total, "num_filtered": matched, "rows": kept}


def summarize_tasks_remote(dask_scheduler) -> dict:
    """Ray's ``TaskSummaries`` by function name (``summarize_tasks``), as a dict."""
    summary: dict = {}
    totals = {"NORMAL_TASK": 0, "ACTOR_TASK": 0, "ACTOR_CREATION_TASK": 0}
    for row in task_rows(dask_scheduler):
        key = row["name"] or row["func_or_class_name"]
        entry = summary.setdefault(key, {"func_or_class_name": key, "type": row["type"], "state_counts": {}})
        entry["state_counts"][row["state"]] = entry["state_counts"].get(row["state"], 0) + 1
        totals[row["type"]] = totals.get(row["type"], 0) + 1
    return {
        "summary": summary,
        "total_tasks": totals["NORMAL_TASK"],
        "total_actor_tasks": totals["ACTOR_TASK"],
        "total_actor_scheduled": totals["ACTOR_CREATION_TASK"],
        "summary_by": "func_name",
    }
