"""``ray.get_runtime_context()``: who and where the calling code is.

On the driver: the job, the namespace and the driver's node. Inside a task: also the
task's id (its Dask key), name and assigned resources.
"""

from __future__ import annotations

import os
from typing import Any, Optional
from raycompat._dask import context as _task_context
from raycompat._dask import driver as _driver
from raycompat._dask.actor_api import handle_of_shell
from raycompat.actor import ActorHandle


class RuntimeContext:
    """Ray's ``RuntimeContext``."""

    def _task(self):
        return _task_context.current_task()

    def get(self) -> dict:
        """Ray's dict: ``task_id`` and ``actor_id`` only inside a task or actor."""
        context = {"job_id": self.get_job_id(), "node_id": self.get_node_id(), "namespace": self.namespace}
        if self._task() is not None:
            context["task_id"] = self.get_task_id()
            if self.get_actor_id() is not None:
                context["actor_id"] = self.get_actor_id()
        return context

    def _require_worker(self, error=AssertionError):
        if self._task() is None:
            if error is AssertionError:
                raise AssertionError(
                    "This method is only available when the process is a                 "
                    "worker. Current mode: 0"
                )
            raise error("This method is only available when the process is a worker. Current mode: 0")

    def get_job_id(self) -> str:
        _driver.current_session()
        return _driver.current_job_id()

    def get_task_id(self) -> Optional[str]:
        t = self._task()
        if t is None:
            return None
        import hashlib

        return hashlib.blake2b(t.key.encode(), digest_size=24).hexdigest()

    def get_task_name(self) -> Optional[str]:
        t = self._task()
        return t.name if t is not None else None

    def get_task_function_name(self) -> Optional[str]:
        t = self._task()
        return t.function_name if t is not None else None

    def get_node_id(self) -> str:
        s = _driver.current_session()
        if self._task() is not None or s is None:
            import distributed

            return _driver.node_id_of_host(distributed.get_worker().ip)
        return _driver.node_id_of_host(_driver.host_of(s.client.scheduler.address))

    def get_worker_id(self) -> str:
        import hashlib

        if self._task() is not None:
            import distributed

            ident = distributed.get_worker().address
        else:
            ident = _driver.current_session().client.id
        return hashlib.blake2b(ident.encode(), digest_size=28).hexdigest()

    def _actor(self):
        t = self._task()
        return getattr(t, "actor", None) if t is not None else None

    def get_actor_id(self) -> Optional[str]:
        a = self._actor()
        return a.actor_id if a is not None else None

    def get_actor_name(self) -> Optional[str]:
        """The actor's name; ``""`` for an unnamed actor, None outside actors (as Ray)."""
        a = self._actor()
        return (a.meta.get("name") or "") if a is not None else None

    @property
    def namespace(self) -> str:
        _driver.current_session()
        return _driver.current_namespace()

    @property
    def was_current_actor_reconstructed(self) -> bool:
        self._require_worker()
        a = self._actor()
        return bool(a is not None and a.meta.get("reconstructed"))

    @property
    def current_actor(self):
        """A handle to the actor this code runs in."""
        a = self._actor()
        if a is None:
            raise RuntimeError("This method is only available in an actor.")

        return ActorHandle._from_record(handle_of_shell(a))

    def get_assigned_resources(self) -> dict[str, Any]:
        self._require_worker()
        return dict(self._task().resources)

    def is_canceled(self) -> bool:
        self._require_worker(RuntimeError)
        t = self._task()
        return bool(t and t.cancelled)

    @property
    def gcs_address(self) -> str:
        return _driver.current_session().client.scheduler.address

    def get_runtime_env_string(self) -> str:
        import json

        s = _driver.current_session()
        return json.dumps(s.runtime_env if s is not None else {})

    @property
    def runtime_env(self) -> dict:
        import json

        return json.loads(self.get_runtime_env_string())

    def get_accelerator_ids(self) -> dict:
        return {"GPU": [str(i) for i in _gpu_ids()]}


def _gpu_ids() -> list:
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if not visible:
        return []
    return [int(x) if x.isdigit() else x for x in visible.split(",") if x]


_context = RuntimeContext()


def get_runtime_context() -> RuntimeContext:
    return _context
