"""A node that dies fails the tasks that may run nowhere else, as Ray fails them.

Ray keeps a task with ``NodeAffinitySchedulingStrategy(node_id, soft=False)`` on that
node; if the node dies before the task runs (or while it runs and it is retried), the
task fails with ``TaskUnschedulableError`` ("The node specified via
NodeAffinitySchedulingStrategy doesn't exist any more..."). On Dask such a task is
restricted to the node's host (``placement.strategy``), and when the host's last worker
is gone the scheduler keeps it in ``no-worker`` forever. This scheduler plugin, on a
worker's removal, waits ``GRACE`` seconds (a worker that its nanny restarts is the same
node, back within about a second) and then errs every raycompat task left waiting for a
host that has no worker. Tasks of other Dask clients are left as they are.
"""

from __future__ import annotations

import asyncio
import time

from distributed.diagnostics.plugin import SchedulerPlugin
from distributed.protocol import pickle

from raycompat import exceptions as rex
from raycompat._dask import retries

#: Seconds a host may be without workers before its hard-affinity tasks fail.
GRACE = 5.0
NAME = "raycompat-node-loss"

MESSAGE = (
    "The node specified via NodeAffinitySchedulingStrategy doesn't exist any more or is "
    "infeasible, and soft=False was specified."
)


class NodeLossPlugin(SchedulerPlugin):
    name = NAME

    def __init__(self, grace: float = GRACE):
        self.grace = grace

    def remove_worker(self, scheduler, worker, **kwargs):
        asyncio.get_running_loop().call_later(self.grace, fail_stranded, scheduler)


def fail_stranded(scheduler) -> list:
    """Err the raycompat tasks restricted to hosts that have no worker; their keys."""
    live_hosts = {ws.host for ws in scheduler.workers.values()}
    stranded = [
        ts for ts in scheduler.unrunnable
        if ts.host_restrictions and not ts.loose_restrictions and not ts.worker_restrictions
        and not ts.host_restrictions & live_hosts and retries.ANNOTATION in (ts.annotations or {})
    ]
    if not stranded:
        return []
    stimulus_id = f"raycompat-node-lost-{time.time()}"
    recommendations: dict = {}
    for ts in stranded:
        error = pickle.dumps(rex.TaskUnschedulableError(MESSAGE))
        recommendations.update(
            scheduler.transition(ts.key, "erred", exception=error, cause=ts.key, stimulus_id=stimulus_id)
        )
    scheduler.transitions(recommendations, stimulus_id=stimulus_id)
    return [ts.key for ts in stranded]


def install(scheduler) -> None:
    if NAME not in scheduler.plugins:
        scheduler.add_plugin(NodeLossPlugin())


def install_remote(dask_scheduler) -> bool:
    install(dask_scheduler)
    return True
