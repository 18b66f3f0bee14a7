"""The record of finished tasks that ``ray.timeline()`` reads (a scheduler plugin).

Ray keeps the events of the last 100,000 tasks for its timeline and state API
(``RAY_task_events_max_num_task_in_gcs``). Dask's own task stream keeps as many, but as
the full ``task-finished`` message of each, several times what a timeline shows (the
soak in ``benchmarks/README.md``). This plugin keeps one tuple per task that ran.
The dashboard's task stream is Dask's and unchanged.
"""

from __future__ import annotations

from collections import deque
from typing import Optional

from distributed.diagnostics.plugin import SchedulerPlugin

NAME = "raycompat-task-events"
#: As Ray's ``RAY_task_events_max_num_task_in_gcs``.
MAX_TASKS = 100_000


class TaskEventsPlugin(SchedulerPlugin):
    """``(key, worker, thread, start, stop, status)`` of each task that ran, oldest first."""

    name = NAME

    def __init__(self, maxlen: int = MAX_TASKS):
        self.events: deque = deque(maxlen=maxlen)

    def transition(self, key, start, finish, *args, **kwargs) -> None:
        if start != "processing" or finish not in ("memory", "erred"):
            return
        for ss in kwargs.get("startstops") or ():
            if ss.get("action") == "compute":
                self.events.append(
                    (key, kwargs.get("worker"), kwargs.get("thread"), ss["start"], ss["stop"],
                     kwargs.get("status", "OK" if finish == "memory" else "error"))
                )


def install(scheduler) -> None:
    """Add the plugin once (also over ``run_on_scheduler`` when joining a cluster)."""
    if NAME not in scheduler.plugins:
        scheduler.add_plugin(TaskEventsPlugin())


def install_remote(dask_scheduler) -> bool:
    install(dask_scheduler)
    return True


def collect_remote(dask_scheduler, since: float = 0.0) -> Optional[list]:
    """The recorded tasks that ended after ``since``; None where nothing records them."""
    plugin = dask_scheduler.plugins.get(NAME)
    if plugin is None:
        return None
    return [e for e in plugin.events if e[4] >= since]
