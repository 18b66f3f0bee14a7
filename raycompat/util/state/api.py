"""``ray.util.state``: list and summarize the cluster's actors, tasks and nodes.

Ray's state API asks its dashboard's HTTP server, which asks the GCS and the raylets.
raycompat asks the Dask scheduler (``_dask/state_rows.py`` runs there) over the
session's client, or, without a session, over a short-lived client to ``address``
(else ``RAY_ADDRESS``, else the cluster ``raycompat start`` last started on this
machine), as Ray's functions do. Tasks are filtered and cut to ``limit`` on the
scheduler; actors after their workers said which of them ``ray.kill`` or
``exit_actor`` ended.
"""

from __future__ import annotations

import contextlib
import warnings
from typing import List, Optional, Tuple

import distributed

from raycompat._dask import driver, local_clusters, state_filters, state_rows
from raycompat.util.state.common import (
    DEFAULT_LIMIT,
    DEFAULT_RPC_TIMEOUT,
    ActorState,
    NodeState,
    StateSchema,
    TaskState,
)
from raycompat.util.state.exception import RayStateApiException, ServerUnavailable

SCHEMAS = {"actors": (ActorState, "actor_id"), "tasks": (TaskState, "task_id"), "nodes": (NodeState, "node_id")}


@contextlib.contextmanager
def connect(address: Optional[str] = None, timeout: float = DEFAULT_RPC_TIMEOUT):
    """The client to ask: the session's (or, in a task, the worker's) when ``address``
    is None and there is one, else a new one to the address found as Ray finds it."""
    if address is None and (driver.current_session(auto_init=False) is not None or driver.in_worker()):
        yield driver.client()
        return
    target = local_clusters.find_address(address)
    try:
        client = distributed.Client(target, timeout=timeout, set_as_default=False)
    except (OSError, TimeoutError) as e:
        raise ServerUnavailable(f"Failed to connect to the Dask scheduler at {target}: {e}") from None
    try:
        yield client
    finally:
        client.close()


def _has_conflicting_filters(filters) -> bool:
    """Ray's check: two ``=`` filters on one column with different values match nothing."""
    equal: dict = {}
    for column, predicate, value in filters:
        if predicate != "=":
            continue
        if column in equal and equal[column] != value:
            warnings.warn(
                f"There are multiple '=' filters with the same key '{column}' but different values"
                f"'{equal[column]}' & '{value}'. Empty result set will be returned",
                UserWarning,
            )
            return True
        equal.setdefault(column, value)
    return False


def _refine_actors(client, rows: list) -> None:
    """Ask the workers of the live actors whether ``ray.kill`` or ``exit_actor`` ended
    them (their keys are still held while handles exist); record those deaths."""
    workers = sorted({r["_worker"] for r in rows if r.get("_worker")})
    if not workers:
        return
    replies = client.run(state_rows.shell_states, workers=workers, on_error="return")
    dead = {}
    for reply in replies.values():
        if isinstance(reply, dict):
            dead.update({a: d for a, d in reply.items() if d is not None})
    for row in rows:
        found = dead.get(row["actor_id"])
        if found is None or row["state"] != "ALIVE":
            continue
        text, init_failed = found
        if init_failed:
            death = {"reason": "CREATION_TASK_FAILED", "error_message": text}
        elif "ray.kill" in text:
            death = {"reason": "RAY_KILL"}
        else:  # exit_actor / __ray_terminate__
            death = {"reason": "WORKER_DIED", "error_message": text.splitlines()[-1]}
        client.run_on_scheduler(state_rows.mark_dead_remote, actor_id=row["actor_id"], death=death)
        rec = {"state": "DEAD", "death": death, "pid": row["pid"], "namespace": row["ray_namespace"],
               "class_name": row["class_name"], "actor_id": row["actor_id"], "name": row["name"]}
        row["state"], row["death_cause"] = "DEAD", state_rows.death_cause(rec)


