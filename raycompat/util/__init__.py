"""``ray.util``: helpers Ray programs import."""

from __future__ import annotations

import socket

from raycompat._dask import actor_api as _actor_api
from raycompat.util.check_serialize import inspect_serializability
from raycompat.util.placement_group import (
    PlacementGroup,
    get_current_placement_group,
    get_placement_group,
    placement_group,
    placement_group_table,
    remove_placement_group,
)


def get_node_ip_address(address: str = "8.8.8.8:53") -> str:
    """The IP address of this node (Ray's ``ray.util.get_node_ip_address``)."""
    from distributed.utils import get_ip

    try:
        return get_ip()
    except OSError:
        return socket.gethostbyname("localhost")


def list_named_actors(all_namespaces: bool = False):
    """Names of the live named actors (``[{'name', 'namespace'}]`` with ``all_namespaces``)."""
    return _actor_api.list_named_actors(all_namespaces)


def __getattr__(name):
    # ActorPool imports raycompat itself: load it on first use, as CPython's
    # concurrent.futures loads its executors lazily.
    if name == "ActorPool":
        # late: cycle: raycompat.util.actor_pool -> raycompat -> raycompat.util
        from raycompat.util.actor_pool import ActorPool

        return ActorPool
    if name in ("as_completed", "map_unordered"):
        # late: cycle: raycompat.util.helpers -> raycompat -> raycompat.util
        from raycompat.util import helpers

        return getattr(helpers, name)
    if name == "multiprocessing":
        import importlib

        return importlib.import_module("raycompat.util.multiprocessing")
    raise AttributeError(f"module 'raycompat.util' has no attribute {name!r}")


__all__ = [
    "ActorPool",
    "PlacementGroup",
    "as_completed",
    "get_current_placement_group",
    "get_node_ip_address",
    "get_placement_group",
    "inspect_serializability",
    "list_named_actors",
    "map_unordered",
    "placement_group",
    "placement_group_table",
    "remove_placement_group",
]
