"""The process side of raycompat's reference model (``object-lifetime.md``).

Every ObjectRef a process holds is backed by a Dask future of that process's client, so
Dask counts the process as a holder of the key while it has one. This module adds what
Dask lacks for refs that travel inside data:

- ``collecting()``: while a value is pickled, the refs (and actor handles) inside it are
  collected instead of pinned; the caller then makes them contents of the key the value
  is stored under (``contain``), so they live exactly as long as that key;
- ``rebinding()``: refs unpickled in this process are wanted by its client, and the
  process waits until the scheduler has recorded that (one round trip per unpickled
  value) before it goes on;
- refs pickled anywhere else (the user's own ``pickle.dumps``) are pinned to the job
  until ``shutdown``, as Ray pins refs serialized out of band until their owner exits.

All messages go through the client's own stream to the scheduler, in order with its
other messages (``client-releases-keys`` in particular), and need the scheduler plugin
of ``reference_plugin.py``. Without it (a scheduler that cannot import raycompat)
contents are pinned to the job and a desire is a plain ``client-desires-keys``.
"""

from __future__ import annotations

import asyncio
import contextvars
import itertools
import threading
import time
from typing import Optional

import cloudpickle

from raycompat._dask import batching, context, interrupts, reference_plugin

#: While set, refs being pickled are collected into this list (a value being sealed).
_collected: contextvars.ContextVar[Optional[list]] = contextvars.ContextVar("raycompat_collected", default=None)
#: While set, freshly unpickled refs are gathered here and desired in one round trip.
_rebinding: contextvars.ContextVar[Optional[list]] = contextvars.ContextVar("raycompat_rebinding", default=None)

JOB_PIN_PREFIX = "raycompat-pins-"

#: How long a process waits for the scheduler to acknowledge a desire before going on.
ACK_TIMEOUT = 30.0
#: Pauses before asking again for keys the scheduler did not know (2.5 s in all); then
#: they are lost.
UNKNOWN_RETRIES = (0.02, 0.05, 0.1, 0.2, 0.4, 0.7, 1.0)

_tokens = itertools.count()
_waiting: dict = {}  # token -> [threading.Event, unknown keys]
_waiting_lock = threading.Lock()
_scheduler_plugins: dict = {}  # (client id, plugin name) -> bool

# ---------------------------------------------------------------- pickling refs out


class collecting:
    """Collect the futures of the refs pickled in this block: ``with collecting() as c``.
    (A class, not a generator: it wraps every sealed value, on the hot path.)"""

    __slots__ = ("found", "token")

    def __enter__(self) -> list:
        self.found = []
        self.token = _collected.set(self.found)
        return self.found

    def __exit__(self, *exc) -> None:
        _collected.reset(self.token)


def pickled(fut) -> None:
    """An ObjectRef (or actor handle) backed by ``fut`` is being pickled."""
    found = _collected.get()
    if found is not None:
        found.append(fut)
    else:
        pin_to_job(fut)


def pin_to_job(fut) -> None:
    """Keep ``fut``'s key until the job ends (a ref pickled outside raycompat's control)."""
    job = context.current_job_id()
    client = fut.client
    if client is None or job is None:
        return
    batching.flush(client)  # the scheduler must know the key before the pin names it
    try:
        client._send_to_scheduler({"op": "client-desires-keys", "keys": [fut.key], "client": JOB_PIN_PREFIX + job})
    except Exception:  # noqa: BLE001 - a closed client has nothing left to pin
        pass


def contain(client, container: str, futures: list) -> None:
    """Make the keys of ``futures`` contents of ``container`` (a key the scheduler already
    knows): held until it is forgotten. Waits for the scheduler's acknowledgement, so that
    everything this process sent before (its submissions in particular) is known there
    before anyone reads the value."""
    if not futures:
        return
    if not plugin_present(client):
        for fut in futures:
            pin_to_job(fut)
        return
    batching.flush(client)
    keys = list(dict.fromkeys(f.key for f in futures))
    _send_and_wait(client, {"op": "raycompat-contain", "container": container, "keys": keys})


# ---------------------------------------------------------------- unpickling refs in


class rebinding:
    """Refs unpickled in this block are desired in one acknowledged message at its end
    (nested blocks join the outermost). A class: it wraps every value read."""

    __slots__ = ("fresh", "token")

    def __enter__(self) -> None:
        if _rebinding.get() is None:
            self.fresh = []
            self.token = _rebinding.set(self.fresh)
        else:
            self.token = None

    def __exit__(self, *exc) -> None:
        if self.token is not None:
            _rebinding.reset(self.token)
            if self.fresh:
                desire(self.fresh)