def query(resource: str, address=None, filters=None, limit=DEFAULT_LIMIT, timeout=DEFAULT_RPC_TIMEOUT,
          detail: bool = False) -> list:
    """Rows (dicts with Ray's field names) of ``resource``, filtered, sorted by id, cut
    to ``limit``; every column, detail ones included (``from_row`` drops those)."""
    filters = state_filters.check_predicates(filters)
    if _has_conflicting_filters(filters):
        return []
    schema, id_column = SCHEMAS[resource]
    filterable, types = schema.filterable_columns(), schema.column_types()
    with connect(address, timeout) as client:
        if resource == "tasks":  # maybe 100,000 of them: filtered where they are
            reply = client.run_on_scheduler(state_rows.list_remote, resource=resource, filters=filters,
                                            limit=limit, filterable=sorted(filterable), types=types,
                                            id_column=id_column)
            if "error" in reply:
                raise RayStateApiException(f"API server internal error. Error: {reply['error']}")
            return reply["rows"]
        rows = client.run_on_scheduler(state_rows.list_remote, resource=resource)["rows"]
        if resource == "actors":
            _refine_actors(client, rows)
    try:
        kept, _ = state_filters.apply(rows, filters, filterable, types, id_column, limit)
    except ValueError as e:
        raise RayStateApiException(f"API server internal error. Error: {e}") from None
    return kept


def _list(resource: str, address, filters, limit, timeout, detail) -> List[StateSchema]:
    schema, _ = SCHEMAS[resource]
    return [schema.from_row(r, detail) for r in query(resource, address, filters, limit, timeout, detail)]


Filters = Optional[List[Tuple[str, str, object]]]


def list_actors(address: Optional[str] = None, filters: Filters = None, limit: int = DEFAULT_LIMIT,
                timeout: int = DEFAULT_RPC_TIMEOUT, detail: bool = False, raise_on_missing_output: bool = True,
                _explain: bool = False) -> List[ActorState]:
    """The cluster's actors (alive, being created or restarting, and dead ones)."""
    return _list("actors", address, filters, limit, timeout, detail)


def list_tasks(address: Optional[str] = None, filters: Filters = None, limit: int = DEFAULT_LIMIT,
               timeout: int = DEFAULT_RPC_TIMEOUT, detail: bool = False, raise_on_missing_output: bool = True,
               _explain: bool = False) -> List[TaskState]:
    """The cluster's tasks: pending, running, and the last 100,000 that ended."""
    return _list("tasks", address, filters, limit, timeout, detail)


def list_nodes(address: Optional[str] = None, filters: Filters = None, limit: int = DEFAULT_LIMIT,
               timeout: int = DEFAULT_RPC_TIMEOUT, detail: bool = False, raise_on_missing_output: bool = True,
               _explain: bool = False) -> List[NodeState]:
    """The cluster's nodes (hosts with Dask workers, and those whose workers left)."""
    return _list("nodes", address, filters, limit, timeout, detail)


def get_one(resource: str, id: str, address, timeout):
    schema, id_column = SCHEMAS[resource]
    rows = query(resource, address, [(id_column, "=", id)], None, timeout, detail=True)
    found = [schema.from_row(r, True) for r in rows]
    if not found:
        return None
    return found[0] if len(found) == 1 else found


def get_actor(id: str, address: Optional[str] = None, timeout: int = DEFAULT_RPC_TIMEOUT,
              _explain: bool = False) -> Optional[ActorState]:
    """The actor ``id`` (detail columns filled), or None."""
    return get_one("actors", id, address, timeout)


def get_task(id: str, address: Optional[str] = None, timeout: int = DEFAULT_RPC_TIMEOUT,
             _explain: bool = False):
    """The task ``id`` (detail columns filled), or None."""
    return get_one("tasks", id, address, timeout)


def get_node(id: str, address: Optional[str] = None, timeout: int = DEFAULT_RPC_TIMEOUT,
             _explain: bool = False) -> Optional[NodeState]:
    """The node ``id`` (detail columns filled), or None."""
    return get_one("nodes", id, address, timeout)


def summarize_tasks(address: Optional[str] = None, timeout: int = DEFAULT_RPC_TIMEOUT,
                    raise_on_missing_output: bool = True, _explain: bool = False) -> dict:
    """Ray's ``TaskSummaries`` by function name, as a dict under the key ``"cluster"``."""
    with connect(address, timeout) as client:
        return {"cluster": client.run_on_scheduler(state_rows.summarize_tasks_remote)}


def summarize_actors(address: Optional[str] = None, timeout: int = DEFAULT_RPC_TIMEOUT,
                     raise_on_missing_output: bool = True, _explain: bool = False) -> dict:
    """Ray's ``ActorSummaries`` by class, as a dict under the key ``"cluster"``."""
    rows = query("actors", address, None, None, timeout)
    summary: dict = {}
    for row in rows:
        entry = summary.setdefault(row["class_name"], {"class_name": row["class_name"], "state_counts": {}})
        entry["state_counts"][row["state"]] = entry["state_counts"].get(row["state"], 0) + 1
    return {"cluster": {"summary": summary, "total_actors": len(rows), "summary_by": "class"}}
