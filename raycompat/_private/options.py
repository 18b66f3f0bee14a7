"""The table of Ray's task options: names, validation and defaults (Ray 2.60's
``ray/_common/ray_option_utils.py``), and what raycompat does with each.

Every option Ray accepts appears here once. ``MAPPED`` options change what happens on
Dask; ``IGNORED`` ones are accepted and warned about once, naming them.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any, Callable, Optional
from raycompat.util.scheduling_strategies import NodeAffinitySchedulingStrategy, NodeLabelSchedulingStrategy, PlacementGroupSchedulingStrategy
from raycompat._private.runtime_env import validate_runtime_env
from raycompat.util.annotations import RayDeprecationWarning

DEFAULT_TASK_MAX_RETRIES = 3


@dataclass
class Option:
    type_constraint: Any = None
    value_constraint: Optional[Callable[[Any], Optional[str]]] = None
    default_value: Any = None

    def validate(self, keyword: str, value: Any) -> None:
        if self.type_constraint is not None and not isinstance(value, self.type_constraint):
            raise TypeError(
                f"The type of keyword '{keyword}' must be {self.type_constraint}, "
                f"but received type {type(value)}"
            )
        if self.value_constraint is not None:
            msg = self.value_constraint(value)
            if msg:
                raise ValueError(msg)


def _counting(name: str, infinite: bool = True, default=None) -> Option:
    if infinite:
        return Option(
            (int, type(None)),
            lambda x: None
            if (x is None or x >= -1)
            else f"The keyword '{name}' only accepts None, 0, -1"
            " or a positive integer, where -1 represents infinity.",
            default,
        )
    return Option(
        (int, type(None)),
        lambda x: None
        if (x is None or x >= 0)
        else f"The keyword '{name}' only accepts None, 0 or a positive integer.",
        default,
    )


def _quantity_error(name: str, quantity) -> Optional[str]:
    if quantity < 0:
        return f"The quantity of resource {name} cannot be negative"
    if isinstance(quantity, float) and quantity != 0.0 and int(quantity * 10000) == 0:
        return f"The precision of the fractional quantity of resource {name} cannot go beyond 0.0001"
    if name in ("num_gpus",) and quantity > 1 and not float(quantity).is_integer():
        return f"{name} must be a whole number if it is greater than 1, got {quantity}"
    return None


def _resource(name: str, default=None) -> Option:
    return Option(
        (float, int, type(None)),
        lambda x: None if x is None else _quantity_error(name, x),
        default,
    )


def _validate_resources(resources) -> Optional[str]:
    if resources is None:
        return None
    if "CPU" in resources or "GPU" in resources:
        return (
            "Use the 'num_cpus' and 'num_gpus' keyword instead of 'CPU' and 'GPU' "
            "in 'resources' keyword"
        )
    for name, quantity in resources.items():
        msg = _quantity_error(name, quantity)
        if msg:
            return msg
    return None


def _issubclass_safe(x, cls) -> bool:
    try:
        return issubclass(x, cls)
    except TypeError:
        return False


def _validate_strategy(x) -> Optional[str]:
    if x is None or x in ("DEFAULT", "SPREAD"):
        return None
    if isinstance(
        x,
        (NodeAffinitySchedulingStrategy, NodeLabelSchedulingStrategy, PlacementGroupSchedulingStrategy),
    ):
        return None
    return f'Invalid scheduling_strategy {x!r}. Must be "DEFAULT", "SPREAD" or a strategy object.'


_NUM_RETURNS_MSG = (
    "Default None. When None is passed, "
    "The default value is 1 for a task and actor task, and "
    "'streaming' for generator tasks and generator actor tasks. "
    "The keyword 'num_returns' only accepts None, "
    "a non-negative integer, "
    "'streaming' (for generators), or 'dynamic'. 'dynamic' flag "
    "will be deprecated in the future, and it is recommended to use "
    "'streaming' instead."
)

common_options: dict[str, Option] = {
    "label_selector": Option((dict, type(None))),
    "fallback_strategy": Option((list, type(None))),
    "accelerator_type": Option((str, type(None))),
    "memory": _resource("memory"),
    "name": Option((str, type(None))),
    "num_cpus": _resource("num_cpus"),
    "num_gpus": _resource("num_gpus"),
    "object_store_memory": _counting("object_store_memory", False),
    "placement_group": Option(),
    "placement_group_bundle_index": Option(int, default_value=-1),
    "placement_group_capture_child_tasks": Option((bool, type(None))),
    "resources": Option((dict, type(None)), _validate_resources),
    "runtime_env": Option((dict, type(None))),
    "scheduling_strategy": Option(None, _validate_strategy),
    "enable_task_events": Option(bool, default_value=True),
    "_labels": Option((dict, type(None))),
}

task_options: dict[str, Option] = {
    **common_options,
    "max_calls": _counting("max_calls", False, 0),
    "max_retries": _counting("max_retries", True, DEFAULT_TASK_MAX_RETRIES),
    "num_cpus": _resource("num_cpus", 1),
    "num_returns": Option(
        (int, str, type(None)),
        lambda x: None
        if (x is None or x == "dynamic" or x == "streaming" or (isinstance(x, int) and x >= 0))
        else _NUM_RETURNS_MSG,
    ),
    "object_store_memory": Option(
        (int, type(None)),
        lambda x: None if x is None else "Setting 'object_store_memory' is not implemented for tasks",
    ),
    "retry_exceptions": Option(
        (bool, list, tuple),
        lambda x: None
        if (
            isinstance(x, bool)
            or (isinstance(x, (list, tuple)) and all(_issubclass_safe(e, Exception) for e in x))
        )
        else "retry_exceptions must be either a boolean or a list of exceptions",
        False,
    ),
    "_generator_backpressure_num_objects": Option((int, type(None))),
    "_num_objects_per_yield": Option((int, type(None)), default_value=1),
}

actor_options: dict[str, Option] = {
    **common_options,
    "concurrency_groups": Option((list, dict, type(None))),
    "enable_tensor_transport": Option((bool, type(None))),
    "lifetime": Option(
        (str, type(None)),
        lambda x: None
        if x in (None, "detached", "non_detached")
        else "actor `lifetime` argument must be one of 'detached', 'non_detached' and 'None'.",
    ),
    "max_concurrency": _counting("max_concurrency", False),
    "max_restarts": _counting("max_restarts", True, 0),
    "max_task_retries": _counting("max_task_retries", True, 0),
    "max_pending_calls": _counting("max_pending_calls", True, -1),
    "namespace": Option((str, type(None))),
    "get_if_exists": Option(bool, default_value=False),
    "allow_out_of_order_execution": Option((bool, type(None))),
    "_actor_generator_backpressure_num_objects": Option(
        (int, type(None)),
        lambda x: None
        if (x is None or x > 0 or x == -1)
        else (
            "_actor_generator_backpressure_num_objects must be > 0 to cap the "
            "actor's total unconsumed generator objects, or -1 to disable. "
            f"Got {x}."
        ),
    ),
}

_IGNORED_WHY = {
    "max_calls": "Dask workers are long-lived; recycle them cluster-wide with distributed.worker.lifetime",
    "accelerator_type": "Dask workers advertise resources, not accelerator types",
    "object_store_memory": "Dask has no separate object store",
    "fallback_strategy": "Dask has no label scheduling",
    "_generator_backpressure_num_objects": "generator backpressure is not applied",
    "_num_objects_per_yield": "generator backpressure is not applied",
}

_warned: set[str] = set()


DYNAMIC_NUM_RETURNS_WARNING = (
    "num_returns='dynamic' is deprecated and will be removed in a future "
    "Ray release. Use num_returns='streaming' instead."
)


def validate_num_returns(is_generator_callable: bool, num_returns, stacklevel: int) -> None:
    """Ray's ``validate_num_returns``: ``"dynamic"`` is deprecated; ``"streaming"`` and
    ``"dynamic"`` need a generator function."""
    if num_returns is None:
        return
    if isinstance(num_returns, int) and num_returns < 0:
        raise ValueError(f"num_returns must be >= 0, but got {num_returns}.")
    if num_returns == "dynamic":
        warnings.warn(DYNAMIC_NUM_RETURNS_WARNING, RayDeprecationWarning, stacklevel=stacklevel)
    if num_returns in ("streaming", "dynamic") and not is_generator_callable:
        raise ValueError(
            f"num_returns='{num_returns}' can only be used with generator functions "
            f"(functions that use 'yield'). "
            f"The decorated function is not a generator function."
        )


def _validate_against(table: dict, options: dict, kind: str) -> None:
    for k, v in options.items():
        if k not in table:
            raise ValueError(f"Invalid option keyword {k} for {kind}. Valid ones are {list(table)}.")
        table[k].validate(k, v)


def validate_task_options(options: dict, in_options: bool, is_generator_callable=None,
                          stacklevel: int = 4) -> None:
    """Ray's ``validate_task_options``: unknown keywords raise ``ValueError`` naming them."""
    _validate_against(task_options, options, "remote functions")
    validate_runtime_env(options.get("runtime_env"))
    if in_options and "max_calls" in options:
        raise ValueError("Setting 'max_calls' is not supported in '.options()'.")
    if is_generator_callable is not None:
        validate_num_returns(is_generator_callable, options.get("num_returns"), stacklevel=stacklevel)
    warn_ignored(options)


