"""Ray's per-task ``max_retries`` for worker deaths, on the embedded cluster.

Ray re-runs a task whose worker process died up to ``max_retries`` times (default 3,
``-1`` without limit, ``0`` never) and then raises ``WorkerCrashedError``. Dask counts
worker deaths per task too (``TaskState.suspicious``), but against one scheduler-wide
limit, ``distributed.scheduler.allowed-failures`` (default 3), and then raises
``KilledWorker``. On the cluster raycompat starts, the limit is raised out of reach and
this scheduler plugin starts each new task's count at ``limit - max_retries``, so Dask's
own bookkeeping enforces Ray's per-task number. Tasks without the annotation (anything
not submitted by raycompat) keep Dask's default of 3. On clusters raycompat only
connects to, the scheduler's own ``allowed-failures`` applies (see README).
"""

from __future__ import annotations

from distributed.diagnostics.plugin import SchedulerPlugin

ANNOTATION = "raycompat_max_retries"
#: allowed-failures on the embedded cluster: "no limit" for max_retries=-1.
EMBEDDED_ALLOWED_FAILURES = 1_000_000
DASK_DEFAULT = 3


class MaxRetriesPlugin(SchedulerPlugin):
    name = "raycompat-max-retries"

    def update_graph(self, scheduler, *, tasks, annotations, **kwargs):
        allowed = scheduler.allowed_failures
        per_key = (annotations or {}).get(ANNOTATION, {})
        for key in tasks:
            ts = scheduler.tasks.get(key)
            if ts is None or ts.suspicious:
                continue
            n = per_key.get(key, DASK_DEFAULT)
            if n >= 0:
                ts.suspicious = max(0, allowed - n)
