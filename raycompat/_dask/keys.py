"""Dask keys for Ray calls: ``"{name}-{process prefix}{counter}"``.

Unique across processes (a random prefix per process, renewed after ``fork``), cheap per
call (no uuid per key), and grouped by ``name`` on the dashboard (Dask's ``key_split``
drops the hex suffix)."""

from __future__ import annotations

import itertools
import os
import uuid

_prefix = uuid.uuid4().hex[:16]
_counter = itertools.count()


def new_key(name: str) -> str:
    if name.startswith("<"):
        # Dask cannot group "<lambda>-..." keys: each would be its own task group, and the
        # scheduler's per-graph idle check walks every group (quadratic in the tasks).
        name = name.strip("<>")
    return f"{name}-{_prefix}{next(_counter):x}"


#: ``ray.put`` keys: a driver's, and one made by a task or actor, whose owner (Ray's word)
#: is that worker process: if it dies, ``get`` raises ``OwnerDiedError``, as on Ray.
PUT = "put"
WORKER_PUT = "worker-put"


def put_key(in_worker: bool) -> str:
    return new_key(WORKER_PUT if in_worker else PUT)


def owned_by_worker(key) -> bool:
    """Was ``key`` made by a ``put`` in a task or actor (see ``put_key``)?"""
    return isinstance(key, str) and key.startswith(WORKER_PUT + "-")


def _after_fork() -> None:
    global _prefix, _counter
    _prefix = uuid.uuid4().hex[:16]
    _counter = itertools.count()


os.register_at_fork(after_in_child=_after_fork)
