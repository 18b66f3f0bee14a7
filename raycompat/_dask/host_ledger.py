"""CPU accounting on a cluster raycompat joins: a ledger per host, made by its workers.

Ray gives each node a number of CPUs, makes a task wait until its ``num_cpus`` are free
on its node, and gives a task's CPU back while it blocks in ``get``/``wait``. The
embedded cluster does this with a node ledger its driver writes (``ledger.py``). A
cluster of ``dask scheduler`` / ``dask worker`` processes has no such file, so when a
driver connects it registers this worker plugin (idempotent: one per cluster, however
many drivers come): on every worker, present and future, it opens its host's ledger and
adds the worker's threads to that host's CPUs, and takes them away when the worker
closes (or dies: the next process to look reclaims them). Workers of one host share the
ledger by its path, a hash of the scheduler's address and the host under the system's
temporary directory; hosts share nothing.

Why not Dask's own worker resources (``dask worker --resources CPU=4``): they are per
worker process, and a task that secedes to block in ``get`` keeps them, which
deadlocks task trees (shared/docs/ray-on-dask.md, section 3.3). GPUs and custom
resources, which Ray also keeps while a task blocks, do stay Dask worker resources.
"""

from __future__ import annotations

import hashlib
import os
import tempfile

from distributed.comm import get_address_host
from distributed.diagnostics.plugin import WorkerPlugin

from raycompat._dask import ledger as _ledger

NAME = "raycompat-host-ledger"


def host_directory(scheduler_address: str, host: str) -> str:
    digest = hashlib.sha1(f"{scheduler_address}|{host}".encode()).hexdigest()[:16]
    return os.path.join(tempfile.gettempdir(), f"raycompat-{os.getuid()}", f"host-{digest}")


class HostLedgerPlugin(WorkerPlugin):
    """Joins each worker's threads to its host's CPU ledger (see the module docstring)."""

    name = NAME
    idempotent = True

    def setup(self, worker):
        if _ledger.on_embedded_cluster():
            return  # the embedded cluster's workers share the driver's ledger
        ledger = _ledger.process_ledger()
        if ledger is None or not ledger.joined:
            directory = host_directory(worker.scheduler.address, get_address_host(worker.address))
            _ledger.set_process_ledger(_ledger.Ledger.join_host(directory, worker.state.nthreads))
        else:  # another worker in this process (an in-process LocalCluster)
            ledger.add_member(worker.state.nthreads)

    def teardown(self, worker):
        ledger = _ledger.process_ledger()
        if ledger is not None and not _ledger.on_embedded_cluster():
            ledger.leave(worker.state.nthreads)


def install(client) -> None:
    """Register the plugin on the cluster ``client`` is connected to (once per cluster)."""
    client.register_plugin(HostLedgerPlugin(), name=NAME)


def host_state(dask_worker=None) -> dict:
    """On a worker: its host's CPU ``available`` and ``total`` from the ledger (or None)."""
    ledger = _ledger.process_ledger()
    if ledger is None:
        return None
    available, totals = ledger.available(), ledger.host_totals()
    return {"available": available.get("CPU", 0.0), "total": totals.get("CPU", 0.0)}
