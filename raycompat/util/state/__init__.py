"""``ray.util.state``: Ray's state API (actors, tasks, nodes) over the Dask scheduler."""

from raycompat.util.state.api import (
    get_actor,
    get_node,
    get_task,
    list_actors,
    list_nodes,
    list_tasks,
    summarize_actors,
    summarize_tasks,
)

__all__ = [
    "get_actor",
    "get_node",
    "get_task",
    "list_actors",
    "list_nodes",
    "list_tasks",
    "summarize_actors",
    "summarize_tasks",
]
