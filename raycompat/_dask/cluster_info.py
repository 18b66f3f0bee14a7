"""``cluster_resources``, ``available_resources`` and ``nodes`` from the scheduler's state.

A Ray node is a host: Dask workers are grouped by host. CPUs are the workers' threads
(on the embedded cluster: the ledger's totals), memory their memory limits, GPUs and
custom resources the worker resources they advertise (embedded: the ledger's).
"""

from __future__ import annotations

from collections import defaultdict

from raycompat._dask import host_ledger, interrupts
from raycompat._dask.actor_host import task_workers
from raycompat._dask import driver as _driver


def _workers():
    client = _driver.client()
    return task_workers(client.scheduler_info(n_workers=-1)["workers"])


def _by_host():
    hosts = defaultdict(list)
    for addr, w in _workers().items():
        hosts[w["host"]].append(w)
    return hosts


def _host_resources(workers, ledger_totals=None) -> dict:
    res = defaultdict(float)
    for w in workers:
        res["CPU"] += w.get("nthreads", 1)
        res["memory"] += float(w.get("memory_limit") or 0)
        for k, v in (w.get("resources") or {}).items():
            if not k.startswith("raycompat-"):
                res[k] += float(v)
    if ledger_totals is not None:
        res.update({k: float(v) for k, v in ledger_totals.items()})
    res["object_store_memory"] = res["memory"] * 0.3
    return dict(res)


@interrupts.api_call
def nodes() -> list[dict]:
    _driver.current_session()
    ledger = _driver.embedded_ledger()
    out = []
    for host, workers in sorted(_by_host().items()):
        resources = _host_resources(workers, ledger.totals if ledger is not None else None)
        resources[f"node:{host}"] = 1.0
        node_id = _driver.node_id_of_host(host)
        out.append(
            {
                "NodeID": node_id,
                "Alive": True,
                "NodeManagerAddress": host,
                "NodeManagerHostname": host,
                "NodeManagerPort": 0,
                "ObjectManagerPort": 0,
                "ObjectStoreSocketName": "",
                "RayletSocketName": "",
                "MetricsExportPort": 0,
                "NodeName": host,
                "RuntimeEnvAgentPort": 0,
                "DeathReason": 0,
                "DeathReasonMessage": "",
                "alive": True,
                "Resources": resources,
                "Labels": {"ray.io/node_id": node_id},
                "DaskWorkers": sorted(w["id"] if "id" in w else w.get("name") for w in workers),
            }
        )
    return out


def cluster_resources() -> dict:
    total = defaultdict(float)
    for node in nodes():
        for k, v in node["Resources"].items():
            total[k] += v
    return dict(total)


@interrupts.api_call
def available_resources() -> dict:
    """Totals minus what running tasks hold; resources at zero are left out, as in Ray."""
    _driver.current_session()
    ledger = _driver.embedded_ledger()
    total = cluster_resources()
    if ledger is not None:
        avail = {**total, **ledger.available()}
    else:
        avail = dict(total)
        avail["CPU"] = _joined_available_cpus()
    return {k: v for k, v in avail.items() if v > 1e-9}


def _joined_available_cpus() -> float:
    """A joined cluster's free CPUs: each host's ledger, read on one of its workers (a
    host whose ledger cannot be read counts its idle threads)."""
    hosts: dict = {}  # host -> (one worker's address, its workers)
    for addr, w in _workers().items():
        hosts.setdefault(w["host"], (addr, []))[1].append(w)
    if not hosts:
        return 0.0
    picked = [addr for addr, _ in hosts.values()]
    states = _driver.client().run(host_ledger.host_state, workers=picked, on_error="return")
    free = 0.0
    for addr, ws in hosts.values():
        state = states.get(addr)
        if isinstance(state, dict):
            free += state["available"]
        else:
            free += sum(w.get("nthreads", 1) - w.get("metrics", {}).get("executing", 0) for w in ws)
    return free
