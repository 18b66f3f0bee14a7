"""What ``ray status`` reports, from the scheduler's state (``raycompat status``).

Ray's ``ray status`` prints the live nodes, each resource's usage over its total
(``Total Usage``) and the resource requests that wait (``Pending Demands``). Here, on
the scheduler: the nodes are ``state_rows.node_rows``; a resource is *used* by the
raycompat tasks executing on a worker (as of its last heartbeat; a task blocked in
``get``/``wait`` has given its CPUs back, as on Ray) and held by live actors (what they
asked for explicitly, as Ray's actors hold); ``object_store_memory`` used is the data
the workers hold; a *demand* is a task placed on no worker yet, or queued behind others
on its worker, or an actor not yet created. raycompat adds the running and pending
tasks by name and the live actors by class, which Ray's command leaves to
``ray summary``/``ray list``.
"""

from __future__ import annotations

from collections import Counter, defaultdict

from raycompat._dask import state_rows
from raycompat._dask.task_events import task_spec


def _add(into: dict, request: dict, skip_cpu: bool = False) -> None:
    for name, amount in (request or {}).items():
        if not (skip_cpu and name == "CPU"):
            into[name] += float(amount)


def status_remote(dask_scheduler) -> dict:
    nodes = [n for n in state_rows.node_rows(dask_scheduler) if n["state"] == "ALIVE"]
    total: dict = defaultdict(float)
    for node in nodes:
        for name, amount in node["resources_total"].items():
            total[name] += amount
    used: dict = defaultdict(float)
    running, pending = Counter(), Counter()
    demands: Counter = Counter()
    for ts in dask_scheduler.tasks.values():
        spec = task_spec(ts)
        if spec is None:
            continue
        state = state_rows.running_state(ts)
        if state == "RUNNING":
            running[spec.name] += 1
            ws = ts.processing_on
            blocked = ts in ws.long_running and (spec.request or {}).get("CPU", 0.0) >= 1.0
            _add(used, spec.request, skip_cpu=blocked)
        elif state in state_rows.PENDING_STATES:
            pending[spec.name] += 1
            if state == "PENDING_NODE_ASSIGNMENT" and spec.request:
                demands[tuple(sorted(spec.request.items()))] += 1
    actors = Counter()
    for row in state_rows.actor_rows(dask_scheduler):
        if row["state"] == "ALIVE":
            actors[row["class_name"]] += 1
            _add(used, row["required_resources"])
        elif row["state"] == "PENDING_CREATION":
            if row["_placement"]:
                demands[tuple(sorted(row["_placement"].items()))] += 1
    used["object_store_memory"] = float(sum(ws.nbytes for ws in dask_scheduler.workers.values()))
    return {
        "nodes": [n["node_id"] for n in nodes],
        "usage": {name: (min(used.get(name, 0.0), amount), amount) for name, amount in total.items()},
        "demands": [(dict(request), count) for request, count in demands.items()],
        "running": dict(running),
        "pending": dict(pending),
        "actors": dict(actors),
    }
