"""Which Ray task (if any) the current thread is running, for ``get_runtime_context``,
for blocking ``get``/``wait`` (which must secede and give back the CPU), and for
``ObjectRef`` pickling (which needs the job to pin escaped refs under)."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Callable, Optional


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
    #: The ``runtime_env`` env_vars this task runs with (its children inherit them).
    env_vars: Optional[dict] = None
    #: The thread's id while it runs the user's code, the only place ``ray.cancel`` may
    #: raise KeyboardInterrupt (see ``interrupts.py``); None elsewhere.
    interruptible_thread: Optional[int] = None
    #: While the task waits in ``get``/``wait``: how ``ray.cancel`` wakes it.
    waker: Optional[Callable[[], None]] = None
    #: ``ray.cancel``'s KeyboardInterrupt was set or raised (at most once per task).
    interrupted: bool = False
    #: The actor's shell (``actor_shell.Shell``) when this is an actor call; None in a task.
    actor: object = None
    #: The runtime_env this task runs in, which its child tasks inherit (tasks only: an
    #: actor's is in its shell's meta).
    runtime_env: object = None
    #: ``(placement group id, capture_child_tasks)`` when it runs in a placement group.
    placement_group: Optional[tuple] = None


def inherited_env_vars() -> dict:
    """The env_vars of the task or actor running in this thread (Ray: children inherit
    their parent's runtime_env)."""
    ctx = current_task()
    if ctx is None:
        return {}
    actor = ctx.actor
    if actor is not None:
        return dict(actor.meta.get("env_vars") or {})
    return dict(ctx.env_vars or {})


_tls = threading.local()


def current_task() -> Optional[TaskContext]:
    return getattr(_tls, "task", None)


def set_current_task(ctx: Optional[TaskContext]) -> Optional[TaskContext]:
    prev = getattr(_tls, "task", None)
    _tls.task = ctx
    return prev


#: The driver's job id (``driver.py``, above this one, registers its lookup).
_driver_job: Callable[[], Optional[str]] = lambda: None


def set_driver_job_source(source: Callable[[], Optional[str]]) -> None:
    global _driver_job
    _driver_job = source


def current_job_id() -> Optional[str]:
    """The job this thread works for: its task's or actor's, else the driver's."""
    ctx = current_task()
    if ctx is not None:
        return ctx.job_id
    return _driver_job()


def env_vars_for_call(session, runtime_env: Optional[dict]) -> Optional[dict]:
    """The env_vars a new task or actor runs with (Ray): the job's from the driver, the
    parent's inside a task or actor, overridden key by key by the call's own."""
    if session is not None:
        base = (session.runtime_env or {}).get("env_vars") or {}
    else:
        base = inherited_env_vars()
    merged = {**base, **((runtime_env or {}).get("env_vars") or {})}
    return merged or None
