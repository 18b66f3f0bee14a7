"""``ray.util.state.common``: the rows Ray's state API returns, field for field.

Ray returns dataclasses (``ActorState``, ``TaskState``, ``NodeState``) that also read like
dicts (``row["state"]``, ``row.get(...)``); columns marked *detail* are None unless
``detail=True``, and only the columns marked *filterable* take filters. The same here,
with Ray 2.60's columns in Ray's order (its table headers follow it).
"""

from __future__ import annotations

import datetime
from dataclasses import asdict, dataclass, field, fields
from typing import List, Optional

DEFAULT_RPC_TIMEOUT = 30
DEFAULT_LIMIT = 100
#: Ray's ``TaskSummaries`` key for tasks its driver submitted.
DRIVER_TASK_ID_PREFIX = "ffffffffffffffffffffffffffffffffffffffff"


class Humanify:
    """Ray's formatting of some columns for the CLI's tables."""

    @staticmethod
    def timestamp(x: float):
        return str(datetime.datetime.fromtimestamp(x / 1000))

    @staticmethod
    def memory(x: int):
        if x >= 2**30:
            return str(format(x / (2**30), ".3f")) + " GiB"
        elif x >= 2**20:
            return str(format(x / (2**20), ".3f")) + " MiB"
        elif x >= 2**10:
            return str(format(x / (2**10), ".3f")) + " KiB"
        return str(format(x, ".3f")) + " B"

    @staticmethod
    def node_resources(resources: dict):
        for resource in resources:
            if "memory" in resource:
                resources[resource] = Humanify.memory(resources[resource])
        return resources


def state_column(*, filterable: bool, detail: bool = False, format_fn=None, **kwargs):
    """A dataclass field that says whether it takes filters and is a detail column."""
    metadata = {"detail": detail, "filterable": filterable, "format_fn": format_fn}
    if detail and "default" not in kwargs:
        kwargs["default"] = None
    return field(metadata=metadata, **kwargs)


class StateSchema:
    """Ray's base of the state rows: attribute and item access, and the columns."""

    @classmethod
    def list_columns(cls, detail: bool = True) -> List[str]:
        return [f.name for f in fields(cls) if detail or not f.metadata.get("detail", False)]

    @classmethod
    def columns(cls) -> set:
        return set(cls.list_columns(detail=True))

    @classmethod
    def filterable_columns(cls) -> set:
        return {f.name for f in fields(cls) if f.metadata.get("filterable", False)}

    @classmethod
    def base_columns(cls) -> set:
        return set(cls.list_columns(detail=False))

    @classmethod
    def detail_columns(cls) -> set:
        return set(cls.list_columns(detail=True))

    @classmethod
    def column_types(cls) -> dict:
        """Column -> "int"/"bool"/"str", to convert string filter values as Ray does."""
        out = {}
        for f in fields(cls):
            kind = str(f.type)
            out[f.name] = "bool" if "bool" in kind else "int" if "int" in kind else "str"
        return out

    @classmethod
    def humanify(cls, state: dict) -> dict:
        for f in fields(cls):
            fn = f.metadata.get("format_fn")
            if fn is not None and state.get(f.name) is not None:
                state[f.name] = fn(state[f.name])
        return state

    @classmethod
    def from_row(cls, row: dict, detail: bool):
        """A row from the scheduler (``state_rows.py``); detail columns None unless asked."""
        shown = cls.list_columns(detail=detail)
        return cls(**{name: row.get(name) for name in shown})

    def asdict(self):
        return asdict(self)

    def __getitem__(self, key):
        return getattr(self, key)

    def __setitem__(self, key, value):
        setattr(self, key, value)

    def get(self, key, default=None):
        return getattr(self, key, default)


