"""What Ray's state API lists that Dask's scheduler forgets: a scheduler plugin.

Ray's GCS keeps a table of every actor (alive, and up to 100,000 dead ones,
``RAY_maximum_gcs_destroyed_actor_cached_count``), of nodes that left, and the events of
the last tasks, actor calls among them. Dask's scheduler knows the keys and workers
that exist *now*. This plugin remembers the rest, from what already reaches the
scheduler, with no message of its own:

- **actors**: an actor created in a host of its own (the embedded cluster) is announced
  by its host as an event (``actor_host.py``, topic ``TOPIC``); a Dask actor (a cluster
  raycompat joins) is seen as its creation task moves, its ``meta`` read from the task.
  Whether a recorded actor still lives is decided when someone asks (``state_rows.py``):
  its key gone means it is dead;
- **actor calls**: the shells' reports of the calls they ran (``observability.TOPIC``),
  kept as Ray keeps task events (the last ``MAX_CALLS``);
- **nodes**: each host's first worker arrival and last departure (a Ray node is a host,
  ``cluster_info.py``).

It also holds the embedded cluster's node resources (its ledger's totals, which its
Dask workers do not advertise), set by ``install(scheduler, node_totals=...)``.
"""

from __future__ import annotations

import time
from collections import OrderedDict, deque

from distributed.diagnostics.plugin import SchedulerPlugin

from raycompat._dask.observability import TOPIC as CALLS_TOPIC

NAME = "raycompat-state"
#: Actor announcements from actor hosts (``actor_host.py``).
TOPIC = "raycompat-actor-state"
#: As Ray's ``RAY_maximum_gcs_destroyed_actor_cached_count``.
MAX_DEAD_ACTORS = 100_000
#: Actor calls kept, as Ray's ``RAY_task_events_max_num_task_in_gcs``.
MAX_CALLS = 100_000

#: The fields of an actor's ``meta`` (``actor_api.create``) the state API shows.
META_FIELDS = ("actor_id", "class_name", "name", "namespace", "job_id", "placement_request",
               "lifetime_request", "module", "is_async", "max_concurrency")


def actor_fields(meta: dict) -> dict:
    """What a record keeps of an actor's ``meta`` (plain values only)."""
    return {k: meta.get(k) for k in META_FIELDS}


class StatePlugin(SchedulerPlugin):
    name = NAME

    def __init__(self, scheduler, node_totals=None):
        self.scheduler = scheduler
        #: actor_id -> record (dict), oldest first.
        self.actors: OrderedDict = OrderedDict()
        self.dead_count = 0
        #: (Class.method, start, stop, actor_id, worker, pid) of the calls actors ran.
        self.calls: deque = deque(maxlen=MAX_CALLS)
        #: host -> {"start": t, "end": t or None, "workers": set of addresses}
        self.hosts: dict = {}
        #: host -> resources (the embedded cluster's ledger totals).
        self.node_totals: dict = dict(node_totals or {})
        for addr, ws in scheduler.workers.items():
            self.add_worker(scheduler, addr)
        for _, msg in scheduler.get_events(TOPIC):  # announced before the plugin came
            self.log_event(TOPIC, msg)

    # -- actors ------------------------------------------------------------------------
    def log_event(self, topic, msg) -> None:
        if topic == CALLS_TOPIC:
            actor_id, worker, pid = msg.get("actor_id"), msg.get("worker"), msg.get("pid")
            for name, start, stop, _tid in msg.get("calls", ()):
                self.calls.append((name, start, stop, actor_id, worker, pid))
        elif topic == TOPIC and isinstance(msg, dict):
            self.record(msg.get("meta") or {}, msg["state"], key=msg.get("key"), worker=msg.get("worker"),
                        pid=msg.get("pid"), death=msg.get("death"))

    def transition(self, key, start, finish, *args, **kwargs) -> None:
        # Dask actors only (a cluster raycompat joins): their task carries the meta.
        if finish != "processing" and finish != "memory":
            return
        ts = self.scheduler.tasks.get(key)
        if ts is None or not ts.actor:
            return
        meta = actor_meta(ts)
        if meta is None:
            return
        worker = kwargs.get("worker") or (ts.processing_on.address if ts.processing_on else None)
        ws = self.scheduler.workers.get(worker) if worker else None
        state = "ALIVE" if finish == "memory" else "PENDING_CREATION"
        self.record(meta, state, key=key, worker=worker, pid=ws.pid if ws is not None else None)

    def record(self, meta: dict, state: str, key=None, worker=None, pid=None, death=None) -> None:
        actor_id = meta.get("actor_id")
        if not actor_id:
            return
        now = time.time()
        rec = self.actors.get(actor_id)
        if rec is None:
            rec = self.actors[actor_id] = {
                **actor_fields(meta), "state": state, "key": key, "worker": worker, "pid": pid,
                "num_restarts": 0, "start_time": now, "end_time": None, "death": None,
            }
        else:
            if key is not None and rec["key"] not in (None, key):  # a new incarnation
                rec["num_restarts"] += 1
                rec["death"] = None
            rec.update({k: v for k, v in (("key", key), ("worker", worker), ("pid", pid)) if v is not None})
            if rec["state"] != "DEAD" or key is not None:
                rec["state"] = state
        if state == "DEAD":
            self.mark_dead(rec, death or {})

    def mark_dead(self, rec: dict, death: dict) -> None:
        if rec.get("end_time") is None:
            rec["end_time"] = time.time()
            self.dead_count += 1
        rec["state"] = "DEAD"
        rec["death"] = death
        while self.dead_count > MAX_DEAD_ACTORS:
            for actor_id, r in self.actors.items():
                if r["state"] == "DEAD":
                    del self.actors[actor_id]
                    self.dead_count -= 1
                    break
            else:
                break

    # -- nodes -------------------------------------------------------------------------
    def add_worker(self, scheduler=None, worker=None) -> None:
        ws = self.scheduler.workers.get(worker)
        if ws is None:
            return
        node = self.hosts.setdefault(ws.host, {"start": time.time(), "end": None, "workers": set()})
        node["workers"].add(worker)
        node["end"] = None

    def remove_worker(self, scheduler=None, worker=None, **kwargs) -> None:
        for node in self.hosts.values():
            if worker in node["workers"]:
                node["workers"].discard(worker)
                if not node["workers"]:
                    node["end"] = time.time()


def actor_meta(ts):
    """The ``meta`` of a Dask actor's creation task (``Shell(cls_blob, args_blob, meta)``)."""
    spec = ts.run_spec
    args = getattr(spec, "args", None)
    if not args or len(args) < 3:
        return None
    meta = args[2]
    meta = getattr(meta, "value", meta)  # a DataNode around it, depending on Dask's parsing
    return meta if isinstance(meta, dict) and "actor_id" in meta else None


def install(scheduler, node_totals=None) -> StatePlugin:
    """Add the plugin once (the embedded cluster passes its node's totals)."""
    plugin = scheduler.plugins.get(NAME)
    if plugin is None:
        plugin = StatePlugin(scheduler, node_totals)
        scheduler.add_plugin(plugin)
    elif node_totals:
        plugin.node_totals.update(node_totals)
    return plugin


def install_remote(dask_scheduler) -> bool:
    install(dask_scheduler)
    return True
