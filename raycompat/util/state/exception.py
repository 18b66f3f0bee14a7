"""``ray.util.state.exception``: the errors of Ray's state API."""

from __future__ import annotations


class DataSourceUnavailable(Exception):
    pass


class RayStateApiException(Exception):
    """A state API call failed (Ray's user-facing error)."""


class ServerUnavailable(RayStateApiException):
    """The cluster could not be reached (Ray: its dashboard server)."""
