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

Dask counts a death against every task *assigned* to the worker, and the embedded
cluster assigns tasks ahead (``worker-saturation: inf``, for throughput), so the tasks
queued behind the one a worker ran would pay for its death too (the fault benchmark: 809
of 1,000 default tasks failed after 4 kills). Ray charges only the task the worker ran.
So on the embedded cluster each worker process keeps the keys it is running in a small
file (``running-<pid>`` beside the node ledger), and after a death the plugin gives
back the count of the tasks that were only queued. Their first death still fails a
``max_retries=0`` task that was only queued (Dask decides before any plugin hears of the
death): the README says so.
"""

from __future__ import annotations

import os
import threading

from distributed.diagnostics.plugin import SchedulerPlugin

from raycompat._dask import ledger as _ledger

ANNOTATION = "raycompat_max_retries"
#: allowed-failures on the embedded cluster: "no limit" for max_retries=-1.
EMBEDDED_ALLOWED_FAILURES = 1_000_000
DASK_DEFAULT = 3


class MaxRetriesPlugin(SchedulerPlugin):
    name = "raycompat-max-retries"

    def __init__(self, base: int = DASK_DEFAULT, running_dir: "str | None" = None):
        #: The limit for tasks without the annotation.
        self.base = base
        #: Where the embedded cluster's workers list the tasks they run (None: unknown).
        self.running_dir = running_dir
        #: worker address -> pid, kept from registration (gone from the state at removal).
        self._pids: dict = {}

    def start(self, scheduler):
        """Also called by hand when added to a running scheduler (Dask does not)."""
        for address in scheduler.workers:
            self.add_worker(scheduler, address)

    def add_worker(self, scheduler, worker):
        ws = scheduler.workers.get(worker)
        if ws is not None and self.running_dir is not None:
            self._pids[worker] = ws.pid

    def remove_worker(self, scheduler, worker, *, stimulus_id, **kwargs):
        pid = self._pids.pop(worker, None)
        if pid is None:
            return
        running = _running_keys(self.running_dir, pid)
        for msg in reversed(scheduler.get_events(worker)):
            if isinstance(msg[1], dict) and msg[1].get("action") == "remove-worker":
                if msg[1].get("expected"):
                    return
                for key in msg[1].get("processing-tasks", ()):
                    ts = scheduler.tasks.get(key)
                    if key not in running and ts is not None and ts.state != "erred" and ts.suspicious > 0:
                        ts.suspicious -= 1  # only queued there: Ray would not charge it
                break

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


# ---------------------------------------------------------------- worker side (embedded)

_running: list = []
_running_fd: "int | None" = None
_running_lock = threading.Lock()


def _running_path(directory: str, pid: int) -> str:
    return os.path.join(directory, f"running-{pid}")


def task_started(key) -> None:
    """In an embedded cluster's worker: ``key`` runs now (see the module docstring)."""
    _update_running(key, add=True)


def task_ended(key) -> None:
    _update_running(key, add=False)


def _update_running(key, add: bool) -> None:
    global _running_fd
    if not _ledger.on_embedded_cluster():
        return
    with _running_lock:
        if add:
            _running.append(str(key))
        elif str(key) in _running:
            _running.remove(str(key))
        data = "\n".join(_running).encode()
        if _running_fd is None:  # opened once, rewritten in place: two syscalls per update
            path = _running_path(os.path.dirname(os.environ[_ledger.ENV_VAR]), os.getpid())
            _running_fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        os.pwrite(_running_fd, data, 0)
        os.ftruncate(_running_fd, len(data))


def _running_keys(directory: str, pid: int) -> set:
    """The keys a dead worker process was running, from its file (which it leaves)."""
    try:
        with open(_running_path(directory, pid), "rb") as f:
            data = f.read().decode()
        os.unlink(_running_path(directory, pid))
    except OSError:
        return set()  # it never ran a task: none was running
    return set(filter(None, data.split("\n")))
