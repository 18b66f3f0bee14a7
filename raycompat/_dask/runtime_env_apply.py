"""Applying a prepared ``runtime_env`` around a call in a worker process (current
directory, ``sys.path``, modules), and which one the running call has. See
``runtime_env.py``."""

from __future__ import annotations

import logging
import os
import sys
import threading
from typing import Callable, Optional


from raycompat import exceptions as rex
from raycompat._dask import context as _context
from raycompat._dask import process_env
from raycompat._dask.runtime_env_cache import cache_root, install_pip, package_dir, setup_errors
from raycompat._dask.runtime_env_records import PreparedEnv, Source

logger = logging.getLogger("raycompat")


# ---------------------------------------------------------------------------- applying


_apply_lock = threading.RLock()
_resolved: dict = {}  # PreparedEnv -> (working directory or None, sys.path entries)
_in_use: dict = {}  # directory -> number of calls running with it
_inserted: set = set()  # sys.path entries we put there (and will take away)
_stale: set = set()  # directories of environments no call uses any more
_pinned: dict = {}  # directory -> number of live actors whose environment it belongs to


def _resolve(env: PreparedEnv):
    hit = _resolved.get(env)
    if hit is not None:
        return hit
    root = cache_root()
    paths = [_source_dir(root, s, "py_modules entry") for s in env.py_modules]
    cwd = _source_dir(root, env.working_dir, "working_dir") if env.working_dir is not None else None
    if cwd is not None:
        paths.append(cwd)
    if env.pip is not None:
        paths += install_pip(root, env.pip)
    hit = _resolved[env] = (cwd, list(dict.fromkeys(paths)))
    return hit


def _source_dir(root: str, src: Source, field: str) -> str:
    if src.kind == "local":
        if not os.path.isdir(src.key):
            raise rex.RuntimeEnvSetupError(
                f"{field} {src.uri} points to '{src.key}', which must already exist on every node."
            )
        return src.key
    if src.key in setup_errors:
        raise rex.RuntimeEnvSetupError(setup_errors[src.key])
    return package_dir(root, src)


def _evict(dirs) -> None:
    """Forget the modules imported from ``dirs`` (an environment no call uses now)."""
    prefixes = tuple(d.rstrip(os.sep) + os.sep for d in dirs)
    for name, module in list(sys.modules.items()):
        origin = getattr(module, "__file__", None)
        if origin and origin.startswith(prefixes):
            sys.modules.pop(name, None)


def enter(env: Optional[PreparedEnv]) -> Optional[Callable[[], None]]:
    """Enter ``env`` for one call; returns the function that leaves it (None: nothing to
    leave). Raises ``RuntimeEnvSetupError`` when the environment cannot be prepared."""
    if env is None:
        if _stale:
            with _apply_lock:
                _evict(_stale - set(_pinned))
                _stale.clear()
        return None
    cwd, paths = _resolve(env)
    if not all(os.path.isdir(p) for p in paths):  # removed since we prepared it: again
        _resolved.pop(env, None)
        cwd, paths = _resolve(env)
    with _apply_lock:
        dirs = set(paths)
        if _stale - dirs - set(_pinned):
            _evict(_stale - dirs - set(_pinned))
        _stale.clear()
        fresh = [p for p in paths if _in_use.get(p, 0) == 0 and p not in sys.path]
        sys.path[0:0] = fresh
        _inserted.update(fresh)
        for p in paths:
            _in_use[p] = _in_use.get(p, 0) + 1
        settings = {"PYTHONPATH": list(paths)}  # in front of what PYTHONPATH was
        if cwd is not None:
            settings[process_env.CWD] = cwd
        token = process_env.push(settings)
    ctx = _context.current_task()
    if ctx is not None and ctx.actor is None:
        ctx.runtime_env = env  # what child tasks inherit (actors: the shell's meta)

    def leave():
        with _apply_lock:
            process_env.pop(token)
            for p in paths:
                _in_use[p] -= 1
                if _in_use[p] == 0:
                    del _in_use[p]
                    if p in _inserted:
                        _inserted.discard(p)
                        _stale.add(p)
                        try:
                            sys.path.remove(p)
                        except ValueError:
                            pass

    return leave


def pin(env: Optional[PreparedEnv], owner) -> None:
    """Keep the modules an actor imported from its environment while the actor lives
    (Ray's actor keeps its process): calls of other environments do not evict them."""
    if env is None:
        return
    import weakref

    _, paths = _resolve(env)
    with _apply_lock:
        for p in paths:
            _pinned[p] = _pinned.get(p, 0) + 1
    weakref.finalize(owner, _unpin, paths)


def _unpin(paths) -> None:
    with _apply_lock:
        for p in paths:
            _pinned[p] -= 1
            if _pinned[p] == 0:
                del _pinned[p]


def current() -> Optional[PreparedEnv]:
    """The environment of the task or actor call running in this thread, if any."""
    ctx = _context.current_task()
    if ctx is None:
        return None
    env = ctx.runtime_env
    actor = ctx.actor
    if env is None and actor is not None:
        env = actor.meta.get("runtime_env")
    return env
