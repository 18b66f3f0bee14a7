"""Ray's placement groups on Dask: bundles reserved in the hosts' resource ledgers.

Ray reserves a placement group's bundles on nodes (all or nothing, asynchronously: a
group waits until its bundles fit), takes them out of what other tasks may use, and runs
the tasks and actors scheduled into a bundle on that bundle's reserved resources (Ray
renames them ``CPU_group_<i>_<id>``). raycompat does the same with the ledgers that
already account every task's resources (``ledger.py``):

- ``create`` picks a host for each bundle by the strategy (``choose_hosts``: ``PACK``,
  ``SPREAD``, ``STRICT_PACK``, ``STRICT_SPREAD``, over the hosts' totals) and submits one
  *reservation* task per host, restricted to it. The task takes its bundles' sum from the
  host ledger, waiting seceded (no thread held) until it fits, then makes a small ledger
  per bundle next to the host's (``pg-<id>/<index>/ledger``) with the bundle as totals.
  The reserving worker process holds the reservation; if it dies, the host ledger takes
  it back (as any dead process's holdings) while the bundles stay: the group is then no
  longer reserved (Ray would reschedule it).
- ``pg.ready()`` is an ObjectRef of a task that depends on the reservations and returns
  the group; a group no host set can hold stays ``PENDING`` and never gets ready (as on
  a Ray cluster that cannot grow), with a warning.
- A task or actor with ``PlacementGroupSchedulingStrategy`` runs on its bundle's host
  and takes its request from the bundle's ledger instead of the host's (``take``); with
  bundle index -1, from any bundle of the group on that host. It gives the CPU back to
  the bundle while blocked in ``get``, as every task does.
- ``remove`` marks the group removed on each host (``pg-<id>/removed``), gives the
  reservation back, and kills the actors this process placed in it; tasks still waiting
  for a bundle raise ``TaskPlacementGroupRemoved`` (Ray 2.60, checked). Tasks already
  running finish (Ray kills their worker and retries them into a group that no longer
  exists: their ``get`` never returns).
- Records (name, bundles, strategy, hosts, state) are Dask scheduler metadata under
  ``raycompat-pg``, so ``placement_group_table`` and named lookups work from any
  process. A driver's non-detached groups are removed when it shuts down.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import threading
import time
import uuid
import warnings
from typing import Optional

from raycompat import exceptions as rex
from raycompat._dask import context as _context
from raycompat._dask import driver as _driver
from raycompat._dask import placement as _placement
from raycompat._dask import quiet_errors
from raycompat._dask.ledger import Ledger, process_ledger
from raycompat._dask.refs import rebind
from raycompat._dask.serialization import Sealed
from raycompat.util.scheduling_strategies import PlacementGroupSchedulingStrategy

METADATA = "raycompat-pg"
STRATEGIES = ("PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD")

_lock = threading.Lock()
#: pg id -> record, for groups this process made or looked up (hosts never change).
_records: dict = {}
#: pg id -> the ready future (kept so the key lives while the group does).
_ready_futures: dict = {}
#: pg id -> how to kill each actor this process placed in the group (on removal).
_actors: dict = {}


# ------------------------------------------------------------------ host choice


def _host_capacity(client) -> dict:
    """Each host's totals: ``{host: {"CPU": n, "GPU": n, ...}}``."""
    ledger = _driver.embedded_ledger()
    if ledger is not None:
        return {"127.0.0.1": dict(ledger.totals)}
    table = _placement.workers(client)
    capacity: dict = {}
    for w in table.values():
        host = capacity.setdefault(w["host"], {"CPU": 0.0})
        host["CPU"] += w.get("nthreads", 1)
        for k, v in (w.get("resources") or {}).items():
            host[k] = host.get(k, 0.0) + v
    return capacity


def _fits(bundle: dict, free: dict) -> bool:
    return all(free.get(k, 0.0) + 1e-9 >= v for k, v in bundle.items())


