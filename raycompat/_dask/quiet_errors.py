"""Keep distributed's per-task "Compute Failed" ERROR out of the worker's log for
raycompat's tasks: Ray prints nothing when a task raises; the error reaches the
caller's ``get``. Other tasks' failures are logged as Dask logs them."""

from __future__ import annotations

import logging

#: The functions of raycompat's Dask tasks whose errors are Ray errors for a ``get``.
QUIET_FUNCTIONS = ("run_task", "_raise_unschedulable", "_ready_when_removed", "_raise_removed", "_ready(")


class _QuietFilter(logging.Filter):
    def filter(self, record):
        text = f"{getattr(record, 'msg', '')} {record.args}"
        return not any(name in text for name in QUIET_FUNCTIONS)


_installed = False


def install() -> None:
    """Add the filter to this worker process's loggers (once)."""
    global _installed
    if not _installed:
        _installed = True
        logging.getLogger("distributed.worker").addFilter(_QuietFilter())
        logging.getLogger("distributed.worker.state_machine").addFilter(_QuietFilter())
