"""The cluster ``ray.init()`` starts when given no address: a ``distributed.LocalCluster``
of worker processes on 127.0.0.1 (one per CPU, one thread each), with raycompat's
scheduler plugins, its node ledger, and the Dask settings Ray programs need.
"""

from __future__ import annotations

import logging
import math
import os
import tempfile
import warnings

import dask
import distributed

from raycompat._dask import host_pool, latency, observability, reference_plugin, retries
from raycompat._dask import spawn_guard, task_events
from raycompat._dask import ledger as _ledger


#: Dask settings the embedded cluster uses unless the user's own dask config says otherwise.
_EMBEDDED_DASK_DEFAULTS = {
    # Ray does not queue root tasks; measured 496 -> 784+ tasks/s for a submit loop.
    "distributed.scheduler.worker-saturation": float("inf"),
    # Ray workers may start subprocesses (multiprocessing inside a task).
    "distributed.worker.daemon": False,
    # Per-task max_retries for worker deaths is enforced by retries.MaxRetriesPlugin.
    "distributed.scheduler.allowed-failures": retries.EMBEDDED_ALLOWED_FAILURES,
    # The workers' statistical profiler walks every thread's stack every 10 ms; task
    # trees that block in get() keep many threads. Every 100 ms still fills the
    # dashboard's profile page: fib(12) tree 1.09-1.16 s -> 1.01-1.06 s (interleaved).
    "distributed.worker.profile.interval": "100ms",
}


def start(num_cpus, num_gpus, resources, include_dashboard, dashboard_host, dashboard_port) -> tuple:
    """Start the cluster; returns ``(cluster, client, ledger, tmpdir)``."""
    if num_cpus is None:
        num_cpus = os.cpu_count() or 1
    totals = {"CPU": float(num_cpus)}
    if num_gpus:
        totals["GPU"] = float(num_gpus)
    for name, q in (resources or {}).items():
        if name in ("CPU", "GPU"):
            raise ValueError(
                "Use the 'num_cpus' and 'num_gpus' keyword instead of 'CPU' and 'GPU' in 'resources' keyword"
            )
        totals[name] = float(q)
    n_workers = max(1, math.ceil(num_cpus))
    tmpdir = tempfile.mkdtemp(prefix="raycompat-")
    os.chmod(tmpdir, 0o700)
    ledger = _ledger.Ledger.create(tmpdir, totals)
    if include_dashboard is False:
        # Dask's scheduler serves its HTTP routes (health, metrics) even without the
        # dashboard, on port 8787 unless told otherwise: any free loopback port will do.
        dashboard_address = "127.0.0.1:0"
    else:
        port = 8787 if dashboard_port is None else dashboard_port
        dashboard_address = f"{dashboard_host}:{port}"
    spawn_guard.install()
    # The scheduler runs in this process: its warning about a key this process asked
    # for before the worker that made it announced it is expected (see refs.rebound).
    warnings.filterwarnings("ignore", message=r"Client .* desires key .* but key is unknown")
    with dask.config.set(_apply_defaults()):
        cluster = distributed.LocalCluster(
            n_workers=n_workers,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=dashboard_address,
            worker_dashboard_address=None,
            env={_ledger.ENV_VAR: ledger.path},
            # Import the task wrapper while the workers start, not on their first task.
            preload=["raycompat._dask.worker_task"],
            local_directory=tmpdir,
            silence_logs=logging.ERROR,
            scheduler_kwargs={"dashboard": include_dashboard is not False},
        )
        if cluster.scheduler.allowed_failures == retries.EMBEDDED_ALLOWED_FAILURES:
            cluster.scheduler.add_plugin(retries.MaxRetriesPlugin())
        observability.install(cluster.scheduler)
        reference_plugin.install(cluster.scheduler)
        task_events.install(cluster.scheduler)
        host_pool.install(cluster)
        intervals = latency.StreamIntervalPlugin()
        cluster.scheduler.add_plugin(intervals)
        intervals.start(cluster.scheduler)
        # Results are fetched straight from the (loopback) workers, not relayed by the
        # scheduler, which shares this process's event loop: 2,000 empty tasks 1,400-1,520/s
        # -> 1,530-1,710/s (interleaved runs).
        client = distributed.Client(cluster, set_as_default=False, direct_to_workers=True)
    return cluster, client, ledger, tmpdir


def _apply_defaults() -> dict:
    """The embedded-cluster defaults that the user's own dask config does not override."""
    shipped = dask.config.merge(*dask.config.defaults)  # the packages' own yaml defaults
    out = {}
    for key, value in _EMBEDDED_DASK_DEFAULTS.items():
        if dask.config.get(key, None) == _lookup(shipped, key):
            out[key] = value
    return out


def _lookup(tree: dict, key: str):
    node = tree
    for part in key.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    if isinstance(node, str) and node.lower() == "inf":
        return float("inf")
    return node