def _take(free: dict, bundle: dict) -> None:
    for k, v in bundle.items():
        free[k] = free.get(k, 0.0) - v


def choose_hosts(capacity: dict, bundles: list, strategy: str) -> Optional[list]:
    """A host per bundle, or None when the hosts' totals cannot hold the group."""
    hosts = sorted(capacity)
    if strategy in ("PACK", "STRICT_PACK"):
        total: dict = {}
        for b in bundles:
            for k, v in b.items():
                total[k] = total.get(k, 0.0) + v
        for h in hosts:
            if _fits(total, capacity[h]):
                return [h] * len(bundles)
        if strategy == "STRICT_PACK":
            return None
    free = {h: dict(capacity[h]) for h in hosts}
    chosen: list = []
    for i, b in enumerate(bundles):
        if strategy == "PACK":  # as few hosts as possible: fill the one in use first
            order = sorted(hosts, key=lambda h: (h not in chosen, hosts.index(h)))
        else:  # SPREAD / STRICT_SPREAD: the hosts used least so far first
            order = sorted(hosts, key=lambda h: (chosen.count(h), hosts.index(h)))
        for h in order:
            if strategy == "STRICT_SPREAD" and h in chosen:
                continue
            if _fits(b, free[h]):
                _take(free[h], b)
                chosen.append(h)
                break
        else:
            return None
    return chosen


# ------------------------------------------------------------------ driver side


def new_id() -> str:
    return uuid.uuid4().hex + uuid.uuid4().hex[:4]  # 36 hex digits, as Ray's ids


def create(client, pg_id: str, bundles: list, strategy: str, name: str, lifetime, group) -> None:
    """Reserve ``bundles`` as group ``pg_id``; ``group`` is the value its ``ready()`` ref
    resolves to (the public ``PlacementGroup``)."""
    bundles = [{k: float(v) for k, v in b.items() if v} for b in bundles]
    hosts = choose_hosts(_host_capacity(client), bundles, strategy)
    record = {
        "placement_group_id": pg_id,
        "name": name or "",
        "namespace": _driver.current_namespace(),
        "bundles": {i: b for i, b in enumerate(bundles)},
        "hosts": hosts,
        "bundles_to_node_id": {i: _driver.node_id_of_host(h) for i, h in enumerate(hosts)} if hosts else {},
        "strategy": strategy,
        "state": "PENDING",
        "detached": lifetime == "detached",
        "job_id": _driver.current_job_id(),
        "created_at": time.time(),
    }
    client.set_metadata([METADATA, pg_id], record)
    with _lock:
        _records[pg_id] = record
    embedded = _driver.embedded_ledger() is not None
    if hosts is None:
        warnings.warn(
            f"The placement group {name or pg_id} ({strategy} of {bundles}) cannot be placed on "
            f"this cluster's nodes ({_host_capacity(client)}): it stays pending until nodes "
            "that can hold it join, as Ray keeps an infeasible placement group pending.",
            UserWarning,
            stacklevel=4,
        )
        # Its ready ref stays pending until the group is removed (then it raises, and so
        # do the tasks waiting for it).
        ready = client.submit(_ready_when_removed, pg_id, key=f"placement_group_ready-{pg_id}", pure=False)
    else:
        reservations = []
        for host in sorted(set(hosts)):
            mine = {i: b for i, b in enumerate(bundles) if hosts[i] == host}
            where = {} if embedded else {"workers": [host], "allow_other_workers": False}
            reservations.append(client.submit(
                reserve, pg_id, mine, key=f"reserve_placement_group-{pg_id}-{host}", pure=False, **where
            ))
        ready = client.submit(_ready, group, pg_id, *reservations, key=f"placement_group_ready-{pg_id}", pure=False)
    with _lock:
        _ready_futures[pg_id] = ready