def validate_actor_options(options: dict, in_options: bool) -> None:
    """Ray's ``validate_actor_options``: unknown keywords raise ``ValueError`` naming them."""
    _validate_against(actor_options, options, "actors")
    validate_runtime_env(options.get("runtime_env"))
    if in_options and "concurrency_groups" in options:
        raise ValueError("Setting 'concurrency_groups' is not supported in '.options()'.")
    if options.get("get_if_exists") and not options.get("name"):
        raise ValueError("The actor name must be specified to use `get_if_exists`.")
    if options.get("name") == "":
        raise ValueError("Actor name cannot be an empty string.")


def warn_ignored(options: dict) -> None:
    """Warn once per option name that raycompat accepts but cannot honour on Dask."""
    for k, v in options.items():
        if k in _IGNORED_WHY and v not in (None, 0, -1, False) and k not in _warned:
            _warned.add(k)
            warnings.warn(
                f"raycompat ignores the option {k}={v!r}: {_IGNORED_WHY[k]}.",
                UserWarning,
                stacklevel=4,
            )


def merge(base: dict, new: dict) -> dict:
    """Ray's ``update_options``: later options win; ``resources`` merge key by key is not Ray's."""
    out = dict(base)
    out.update(new)
    return out


def ray_module_name(module) -> str:
    """The module name Ray shows for a function or class: a script's file name stands in
    for ``__main__`` (``python rc.py`` gives ``rc.f``)."""
    if module == "__main__":
        import os
        import sys

        path = getattr(sys.modules.get("__main__"), "__file__", None)
        if path:
            return os.path.splitext(os.path.basename(path))[0]
    return module or ""
