"""``ray.util``: helpers Ray programs import."""

from __future__ import annotations

import socket


def get_node_ip_address(address: str = "8.8.8.8:53") -> str:
    """The IP address of this node (Ray's ``ray.util.get_node_ip_address``)."""
    from distributed.utils import get_ip

    try:
        return get_ip()
    except OSError:
        return socket.gethostbyname("localhost")


def list_named_actors(all_namespaces: bool = False):
    """Names of the live named actors (``[{'name', 'namespace'}]`` with ``all_namespaces``)."""
    from raycompat._dask import actor_api

    return actor_api.list_named_actors(all_namespaces)


__all__ = ["get_node_ip_address", "list_named_actors"]