def _ready_when_removed(pg_id: str):
    """An unplaceable group's ready task: waits, seceded, until the group is removed."""
    from distributed import get_client, secede

    quiet_errors.install()
    secede()
    client = get_client()
    while client.get_metadata([METADATA, pg_id, "state"], None) not in ("REMOVED", None):
        time.sleep(1.0)
    raise _removed_error()


def _removed_error() -> Exception:
    return rex.TaskPlacementGroupRemoved("The placement group corresponding to this task has been removed.")


def _raise_removed():
    quiet_errors.install()
    raise _removed_error()


def ready_future(client, pg_id: str):
    """The future of the group's ready task (this process's, or the creator's key)."""
    with _lock:
        fut = _ready_futures.get(pg_id)
        removed = (_records.get(pg_id) or {}).get("state") == "REMOVED"
    if fut is not None:
        return fut
    if removed:  # its tasks fail at once, as Ray fails them
        return client.submit(_raise_removed, key=f"placement_group_removed-{uuid.uuid4().hex}", pure=False)
    return rebind(client, f"placement_group_ready-{pg_id}")


def record(client, pg_id: str, fresh: bool = False) -> Optional[dict]:
    """The group's record (cached: hosts and bundles never change)."""
    with _lock:
        hit = _records.get(pg_id)
    if hit is not None and not fresh:
        return hit
    try:
        found = client.get_metadata([METADATA, pg_id])
    except KeyError:
        return None
    with _lock:
        _records[pg_id] = found
    return found


def table(client) -> dict:
    try:
        return dict(client.get_metadata([METADATA]))
    except KeyError:
        return {}


def find_by_name(client, name: str, namespace) -> Optional[str]:
    for pg_id, rec in table(client).items():
        if rec.get("name") == name and rec.get("namespace") == namespace and rec.get("state") != "REMOVED":
            return pg_id
    return None


def note_actor(pg_id: str, kill) -> None:
    """``kill()`` ends an actor this process placed in the group, when the group goes."""
    with _lock:
        _actors.setdefault(pg_id, []).append(kill)


def remove(client, pg_id: str) -> None:
    """Remove the group: its bundles go back to the hosts, waiting tasks fail, its
    actors (placed by this process) are killed."""
    rec = record(client, pg_id, fresh=True)
    if rec is None or rec.get("state") == "REMOVED":
        return
    client.set_metadata([METADATA, pg_id, "state"], "REMOVED")
    with _lock:
        rec["state"] = "REMOVED"
        _records[pg_id] = rec
        ready = _ready_futures.pop(pg_id, None)
        actors = _actors.pop(pg_id, [])
    hosts = sorted(set(rec.get("hosts") or []))
    if hosts:
        totals = {h: _sum(b for i, b in rec["bundles"].items() if rec["hosts"][int(i)] == h) for h in hosts}
        table = _placement.workers(client, fresh=True)  # the reserving worker may be new
        if _driver.embedded_ledger() is not None:
            workers = list(table)
        else:
            workers = [a for a, w in table.items() if w["host"] in totals]
        if workers:
            client.run(_remove_here, pg_id, totals, workers=workers, on_error="ignore")
    del ready  # its key goes once no ref holds it; a pending reservation sees the mark
    for kill in actors:
        try:
            kill()
        except Exception:  # noqa: BLE001 - already dead
            pass


def remove_job_groups(session) -> None:
    """At a driver's shutdown: its non-detached groups go, as Ray ties them to the job."""
    with _lock:
        mine = [p for p, r in _records.items()
                if r.get("job_id") == session.job_id and not r.get("detached") and r.get("state") != "REMOVED"]
    for pg_id in mine:
        try:
            remove(session.client, pg_id)
        except Exception:  # noqa: BLE001 - best effort at shutdown
            pass
    with _lock:
        _records.clear()
        _ready_futures.clear()
        _actors.clear()


def _sum(bundles) -> dict:
    total: dict = {}
    for b in bundles:
        for k, v in b.items():
            total[k] = total.get(k, 0.0) + v
    return total


