"""The scheduler's half of raycompat's reference model (``object-lifetime.md``).

Dask keeps a key while some client wants it or some task still needs it. raycompat adds
three things on the scheduler, all reached through the clients' own ordered streams so
that they can never overtake that client's other messages:

- ``raycompat-desire``: a client wants keys it has just unpickled, and hears back
  (``raycompat-desired``) once the scheduler has recorded it, with the keys it does not
  know. The unpickling process waits for that answer before it goes on, so nothing it
  does next (finishing a task, answering an actor call) can let another holder release
  the key first.
- ``raycompat-contain``: the refs sealed inside the value stored under a key
  (``container``) are held by the synthetic client ``raycompat-in-<container>`` until
  that key is forgotten. A container already forgotten holds nothing: nobody can read
  the refs through it any more.
- ``raycompat-fill`` / ``raycompat_take``: an actor call's result that a task needs
  before the call has finished (a placeholder task under the call's key waits in
  ``take``); the caller fills it with the key of the value (held as a content of the
  placeholder's key) or with the call's error.
"""

from __future__ import annotations

import asyncio
from typing import Optional

from distributed.diagnostics.plugin import SchedulerPlugin

NAME = "raycompat-references"
HOLDER_PREFIX = "raycompat-in-"


class ReferencePlugin(SchedulerPlugin):
    name = NAME

    def __init__(self, scheduler):
        self.scheduler = scheduler
        #: Keys whose holder ``raycompat-in-<key>`` exists.
        self.containers: set = set()
        #: placeholder key -> ("value", value key) or ("error", pickled error)
        self.filled: dict = {}
        #: placeholder key -> event set when it is filled or forgotten
        self.waiters: dict = {}
        scheduler.stream_handlers["raycompat-desire"] = self.desire
        scheduler.stream_handlers["raycompat-contain"] = self.contain
        scheduler.stream_handlers["raycompat-fill"] = self.fill
        scheduler.stream_handlers["raycompat-expect"] = self.expect
        scheduler.handlers["raycompat_take"] = self.take
        scheduler.handlers["raycompat_adopt"] = self.adopt

    # -- a process wants the keys it unpickled ---------------------------------------
    def desire(self, keys=(), token=None, client=None, **_) -> None:
        tasks = self.scheduler.tasks
        known = [k for k in keys if k in tasks]
        if known:
            self.scheduler.client_desires_keys(keys=known, client=client)
        if token is not None:
            unknown = [k for k in keys if k not in tasks]
            self.scheduler.report({"op": "raycompat-desired", "token": token, "unknown": unknown}, client=client)

    # -- a stored value holds the refs sealed inside it ------------------------------
    def contain(self, container=None, keys=(), token=None, client=None, **_) -> None:
        tasks = self.scheduler.tasks
        if container in tasks:
            known = [k for k in keys if k in tasks]
            if known:
                self.scheduler.client_desires_keys(keys=known, client=HOLDER_PREFIX + container)
                self.containers.add(container)
        if token is not None:
            self.scheduler.report({"op": "raycompat-desired", "token": token, "unknown": []}, client=client)

    # -- an actor call's result, awaited by a placeholder task -----------------------
    def fill(self, key=None, value=None, error=None, client=None, **_) -> None:
        if key not in self.scheduler.tasks:
            return  # nobody needs it any more
        if value is not None:
            self.contain(container=key, keys=[value])
            self.filled[key] = ("value", value)
        else:
            self.filled[key] = ("error", error)
        event = self.waiters.get(key)
        if event is not None:
            event.set()

    async def take(self, key=None, timeout: float = 5.0):
        """What the placeholder task for ``key`` returns: ("value", key), ("error",
        blob), ("wait",) when nothing came within ``timeout``, ("gone",) once no one
        needs it."""
        if key in self.filled:
            return self.filled[key]
        if key not in self.scheduler.tasks:
            return ("gone",)
        event = self.waiters.setdefault(key, asyncio.Event())
        try:
            await asyncio.wait_for(event.wait(), timeout)
        except asyncio.TimeoutError:
            return ("wait",)
        return self.filled.get(key, ("gone",))

    # -- an actor created in a host of its own (actor_host.py) -------------------------
    def expect(self, key=None, holders=(), client=None, **_) -> None:
        """The actor ``key`` is being created: known (released, no recipe) and wanted by
        its creator from now on, so that its handles can travel before it exists."""
        if key not in self.scheduler.tasks:
            self.scheduler.new_task(key, None, "released")
        self.scheduler.client_desires_keys(keys=[key], client=client)
        for holder in holders:
            self.scheduler.client_desires_keys(keys=[key], client=holder)

    def adopt(self, key=None, worker=None) -> bool:
        """The host ``worker`` has built actor ``key``: it is in memory there, for every
        client that wants it. False if nobody wants it any more (the host then drops it)."""
        if key not in self.scheduler.tasks or worker not in self.scheduler.workers:
            pool = self.scheduler.plugins.get("raycompat-actor-hosts")
            if pool is not None:  # the host it waited in is free again
                pool.transition(key, "released", "forgotten")
            return False
        self.scheduler.update_data(who_has={key: [worker]}, nbytes={key: 64})
        return True

    # -- a key is forgotten: what it held goes -----------------------------------------
    def transition(self, key, start, finish, *args, **kwargs) -> None:
        if finish != "forgotten":
            return
        ts = self.scheduler.tasks.get(key)
        if ts is not None and all(v == 0 or k == "forgotten" for k, v in ts.group.states.items()):
            # The scheduler drops this task's group right after this hook; Dask's span
            # would keep it for good (every group ever made: raycompat's keys make one
            # per burst of calls, so a long-running driver's scheduler grew without end).
            self.scheduler.loop.add_callback(_drop_from_span, self.scheduler, ts.group)
        if key in self.containers:
            self.containers.discard(key)
            # Not from inside the scheduler's transition loop: release after it.
            self.scheduler.loop.add_callback(release_holder, self.scheduler, HOLDER_PREFIX + key)
        if key in self.filled:
            del self.filled[key]
        event = self.waiters.pop(key, None)
        if event is not None:
            event.set()


def _drop_from_span(scheduler, group) -> None:
    spans = scheduler.extensions.get("spans")
    if spans is None or group.name in scheduler.task_groups:
        return
    span = spans.spans.get(group.span_id)
    if span is not None:
        span.groups.discard(group)


def release_holder(scheduler, name: str) -> None:
    """Drop a synthetic scheduler client and every key it wants."""
    cs = scheduler.clients.get(name)
    if cs is not None:
        keys = [ts.key for ts in cs.wants_what]
        if keys:
            scheduler.client_releases_keys(keys=keys, client=name)
        scheduler.clients.pop(name, None)


def install(scheduler) -> Optional[ReferencePlugin]:
    """Add the plugin once (``run_on_scheduler`` from a driver joining a cluster)."""
    plugin = scheduler.plugins.get(NAME)
    if plugin is None:
        plugin = ReferencePlugin(scheduler)
        scheduler.add_plugin(plugin)
    return plugin


def install_remote(dask_scheduler) -> bool:
    install(dask_scheduler)
    return True


def has_plugin_remote(dask_scheduler, name: str) -> bool:
    return name in dask_scheduler.plugins
