"""Which Ray task (if any) the current thread is running, for ``get_runtime_context``,
for blocking ``get``/``wait`` (which must secede and give back the CPU), and for
``ObjectRef`` pickling (which needs the job to pin escaped refs under)."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Optional


@dataclass
class TaskContext:
    key: str
    name: str
    function_name: str
    job_id: str
    namespace: Optional[str]
    #: The resources this task asked for (Ray's ``get_assigned_resources``).
    resources: dict = field(default_factory=dict)
    #: What the task currently holds in the node ledger (None: no ledger).
    held: Optional[dict] = None
    ledger: object = None
    cancelled: bool = False
    #: True once the task left the worker's thread pool for good (fractional CPUs).
    seceded: bool = False


_tls = threading.local()


def current_task() -> Optional[TaskContext]:
    return getattr(_tls, "task", None)


def set_current_task(ctx: Optional[TaskContext]) -> Optional[TaskContext]:
    prev = getattr(_tls, "task", None)
    _tls.task = ctx
    return prev
