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


__all__ = ["get_node_ip_address"]
