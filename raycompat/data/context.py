"""``DataContext`` (Ray's ``ray.data.context``): the settings programs set for Ray Data.

``DataContext.get_current()`` returns this driver's one context. Ray's common settings
exist with Ray's defaults; any other attribute a program sets is kept, as Ray keeps it,
so programs that tune Ray Data run unchanged (raycompat reads none of them yet).
"""

from __future__ import annotations

import copy
import threading
from typing import Optional


class ExecutionResources:
    def __init__(self, cpu=None, gpu=None, object_store_memory=None, memory=None):
        self.cpu, self.gpu = cpu, gpu
        self.object_store_memory, self.memory = object_store_memory, memory

    def __repr__(self):
        return (f"ExecutionResources(cpu={self.cpu}, gpu={self.gpu}, "
                f"object_store_memory={self.object_store_memory}, memory={self.memory})")


class ExecutionOptions:
    def __init__(self, resource_limits=None, exclude_resources=None, preserve_order=False,
                 actor_locality_enabled=True, verbose_progress=True, locality_with_output=False):
        self.resource_limits = resource_limits or ExecutionResources()
        self.exclude_resources = exclude_resources or ExecutionResources(0, 0, 0, 0)
        self.preserve_order = preserve_order
        self.actor_locality_enabled = actor_locality_enabled
        self.verbose_progress = verbose_progress
        self.locality_with_output = locality_with_output

    def __repr__(self):
        return (f"ExecutionOptions(resource_limits={self.resource_limits!r}, exclude_resources="
                f"{self.exclude_resources!r}, preserve_order={self.preserve_order}, "
                f"actor_locality_enabled={self.actor_locality_enabled}, "
                f"verbose_progress={self.verbose_progress})")


_DEFAULTS = {
    "target_max_block_size": 128 * 1024 * 1024,
    "target_min_block_size": 1024 * 1024,
    "streaming_read_buffer_size": 32 * 1024 * 1024,
    "enable_pandas_block": True,
    "read_op_min_num_blocks": 200,
    "enable_progress_bars": True,
    "enable_operator_progress_bars": True,
    "enable_tensor_extension_casting": True,
    "enable_arrow_backed_pandas_conversion": True,
    "enable_auto_log_stats": False,
    "use_push_based_shuffle": False,
    "eager_free": False,
    "max_errored_blocks": 0,
    "log_internal_stack_trace_to_stdout": False,
    "print_on_execution_start": True,
    "use_polars": False,
    "min_parallelism": 200,
    "actor_prefetcher_enabled": False,
    "wait_for_min_actors_s": -1,
    "retried_io_errors": [],
    "max_map_retries": 0,
    "retried_map_errors": [],
}


class DataContext:
    """Ray Data's per-driver settings; unknown attributes are kept as set."""

    _current: Optional["DataContext"] = None
    _lock = threading.Lock()

    def __init__(self, **settings):
        for key, value in _DEFAULTS.items():
            setattr(self, key, copy.copy(value))
        self.execution_options = ExecutionOptions()
        for key, value in settings.items():
            setattr(self, key, value)

    @staticmethod
    def get_current() -> "DataContext":
        with DataContext._lock:
            if DataContext._current is None:
                DataContext._current = DataContext()
            return DataContext._current

    @staticmethod
    def _set_current(context: "DataContext") -> None:
        DataContext._current = context

    def copy(self) -> "DataContext":
        return copy.deepcopy(self)

    def set_config(self, key, value) -> None:
        setattr(self, key, value)

    def get_config(self, key, default=None):
        return getattr(self, key, default)

    def remove_config(self, key) -> None:
        self.__dict__.pop(key, None)


#: Ray's older name for DataContext.
DatasetContext = DataContext
