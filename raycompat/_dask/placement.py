"""Where a task or an actor may run: its resource request, the resources Dask should ask
of a worker, feasibility, and the scheduling strategy (one set of rules for both).

Ray's request: ``num_cpus`` (a task 1 by default; an actor 1 to be placed and 0 held
for its lifetime), ``num_gpus`` and custom ``resources``. On the embedded cluster the
node ledger (``ledger.py``) accounts all of them; on a cluster raycompat joins, each
host's ledger accounts its CPUs (``host_ledger.py``: its workers' threads) and GPUs and
custom resources are Dask worker resources; a task that asks for more CPUs than some
hosts have goes to the hosts that have them. A request no node can meet stays pending,
as Ray keeps it, with a warning.
``scheduling_strategy``: ``SPREAD`` round-robins over the task workers (soft),
``NodeAffinitySchedulingStrategy`` restricts to that host (a Dask host restriction).
"""

from __future__ import annotations

import itertools
import time
import warnings
import weakref
from typing import Any, Optional

from raycompat._dask import driver as _driver
from raycompat._dask.actor_host import task_workers
from raycompat.util.scheduling_strategies import NodeAffinitySchedulingStrategy

_spread_counter = itertools.count()
_infeasible_warned: set = set()
_workers_cache: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()  # client -> (time, workers)


def resource_request(options: dict, default_cpus: Optional[float] = 1.0) -> dict:
    """What the options ask for, zeros dropped; ``num_cpus`` not given counts as
    ``default_cpus`` (None: no CPU)."""
    req = {}
    num_cpus = options.get("num_cpus")
    if num_cpus is not None:
        req["CPU"] = float(num_cpus)
    elif default_cpus is not None:
        req["CPU"] = default_cpus
    if options.get("num_gpus"):
        req["GPU"] = float(options["num_gpus"])
    for k, v in (options.get("resources") or {}).items():
        if v:
            req[k] = float(v)
    return {k: v for k, v in req.items() if v > 0}


def dask_resources(request: dict) -> dict:
    """The Dask worker resources for ``request`` on a joined cluster (CPUs are slots)."""
    return {k: v for k, v in request.items() if k != "CPU"}


def warn_infeasible(name, request, available_desc) -> None:
    key = (name, tuple(sorted(request.items())))
    if key in _infeasible_warned:
        return
    _infeasible_warned.add(key)
    warnings.warn(
        f"The task {name} requires {request}, which no worker of this cluster offers "
        f"({available_desc}). It stays pending until such a worker joins, as Ray keeps "
        "infeasible tasks pending.",
        UserWarning,
        stacklevel=5,
    )


def for_task(client, options, name, in_group: bool = False) -> tuple:
    """Dask ``submit`` keywords for a task's resources, and its request (a task in a
    placement group is checked against its bundles instead: ``placement_groups.py``)."""
    out: dict[str, Any] = {}
    request = resource_request(options)
    ledger = _driver.embedded_ledger()
    if in_group:
        resources = {} if ledger is not None else dask_resources(request)
        return ({"resources": resources} if resources else {}), request
    if ledger is not None:
        if not ledger.feasible(request):
            warn_infeasible(name, request, f"node totals {ledger.totals}")
            missing = {k: v for k, v in request.items() if v > ledger.totals.get(k, 0.0)}
            out["resources"] = {f"raycompat-infeasible-{k}": v for k, v in missing.items()}
        return out, request
    resources = dask_resources(request)
    if resources:
        out["resources"] = resources
        offered = [dict(w.get("resources") or {}) for w in workers(client).values()]
        if not any(all(w.get(k, 0.0) >= v for k, v in resources.items()) for w in offered):
            warn_infeasible(name, resources, f"workers offer {offered}")
    shortfall = cpu_shortfall(client, request.get("CPU", 0.0))
    if shortfall:
        # Placed as any task: a host short of CPUs now may grow (a worker restarting or
        # joining), and until then the task waits on its worker without a thread.
        warn_infeasible(name, {"CPU": request["CPU"]}, shortfall)
    return out, request


def cpu_shortfall(client, cpus: float) -> Optional[str]:
    """On a joined cluster: why no host can give ``cpus`` CPUs (None if one can)."""
    if cpus <= 1.0:
        return None
    table = workers(client)
    if not table or _eligible(table, cpus):
        return None
    table = workers(client, fresh=True)  # not a worker restarting a second ago
    if not table or _eligible(table, cpus):
        return None
    return f"its hosts have {sorted(set(host_cpus(table).values()))} CPUs"


def host_cpus(table: dict) -> dict:
    """CPUs per host of a joined cluster: its task workers' threads (as its ledger has them)."""
    cpus: dict = {}
    for w in table.values():
        cpus[w["host"]] = cpus.get(w["host"], 0) + w.get("nthreads", 1)
    return cpus


def _eligible(table: dict, cpus: float) -> dict:
    """The workers of ``table`` whose host has at least ``cpus`` CPUs."""
    if cpus <= 1.0 or _driver.embedded_ledger() is not None:
        return table
    per_host = host_cpus(table)
    return {a: w for a, w in table.items() if per_host[w["host"]] + 1e-9 >= cpus}


def workers(client, fresh: bool = False) -> dict:
    """The scheduler's worker table, cached for a second per client: placement decisions
    (SPREAD, node affinity, feasibility) must not cost a scheduler round trip per call."""
    now = time.monotonic()
    hit = _workers_cache.get(client)
    if hit is None or fresh or now - hit[0] >= 1.0:
        table = task_workers(client.scheduler_info(n_workers=-1)["workers"])
        hit = _workers_cache[client] = (now, table)
    return hit[1]


def strategy(client, options, cpus: float = 1.0) -> dict:
    """Dask ``submit`` keywords for ``scheduling_strategy`` among the hosts with ``cpus``
    CPUs; ``{"unschedulable": why}`` when a hard node affinity names a node that is not
    alive. On a joined cluster a request for more than one CPU goes to the hosts that
    have them (``DEFAULT``: Dask picks among them)."""
    chosen = options.get("scheduling_strategy")
    if chosen is None or chosen == "DEFAULT":
        if cpus > 1.0 and _driver.embedded_ledger() is None:
            table = workers(client)
            eligible = _eligible(table, cpus)
            if eligible and len(eligible) < len(table):
                # Hosts, not worker addresses: a worker its nanny restarts still counts.
                return {"workers": sorted({w["host"] for w in eligible.values()})}
        return {}
    table = workers(client)
    if chosen == "SPREAD":
        table = _eligible(table, cpus)
        addrs = sorted(table)
        if not addrs:
            return {}
        return {"workers": [addrs[next(_spread_counter) % len(addrs)]], "allow_other_workers": True}
    if isinstance(chosen, NodeAffinitySchedulingStrategy):
        hosts = sorted({w["host"] for w in table.values() if _driver.node_id_of_host(w["host"]) == chosen.node_id})
        if not hosts:
            if chosen.soft:
                return {}
            return {"unschedulable": f"node {chosen.node_id} is not alive"}
        # The node's host, not its worker addresses: a worker restarted by its nanny
        # (``ray.cancel(force=True)``, a crash) is the same node; ``node_loss.py`` fails
        # a hard-affinity task whose host is gone.
        return {"workers": hosts, "allow_other_workers": bool(chosen.soft)}
    return {}
