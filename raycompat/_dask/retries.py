"""Ray's per-task ``max_retries`` for worker deaths.

Ray re-runs a task whose worker process died up to ``max_retries`` times (default 3,
``-1`` without limit, ``0`` never) and then raises ``WorkerCrashedError``. Dask counts
worker deaths per task too (``TaskState.suspicious``), but against one scheduler-wide
limit, ``distributed.scheduler.allowed-failures`` (default 3), and then raises
``KilledWorker``. This scheduler plugin raises the limit out of reach and starts each
new task's count at ``limit - max_retries``, so Dask's own bookkeeping enforces Ray's
per-task number. Tasks without the annotation (anything not submitted by raycompat) keep
the limit the scheduler had (Dask's default, 3, on the embedded cluster; the operator's
``allowed-failures`` on a cluster raycompat joins, where the first driver to connect
installs the plugin over ``run_on_scheduler``).
"""

from __future__ import annotations

from distributed.diagnostics.plugin import SchedulerPlugin

ANNOTATION = "raycompat_max_retries"
#: allowed-failures on the embedded cluster: "no limit" for max_retries=-1.
EMBEDDED_ALLOWED_FAILURES = 1_000_000
DASK_DEFAULT = 3


class MaxRetriesPlugin(SchedulerPlugin):
    name = "raycompat-max-retries"

    def __init__(self, base: int = DASK_DEFAULT):
        #: The limit for tasks without the annotation.
        self.base = base

    def update_graph(self, scheduler, *, tasks, annotations, **kwargs):
        allowed = scheduler.allowed_failures
        per_key = (annotations or {}).get(ANNOTATION, {})
        for key in tasks:
            ts = scheduler.tasks.get(key)
            if ts is None or ts.suspicious:
                continue
            n = per_key.get(key, self.base)
            if n >= 0:
                ts.suspicious = max(0, allowed - n)


def install_remote(dask_scheduler) -> bool:
    """On a joined cluster's scheduler (once): the operator's limit stays the limit of
    every task raycompat did not submit, including those already there."""
    if MaxRetriesPlugin.name in dask_scheduler.plugins:
        return True
    base = dask_scheduler.allowed_failures
    if base < EMBEDDED_ALLOWED_FAILURES:
        for ts in dask_scheduler.tasks.values():
            ts.suspicious += EMBEDDED_ALLOWED_FAILURES - base
        dask_scheduler.allowed_failures = EMBEDDED_ALLOWED_FAILURES
    dask_scheduler.add_plugin(MaxRetriesPlugin(base))
    return True