@dataclass
class ActorState(StateSchema):
    """Actor State"""

    actor_id: str = state_column(filterable=True)
    class_name: str = state_column(filterable=True)
    #: DEPENDENCIES_UNREADY, PENDING_CREATION, ALIVE, RESTARTING or DEAD.
    state: str = state_column(filterable=True)
    job_id: str = state_column(filterable=True)
    name: Optional[str] = state_column(filterable=True)
    node_id: Optional[str] = state_column(filterable=True)
    pid: Optional[int] = state_column(filterable=True)
    ray_namespace: Optional[str] = state_column(filterable=True)
    serialized_runtime_env: Optional[str] = state_column(filterable=False, detail=True)
    required_resources: Optional[dict] = state_column(filterable=False, detail=True)
    death_cause: Optional[dict] = state_column(filterable=False, detail=True)
    is_detached: Optional[bool] = state_column(filterable=False, detail=True)
    placement_group_id: Optional[str] = state_column(detail=True, filterable=True)
    repr_name: Optional[str] = state_column(detail=True, filterable=True)
    num_restarts: int = state_column(filterable=False, detail=True)
    num_restarts_due_to_lineage_reconstruction: int = state_column(filterable=False, detail=True)
    num_restarts_due_to_node_preemption: int = state_column(filterable=False, detail=True)
    call_site: Optional[str] = state_column(detail=True, filterable=False)
    label_selector: Optional[dict] = state_column(detail=True, filterable=False)
    fallback_strategy: Optional[dict] = state_column(detail=True, filterable=False)


@dataclass
class NodeState(StateSchema):
    """Node State"""

    node_id: str = state_column(filterable=True)
    node_ip: str = state_column(filterable=True)
    is_head_node: bool = state_column(filterable=True)
    #: ALIVE or DEAD.
    state: str = state_column(filterable=True)
    state_message: Optional[str] = state_column(filterable=False)
    node_name: str = state_column(filterable=True)
    resources_total: dict = state_column(filterable=False, format_fn=Humanify.node_resources)
    labels: dict = state_column(filterable=False)
    start_time_ms: Optional[int] = state_column(filterable=False, detail=True, format_fn=Humanify.timestamp)
    end_time_ms: Optional[int] = state_column(filterable=False, detail=True, format_fn=Humanify.timestamp)


@dataclass
class TaskState(StateSchema):
    """Task State"""

    task_id: str = state_column(filterable=True)
    attempt_number: int = state_column(filterable=True)
    name: str = state_column(filterable=True)
    #: PENDING_ARGS_AVAIL, PENDING_NODE_ASSIGNMENT, RUNNING, FINISHED, FAILED, ...
    state: str = state_column(filterable=True)
    job_id: str = state_column(filterable=True)
    actor_id: Optional[str] = state_column(filterable=True)
    #: NORMAL_TASK, ACTOR_CREATION_TASK or ACTOR_TASK.
    type: str = state_column(filterable=True)
    func_or_class_name: str = state_column(filterable=True)
    parent_task_id: str = state_column(filterable=True)
    node_id: Optional[str] = state_column(filterable=True)
    worker_id: Optional[str] = state_column(filterable=True)
    worker_pid: Optional[int] = state_column(filterable=True)
    error_type: Optional[str] = state_column(filterable=True)
    language: Optional[str] = state_column(detail=True, filterable=True)
    required_resources: Optional[dict] = state_column(detail=True, filterable=False)
    runtime_env_info: Optional[dict] = state_column(detail=True, filterable=False)
    placement_group_id: Optional[str] = state_column(detail=True, filterable=True)
    events: Optional[List[dict]] = state_column(detail=True, filterable=False)
    profiling_data: Optional[dict] = state_column(detail=True, filterable=False)
    creation_time_ms: Optional[int] = state_column(detail=True, filterable=False, format_fn=Humanify.timestamp)
    start_time_ms: Optional[int] = state_column(detail=True, filterable=False, format_fn=Humanify.timestamp)
    end_time_ms: Optional[int] = state_column(detail=True, filterable=False, format_fn=Humanify.timestamp)
    task_log_info: Optional[dict] = state_column(detail=True, filterable=False)
    error_message: Optional[str] = state_column(detail=True, filterable=False)
    is_debugger_paused: Optional[bool] = state_column(detail=True, filterable=True)
    call_site: Optional[str] = state_column(detail=True, filterable=False)
    label_selector: Optional[dict] = state_column(detail=True, filterable=False)
    fallback_strategy: Optional[dict] = state_column(detail=True, filterable=False)


__all__ = ["ActorState", "DEFAULT_LIMIT", "DEFAULT_RPC_TIMEOUT", "Humanify", "NodeState", "StateSchema",
           "TaskState", "state_column"]
