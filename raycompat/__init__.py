"""raycompat: Ray's Core API on dask.distributed.

Swap ``import ray`` for ``import raycompat as ray`` and keep the code::

    import raycompat as ray

    ray.init()                      # embedded Dask cluster, or ray.init("tcp://host:8786")

    @ray.remote
    def square(x):
        return x * x

    print(ray.get([square.remote(i) for i in range(4)]))

The Dask mapping lives in ``raycompat._dask``; this module only re-exports Ray's names.
"""

from __future__ import annotations

import inspect as _inspect

from raycompat import actor, exceptions, experimental, util
from raycompat._version import __version__
from raycompat.actor import ActorClass, ActorHandle, method
from raycompat._dask.api import cancel, get, put, wait
from raycompat._dask.cluster_info import available_resources, cluster_resources, nodes
from raycompat._dask.refs import ObjectRef
from raycompat._dask.streaming import DynamicObjectRefGenerator, ObjectRefGenerator
from raycompat._dask.driver import is_initialized
from raycompat._dask.session import RayContext, init, shutdown
from raycompat._private import options as _options
from raycompat.remote_function import RemoteFunction
from raycompat.runtime_context import get_runtime_context
from raycompat._dask import observability as _observability
from raycompat._dask import driver as _driver
from raycompat.runtime_context import _gpu_ids
from raycompat._dask import actor_api as _actor_api

_REMOTE_USAGE = (
    "The @ray.remote decorator must be applied either with no arguments and no "
    "parentheses, for example '@ray.remote', or it must be applied using some of "
    "the arguments in the list ['num_returns', 'num_cpus', 'num_gpus', 'memory', "
    "'resources', 'max_calls', 'max_retries', 'retry_exceptions', 'runtime_env', "
    "'scheduling_strategy', 'name'], for example "
    "'@ray.remote(num_returns=2, resources={\"CustomResource\": 1})'."
)


def _make_remote(function_or_class, options: dict):
    if _inspect.isclass(function_or_class):
        return ActorClass(function_or_class, options)
    if not callable(function_or_class):
        raise TypeError("The @ray.remote decorator must be applied to either a function or a class.")
    return RemoteFunction(function_or_class, options)


def remote(*args, **kwargs):
    """Ray's ``@ray.remote``: bare, with options, or called on a function."""
    if len(args) == 1 and not kwargs and callable(args[0]):
        return _make_remote(args[0], {})
    assert len(args) == 0 and len(kwargs) > 0, _REMOTE_USAGE

    def decorate(function_or_class):
        if not _inspect.isclass(function_or_class):
            _options.validate_task_options(kwargs, in_options=False)
        return _make_remote(function_or_class, kwargs)

    return decorate


def timeline(filename=None):
    """Chrome-trace events of the tasks and actor calls this job's cluster ran.

    Returns the list of events, or writes them as JSON to ``filename`` (load it in
    chrome://tracing or https://ui.perfetto.dev) and returns None, as Ray does.
    """
    import json

    s = _driver.current_session()
    events = _observability.timeline(s.client, since=s.started)
    if filename is None:
        return events
    with open(filename, "w") as f:
        json.dump(events, f)
    return None


def get_gpu_ids() -> list:
    """The GPU ids assigned to the current task ([] on the driver and without GPUs)."""

    return _gpu_ids()


def kill(actor, *, no_restart=True):
    """Kill an actor at once: its pending and later calls raise ActorDiedError."""

    if not isinstance(actor, ActorHandle):
        raise ValueError(
            f"ray.kill() only supported for actors. For tasks, try ray.cancel(). Got: {type(actor)}."
        )
    return _actor_api.kill(actor, no_restart=no_restart)


def get_actor(name: str, namespace=None):
    """The handle of the named actor ``name`` (in ``namespace``, default: this job's)."""

    return ActorHandle._from_record(_actor_api.get_actor(name, namespace))


__all__ = [
    "__version__",
    "ActorClass",
    "ActorHandle",
    "actor",
    "DynamicObjectRefGenerator",
    "ObjectRef",
    "ObjectRefGenerator",
    "RayContext",
    "RemoteFunction",
    "available_resources",
    "cancel",
    "cluster_resources",
    "exceptions",
    "get",
    "get_actor",
    "get_gpu_ids",
    "get_runtime_context",
    "init",
    "is_initialized",
    "kill",
    "method",
    "nodes",
    "put",
    "remote",
    "shutdown",
    "timeline",
    "util",
    "wait",
]


def __getattr__(name):
    # ray.data needs pyarrow and pandas: load it on first use, so that `import raycompat`
    # stays light and works without them.
    if name == "data":
        import importlib

        return importlib.import_module("raycompat.data")  # late: optional, heavy (pyarrow)
    raise AttributeError(f"module 'raycompat' has no attribute {name!r}")