def resolve(client, options: dict, what: str) -> Optional[tuple]:
    """``(group id, bundle index, capture child tasks)`` of the group a task or actor is
    scheduled into, or None: from ``PlacementGroupSchedulingStrategy``, the deprecated
    ``placement_group*`` options, or, with no strategy given, the caller's own group
    when it captures child tasks (Ray's rule)."""
    chosen = options.get("scheduling_strategy")
    if isinstance(chosen, PlacementGroupSchedulingStrategy):
        group = chosen.placement_group
        index = chosen.placement_group_bundle_index
        capture = chosen.placement_group_capture_child_tasks
    elif options.get("placement_group") not in (None, "default"):
        group = options["placement_group"]
        index = options.get("placement_group_bundle_index", -1)
        capture = options.get("placement_group_capture_child_tasks")
    else:
        ctx = _context.current_task()
        if chosen is None and ctx is not None and ctx.placement_group and ctx.placement_group[1]:
            return (ctx.placement_group[0], -1, True)
        return None
    if group is None or group.id.is_nil():
        if index != -1:
            raise ValueError("If placement group is not set, the value of bundle index must be -1.")
        return None
    return (group.id.hex(), index, bool(capture))


def bad_bundle_index(index: int, count: int) -> ValueError:
    return ValueError(
        f"placement group bundle index {index} is invalid. Valid placement group indexes: 0-{count}"
    )


def check_request(client, group: tuple, request: dict, what: str, actor_creation: bool = False) -> None:
    """Ray's ``ValueError``s for a bundle index out of range or a request no bundle fits."""
    rec = record(client, group[0]) or {}
    bundles = rec.get("bundles") or {}
    group_specs = [dict(bundles[i]) for i in sorted(bundles, key=int)]
    index = group[1]
    if index >= len(group_specs) or index < -1:
        raise bad_bundle_index(index, len(group_specs))
    specs = group_specs if index == -1 else [group_specs[index]]
    if any(_fits(request, b) for b in specs):
        return
    shown = {k: (int(v) if float(v).is_integer() else v) for k, v in request.items()}
    if actor_creation:  # Ray's text for an actor's default 1 CPU to be placed
        raise ValueError(
            f"Cannot schedule {what} with the placement group because the actor requires "
            f"{shown.get('CPU', 0)} CPU for creation, but it cannot fit into any bundles for the "
            f"placement group, {group_specs}. Consider creating a placement group with CPU resources."
        )
    raise ValueError(
        f"Cannot schedule {what} with the placement group because the resource request "
        f"{shown} cannot fit into any bundles for the placement group, {group_specs}."
    )


def placement_for(client, pg_id: str, index: int) -> dict:
    """Dask ``submit`` keywords that put a task on its bundles' hosts."""
    rec = record(client, pg_id) or {}
    hosts = rec.get("hosts")
    if not hosts or _driver.embedded_ledger() is not None:
        return {}  # one host (embedded), or a group still unplaceable: any worker waits
    chosen = sorted(set(hosts if index == -1 else [hosts[index]]))
    return {"workers": chosen, "allow_other_workers": False}


def candidate_bundles(client, pg_id: str, index: int) -> tuple:
    if index != -1:
        return (index,)
    rec = record(client, pg_id) or {}
    return tuple(range(len(rec.get("bundles") or {})))


# ------------------------------------------------------------------ worker side


def _group_dir(pg_id: str) -> str:
    ledger = process_ledger()
    if ledger is None:
        raise rex.RaySystemError("this worker has no resource ledger: placement groups need raycompat's plugins")
    return os.path.join(os.path.dirname(ledger.path), f"pg-{pg_id}")


