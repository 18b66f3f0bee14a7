"""The record of finished tasks that ``ray.timeline()`` reads (a scheduler plugin).

Ray keeps the events of the last 100,000 tasks for its timeline and state API
(``RAY_task_events_max_num_task_in_gcs``). Dask's own task stream keeps as many, but as
the full ``task-finished`` message of each, several times what a timeline shows (the
soak in ``benchmarks/README.md``). This plugin keeps one tuple per task that ran, with
what Ray's state API shows of it (``ray.util.state.list_tasks``, ``state_rows.py``):
its name, function, job, worker pid and, if it failed, the error's text. The
dashboard's task stream is Dask's and unchanged.
"""

from __future__ import annotations

from collections import deque
from typing import Optional

from distributed.diagnostics.plugin import SchedulerPlugin

NAME = "raycompat-task-events"
#: As Ray's ``RAY_task_events_max_num_task_in_gcs``.
MAX_TASKS = 100_000


#: Characters kept of a failed task's error text.
MAX_ERROR_TEXT = 1000


class TaskEventsPlugin(SchedulerPlugin):
    """``(key, worker, thread, start, stop, status, about)`` of each task that ran, oldest
    first; ``about`` is ``(name, function name, job id, worker pid, error text)`` for a
    raycompat task (``task_about``), None for others."""

    name = NAME

    def __init__(self, maxlen: int = MAX_TASKS, scheduler=None):
        self.events: deque = deque(maxlen=maxlen)
        self.scheduler = scheduler

    def transition(self, key, start, finish, *args, **kwargs) -> None:
        if start != "processing" or finish not in ("memory", "erred"):
            return
        about = None
        for ss in kwargs.get("startstops") or ():
            if ss.get("action") == "compute":
                if about is None:
                    about = self._about(key, finish, kwargs)
                self.events.append(
                    (key, kwargs.get("worker"), kwargs.get("thread"), ss["start"], ss["stop"],
                     kwargs.get("status", "OK" if finish == "memory" else "error"), about)
                )

    def _about(self, key, finish, kwargs):
        if self.scheduler is None:
            return None
        ts = self.scheduler.tasks.get(key)
        spec = task_spec(ts) if ts is not None else None
        if spec is None:
            return None
        ws = self.scheduler.workers.get(kwargs.get("worker"))
        error = (kwargs.get("exception_text") or "error")[:MAX_ERROR_TEXT] if finish == "erred" else None
        return (spec.name, spec.function_name, spec.job_id, ws.pid if ws is not None else None, error)


def task_spec(ts):
    """The ``TaskSpec`` of a raycompat task (``run_task(spec, *deps)``), None for any
    other key (puts, actors, placeholders, other clients' tasks)."""
    run_spec = ts.run_spec
    if getattr(getattr(run_spec, "func", None), "__name__", None) != "run_task":
        return None
    args = run_spec.args
    spec = args[0] if args else None
    return spec if type(spec).__name__ == "TaskSpec" else None


def install(scheduler) -> None:
    """Add the plugin once (also over ``run_on_scheduler`` when joining a cluster)."""
    if NAME not in scheduler.plugins:
        scheduler.add_plugin(TaskEventsPlugin(scheduler=scheduler))


def install_remote(dask_scheduler) -> bool:
    install(dask_scheduler)
    return True


def collect_remote(dask_scheduler, since: float = 0.0) -> Optional[list]:
    """``(key, worker, thread, start, stop, status)`` of the recorded tasks that ended
    after ``since``; None where nothing records them."""
    plugin = dask_scheduler.plugins.get(NAME)
    if plugin is None:
        return None
    return [e[:6] for e in plugin.events if e[4] >= since]
