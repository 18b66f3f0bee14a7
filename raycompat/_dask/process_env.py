"""Environment variables and the working directory that calls set for their duration.

Ray starts a worker process per ``runtime_env``, so a task's ``env_vars`` or
``working_dir`` never meet another task's. Here calls with different environments can
run at once in one Dask worker process (fractional-CPU tasks, a task blocked in ``get``
beside the next one, actor calls), and they share ``os.environ`` and the cwd. Saving
and restoring per call assumes calls end in the reverse order they started; when they
do not, one call's values outlive it and every later task of that worker sees them.

So each call pushes a layer, and ending a call (in any order) sets each of its keys to
what the layers still active give, or, when none sets it, to its value from before the
first layer that did. A layer's value is a string, or a list of paths to put in front
of the key's value (PYTHONPATH): the paths of all active layers, newest first, each
once, so overlapping calls never pile copies up.
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


def _value(key: str) -> Optional[str]:
    """What the active layers (and the value from before them) give ``key``."""
    prefix: list = []
    value = _baseline.get(key)
    for _, layer in reversed(_layers):
        if key not in layer:
            continue
        v = layer[key]
        if isinstance(v, list):
            prefix.extend(p for p in v if p not in prefix)
        else:
            value = v
            break
    if prefix:
        value = os.pathsep.join(prefix + ([value] if value else []))
    return value


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
        new = {k: _current(k) for k in values if k not in _baseline}  # all read, then set
        _baseline.update(new)
        _layers.append((token, dict(values)))
        for key in values:
            _apply(key, _value(key))
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
            _apply(key, _value(key))
            if not any(key in layer for _, layer in _layers):
                del _baseline[key]