def reserve(pg_id: str, bundles: dict):
    """The reservation task: take ``bundles`` from this host's ledger, then make their
    ledgers. Returns where the reservation is held (None: removed first)."""
    from distributed import get_worker, secede

    group = _group_dir(pg_id)
    removed = os.path.join(group, "removed")
    os.makedirs(group, exist_ok=True)
    total = _sum(bundles.values())
    secede()  # waiting for the CPUs must not hold one of the worker's threads
    if not process_ledger().acquire(total, give_up=lambda: os.path.exists(removed)):
        return None
    with _group_lock(group):
        if os.path.exists(removed):  # removed while we waited: give it back
            process_ledger().release(total)
            return None
        with open(os.path.join(group, "holder"), "w") as f:
            f.write(str(os.getpid()))
        for index, bundle in bundles.items():
            final = os.path.join(group, str(index))
            staging = final + ".tmp"
            os.makedirs(staging, exist_ok=True)
            Ledger.create(staging, bundle).close()
            os.rename(staging, final)  # whole, or not there: a waiting task never reads half
    return {"address": get_worker().address, "pid": os.getpid()}


def _ready(group, pg_id, *reservations):
    """The group's ``ready()`` value, once every host has reserved its bundles."""
    from distributed import get_client

    quiet_errors.install()
    if any(r is None for r in reservations):
        raise _removed_error()
    client = get_client()
    if client.get_metadata([METADATA, pg_id, "state"], None) == "PENDING":
        client.set_metadata([METADATA, pg_id, "state"], "CREATED")
    return Sealed.seal(group)


@contextlib.contextmanager
def _group_lock(group: str):
    """Orders a reservation's completion against the group's removal on one host."""
    fd = os.open(os.path.join(group, "lock"), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _remove_here(pg_id: str, totals: dict, dask_worker=None) -> None:
    """On each worker of the group's hosts: mark the group removed; the process that
    reserved it gives the reservation back; the bundles' ledgers go."""
    group = _group_dir(pg_id)
    os.makedirs(group, exist_ok=True)
    with _group_lock(group):
        with open(os.path.join(group, "removed"), "w"):
            pass
        try:
            with open(os.path.join(group, "holder")) as f:
                holder = int(f.read() or 0)
        except FileNotFoundError:
            holder = 0
        if holder == os.getpid():
            host = _driver.host_of(dask_worker.address) if dask_worker is not None else None
            total = totals.get(host) or (next(iter(totals.values())) if len(totals) == 1 else None)
            if total:
                process_ledger().release(total)
            os.unlink(os.path.join(group, "holder"))
        for entry in os.listdir(group):
            if entry not in ("removed", "lock"):
                shutil.rmtree(os.path.join(group, entry), ignore_errors=True)
    with _bundle_lock:  # a task still running on one releases into its open files
        for key in [k for k in _bundle_ledgers if k[0] == pg_id]:
            del _bundle_ledgers[key]


_bundle_lock = threading.Lock()
_bundle_ledgers: dict = {}  # (pg id, index) -> Ledger, opened once per process


def _bundle_ledger(pg_id: str, index: int) -> Optional[Ledger]:
    with _bundle_lock:
        hit = _bundle_ledgers.get((pg_id, index))
        if hit is not None:
            return hit
        path = os.path.join(_group_dir(pg_id), str(index), "ledger")
        try:
            opened = Ledger(path)
        except FileNotFoundError:
            return None
        _bundle_ledgers[(pg_id, index)] = opened
        return opened


def take(pg_id: str, indices: tuple, request: dict, give_up) -> Optional[Ledger]:
    """Take ``request`` from one of the group's bundles ``indices`` on this host, waiting
    (the caller seceded) until one is made and has room. Returns its ledger; None once
    ``give_up()``; raises ``TaskPlacementGroupRemoved`` once the group is removed."""
    removed = os.path.join(_group_dir(pg_id), "removed")
    delay = 0.0005
    while True:
        if os.path.exists(removed):
            raise _removed_error()
        for index in indices:
            ledger = _bundle_ledger(pg_id, index)
            if ledger is not None and (not request or ledger.acquire(request, give_up=lambda: True)):
                return ledger
        if give_up():
            return None
        time.sleep(delay)
        delay = min(delay * 2, 0.02)


_driver.on_teardown(remove_job_groups)