def rebound(fut) -> None:
    """``fut`` was just made for a key this process's client did not hold."""
    fresh = _rebinding.get()
    if fresh is not None:
        fresh.append(fut)
    else:
        desire([fut])


def desire(futures: list) -> None:
    """This process's client wants these keys; keys the scheduler does not know are
    marked lost on their futures (``get`` raises ``ObjectLostError``)."""
    by_client: dict = {}
    for fut in futures:
        by_client.setdefault(fut.client, []).append(fut)
    for client, futs in by_client.items():
        keys = list(dict.fromkeys(f.key for f in futs))
        if not plugin_present(client):
            client._send_to_scheduler({"op": "client-desires-keys", "keys": keys, "client": client.id})
            continue
        unknown = _send_and_wait(client, {"op": "raycompat-desire", "keys": keys})
        # A key may still be on its way to the scheduler from the process that made it
        # (its submission travels on that process's stream): ask again for a while.
        retries = iter(() if _on_loop(client) else UNKNOWN_RETRIES)
        while unknown and (delay := next(retries, None)) is not None:
            time.sleep(delay)
            unknown = _send_and_wait(client, {"op": "raycompat-desire", "keys": unknown})
        if unknown:
            lost = set(unknown)
            for fut in futs:
                if fut.key in lost and not fut.done():
                    mark_lost(fut)


def mark_lost(fut) -> None:
    fut._state.cancel(reason="the object is lost: no process holds a reference to it")


# ---------------------------------------------------------------- the acknowledged stream


def _send_and_wait(client, msg: dict) -> list:
    """Send ``msg`` on the client's stream; wait until the scheduler answers it (not on
    the client's own event loop, where the stream's order alone must do)."""
    _attach(client)
    token = next(_tokens)
    msg["token"] = token
    on_loop = _on_loop(client)
    entry = None
    if not on_loop:
        entry = [threading.Event(), []]
        with _waiting_lock:
            _waiting[token] = entry
    try:
        client._send_to_scheduler(msg)
    except Exception:  # noqa: BLE001 - a closing client: nothing to wait for
        on_loop = True
    if on_loop:
        with _waiting_lock:
            _waiting.pop(token, None)
        return []
    with interrupts.uninterruptible():
        entry[0].wait(ACK_TIMEOUT)
    with _waiting_lock:
        _waiting.pop(token, None)
    return entry[1]


def _on_ack(token=None, unknown=(), **_) -> None:  # on the client's event loop
    with _waiting_lock:
        entry = _waiting.get(token)
    if entry is not None:
        entry[1] = list(unknown)
        entry[0].set()


def _attach(client) -> None:
    if "raycompat-desired" not in client._stream_handlers:
        client._stream_handlers["raycompat-desired"] = _on_ack


def _on_loop(client) -> bool:
    try:
        loop = client.loop.asyncio_loop
    except Exception:  # noqa: BLE001
        return False
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False


def plugin_present(client) -> bool:
    """Whether the scheduler has the reference plugin."""
    return scheduler_has(client, reference_plugin.NAME)


def scheduler_has(client, plugin_name: str) -> bool:
    """Whether ``client``'s scheduler runs the scheduler plugin ``plugin_name``: asked
    once per client and plugin (not on the client's event loop, where it says no)."""
    present = _scheduler_plugins.get((client.id, plugin_name))
    if present is None:
        if _on_loop(client):
            return False
        try:
            present = bool(client.run_on_scheduler(reference_plugin.has_plugin_remote, name=plugin_name))
        except Exception:  # noqa: BLE001 - raycompat not importable on the scheduler
            present = False
        _scheduler_plugins[(client.id, plugin_name)] = present
    return present


def set_plugin_present(client, present: bool) -> None:
    _scheduler_plugins[(client.id, reference_plugin.NAME)] = present


def pickle_arguments(args: tuple, kwargs: dict, what: str, *extra) -> tuple:
    """A call's arguments (and ``extra``) pickled once, with the refs found inside them,
    which the caller holds until the call is answered (Ray's rule). An argument that does
    not pickle raises Ray's ``TypeError`` naming it and ``what`` is being called."""
    try:
        with collecting() as collected:
            blob = cloudpickle.dumps((args, kwargs, *extra), protocol=5)
    except Exception as e:  # noqa: BLE001 - find the culprit for Ray's message
        for a in list(args) + list(kwargs.values()):
            try:
                cloudpickle.dumps(a)
            except Exception:  # noqa: BLE001
                raise TypeError(
                    f"Could not serialize the argument {a!r} for a task or actor "
                    f"{what}:\n{type(e).__name__}: {e}"
                ) from e
        raise TypeError(f"Could not serialize the arguments for {what}: {e}") from e
    return blob, collected
