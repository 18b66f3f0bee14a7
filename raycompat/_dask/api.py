"""``ray.get``, ``ray.put``, ``ray.wait`` and ``ray.cancel``: Ray's argument checks,
message for message, before anything reaches Dask. The waiting and the translation of
Dask's results are in ``results.py``; ``put`` and the cancelling of one ref in
``objects.py``.
"""

from __future__ import annotations

import time

from distributed import Future

from raycompat import exceptions as rex
from raycompat._dask import driver as _driver
from raycompat._dask import interrupts, keys, objects
from raycompat._dask.objects import put
from raycompat._dask.refs import ObjectRef
from raycompat._dask.results import check_timeout, fetch_owned_by_worker, get_one, is_cancelled, raise_for
from raycompat._dask.results import translate_error
from raycompat._dask.results import value_of, wait_futures
from raycompat._dask.streaming import ObjectRefGenerator

__all__ = ["cancel", "get", "put", "wait"]


# ---------------------------------------------------------------------------- get


@interrupts.api_call
def get(object_refs, *, timeout=None):
    """``ray.get``: a ref's value, or a list of values in the order of the list."""
    if type(object_refs) is ObjectRef:
        _driver.connected_session()
        return get_one(object_refs, check_timeout(timeout))
    if type(object_refs) is ObjectRefGenerator:
        return object_refs  # Ray returns a generator unchanged
    if not isinstance(object_refs, list):
        raise ValueError(
            f"Invalid type of object refs, {type(object_refs)}, is given. "
            "'object_refs' must either be an ObjectRef or a list of ObjectRefs. "
        )
    for r in object_refs:
        if type(r) is not ObjectRef:
            raise TypeError(
                f"Attempting to call `get` on the value {r}, which is not an ray.ObjectRef."
            )
    timeout = check_timeout(timeout)
    if not object_refs:
        return []
    _driver.connected_session()
    futures = list({r._key: r._future for r in object_refs}.values())
    client = futures[0].client
    wait_futures(client, futures, len(futures), timeout, True)
    by_key = {r._key: r for r in object_refs}
    first_bad = next((f for f in futures if f.done() and f.status != "finished"), None)
    if first_bad is None:
        first_bad = next((f for f in futures if is_cancelled(f.key)), None)
    if first_bad is not None:
        raise_for(first_bad, by_key[first_bad.key])
        raise rex.TaskCancelledError(by_key[first_bad.key].hex())
    if not all(f.done() for f in futures):
        raise rex.GetTimeoutError("Get timed out: some object(s) not ready.")
    dask_futures = [f for f in futures if type(f) is Future and not keys.owned_by_worker(f.key)]
    try:
        values = client.gather(dask_futures) if dask_futures else []
    except Exception as e:  # noqa: BLE001 - lost between done and gather
        raise translate_error(e, object_refs[0]) from None
    sealed = dict(zip((f.key for f in dask_futures), values))
    for f in futures:  # a task's or actor's put: its owner may have died just now
        if type(f) is Future and keys.owned_by_worker(f.key):
            sealed[f.key] = fetch_owned_by_worker(f, by_key[f.key])
    for f in futures:
        if type(f) is not Future:  # an actor call's result, already here
            sealed[f.key] = f.result()
    return [value_of(sealed[r._key], r) for r in object_refs]


# ---------------------------------------------------------------------------- wait


@interrupts.api_call
def wait(ray_waitables, *, num_returns=1, timeout=None, fetch_local=True):
    """``ray.wait``: ``(ready, not_ready)``, ready in input order, at most ``num_returns``."""
    if type(ray_waitables) is ObjectRef:
        raise TypeError(
            "wait() expected a list of ray.ObjectRef or ray.ObjectRefGenerator"
            ", got a single ray.ObjectRef or ray.ObjectRefGenerator "
            f"{ray_waitables}"
        )
    if not isinstance(ray_waitables, list):
        raise TypeError(
            "wait() expected a list of ray.ObjectRef or "
            "ray.ObjectRefGenerator, "
            f"got {type(ray_waitables)}"
        )
    if timeout is not None and timeout < 0:
        raise ValueError("The 'timeout' argument must be nonnegative. " f"Received {timeout}")
    for r in ray_waitables:
        if type(r) is not ObjectRef and type(r) is not ObjectRefGenerator:
            raise TypeError(
                "wait() expected a list of ray.ObjectRef or "
                "ray.ObjectRefGenerator, "
                f"got list containing {type(r)}"
            )
    if not ray_waitables:
        return [], []
    if len(set(ray_waitables)) != len(ray_waitables):
        raise ValueError("Wait requires a list of unique ray_waitables.")
    if num_returns <= 0:
        raise ValueError("Invalid number of objects to return %d." % num_returns)
    if num_returns > len(ray_waitables):
        raise ValueError(
            "num_returns cannot be greater than the number "
            "of ray_waitables provided to ray.wait."
        )
    _driver.connected_session()
    futures = list({_wait_key(r): _waitable(r) for r in ray_waitables}.values())

    def ready(r) -> bool:
        if type(r) is ObjectRefGenerator:
            return r.next_ready()
        return r._future.done() or is_cancelled(r._key)

    def ready_count():
        return sum(1 for r in ray_waitables if ready(r))

    if ready_count() < num_returns:
        client = futures[0].client
        deadline = None if timeout is None else time.monotonic() + timeout
        # One future can ready several refs (num_returns views): wait one at a time.
        while ready_count() < num_returns:
            left = [f for f in futures if not f.done()]
            remaining = None if deadline is None else deadline - time.monotonic()
            if not left or (remaining is not None and remaining <= 0):
                break
            wait_futures(client, left, 1, remaining, False)
    ready_refs = [r for r in ray_waitables if ready(r)][:num_returns]
    ready_ids = {id(r) for r in ready_refs}
    return ready_refs, [r for r in ray_waitables if id(r) not in ready_ids]


def _wait_key(r):
    return ("generator", id(r)) if type(r) is ObjectRefGenerator else r._key


def _waitable(r):
    """What ``wait`` waits on: a ref's future, or "a generator's next item is here"."""
    return r._readiness() if type(r) is ObjectRefGenerator else r._future




# ---------------------------------------------------------------------------- cancel


def cancel(ref, *, force=False, recursive=True):
    """``ray.cancel`` (see ``objects.cancel``); cancelling a generator cancels its call."""
    if type(ref) is ObjectRefGenerator:
        ref = ref.completed()
    return objects.cancel(ref, force=force, recursive=recursive)
