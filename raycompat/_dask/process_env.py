"""Environment variables and the working directory that calls set for their duration.

Ray starts a worker process per ``runtime_env``, so a task's ``env_vars`` or
``working_dir`` never meet another task's. Here calls with different environments can
run at once in one Dask worker process (fractional-CPU tasks, a task blocked in ``get``
beside the next one, actor calls), and they share ``os.environ`` and the cwd. Saving
and restoring per call assumes calls end in the reverse order they started; when they
do not, one call's values outlive it and every later task of that worker sees them.

So each call pushes a layer, and ending a call (in any order) sets each of its keys to
the newest layer still active that sets it, or, when none does, to its value from
before the first layer that set it.
"""

from __future__ import annotations

import os
import threading
from typing import Optional

#: The key of a layer that stands for the working directory.
CWD = "\0cwd"

_lock = threading.Lock()
_layers: list = []  # [(token, {key: value})], oldest first
_baseline: dict = {}  # key -> value before any active layer set it (None: unset)


def _current(key: str) -> Optional[str]:
    return os.getcwd() if key == CWD else os.environ.get(key)


def _apply(key: str, value: Optional[str]) -> None:
    if key == CWD:
        try:
            os.chdir(value)
        except (OSError, TypeError):
            pass
    elif value is None:
        os.environ.pop(key, None)
    else:
        os.environ[key] = value


def push(values: dict) -> object:
    """Set ``values`` (env var names, or ``CWD``) until ``pop`` of the returned token."""
    token = object()
    with _lock:
        for key, value in values.items():
            if key not in _baseline:
                _baseline[key] = _current(key)
            _apply(key, value)
        _layers.append((token, dict(values)))
    return token


def pop(token) -> None:
    with _lock:
        for i, (t, values) in enumerate(_layers):
            if t is token:
                del _layers[i]
                break
        else:
            return
        for key in values:
            for _, other in reversed(_layers):
                if key in other:
                    _apply(key, other[key])
                    break
            else:
                _apply(key, _baseline.pop(key))
