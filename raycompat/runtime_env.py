"""``ray.runtime_env``: ``RuntimeEnv`` and ``RuntimeEnvConfig``, as Ray programs build them.

Ray's ``RuntimeEnv`` is a ``dict`` of the runtime_env fields given (those left ``None``
are absent), accepted wherever a runtime_env dict is; so is this one. The fields
raycompat cannot honour on Dask raise the same error as in a plain dict, when it is used
(``raycompat._private.runtime_env``).
"""

from __future__ import annotations

from typing import Any, Optional


class RuntimeEnvConfig(dict):
    """Ray's ``RuntimeEnvConfig``: setup settings (kept, not used: Dask sets up at once)."""

    def __init__(self, setup_timeout_seconds: int = 600, eager_install: bool = True,
                 log_files: Optional[list] = None):
        super().__init__(setup_timeout_seconds=setup_timeout_seconds, eager_install=eager_install)
        if log_files is not None:
            self["log_files"] = log_files


class RuntimeEnv(dict):
    """A runtime_env as a ``dict`` of the fields given."""

    def __init__(self, *, py_modules=None, py_executable=None, working_dir=None, pip=None, conda=None,
                 container=None, env_vars=None, worker_process_setup_hook=None, nsight=None,
                 rocprof_sys=None, config=None, _validate: bool = True, image_uri=None, uv=None,
                 **kwargs: Any):
        super().__init__()
        fields = dict(py_modules=py_modules, py_executable=py_executable, working_dir=working_dir,
                      pip=pip, conda=conda, container=container, env_vars=env_vars,
                      worker_process_setup_hook=worker_process_setup_hook, nsight=nsight,
                      rocprof_sys=rocprof_sys, config=config, image_uri=image_uri, uv=uv, **kwargs)
        self.update({k: v for k, v in fields.items() if v is not None})

    def to_dict(self) -> dict:
        return dict(self)


__all__ = ["RuntimeEnv", "RuntimeEnvConfig"]
