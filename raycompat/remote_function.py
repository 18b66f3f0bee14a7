"""``RemoteFunction``: what ``@ray.remote`` makes of a function (Ray's
``ray.remote_function``).

``f.remote(*args, **kwargs)`` checks the arguments against ``f``'s signature (as Ray
does, at submit time) and submits one Dask task through ``raycompat._dask.submit``.
"""

from __future__ import annotations

import inspect
from typing import Any

from raycompat._private import options as _options
from raycompat.dag.function_node import FunctionNode
from raycompat._dask import submit as _submit


class RemoteFunction:
    """A remote function: call ``.remote()`` to run it as a task on the cluster."""

    def __init__(self, function, task_options: dict):
        if inspect.iscoroutinefunction(function):
            raise ValueError(
                "'async def' should not be used for remote tasks. You can wrap the "
                "async function with `asyncio.run(f())`. See more at:"
                "https://docs.ray.io/en/latest/ray-core/actors/async_api.html "
            )
        self._is_generator = inspect.isgeneratorfunction(function)
        # stacklevel: warn at the user's @ray.remote line (through raycompat.remote).
        _options.validate_task_options(
            task_options, in_options=False, is_generator_callable=self._is_generator, stacklevel=6
        )
        self._function = function
        self._function_name = f"{function.__module__}.{function.__name__}"
        self._default_options = dict(task_options)
        self._signature = inspect.signature(function)
        self._blob = None
        self.__doc__ = function.__doc__
        self.__name__ = getattr(function, "__name__", "remote_function")
        self.__qualname__ = getattr(function, "__qualname__", self.__name__)
        self.__module__ = getattr(function, "__module__", None)
        self.__wrapped__ = function

    def __call__(self, *args, **kwargs):
        raise TypeError(
            "Remote functions cannot be called directly. Instead "
            f"of running '{self._function_name}()', "
            f"try '{self._function_name}.remote()'."
        )

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_blob"] = None
        return state

    def remote(self, *args, **kwargs):
        """Submit this function as a task; returns an ObjectRef (or N refs, or None)."""
        return self._remote(args, kwargs, self._default_options)

    def options(self, **task_options):
        """A copy of this function with some options overridden, for one or more calls."""
        _options.validate_task_options(
            task_options, in_options=True, is_generator_callable=self._is_generator
        )
        merged = _options.merge(self._default_options, task_options)
        parent = self

        class FuncWrapper:
            def remote(self, *args, **kwargs):
                return parent._remote(args, kwargs, merged)

            def bind(self, *args, **kwargs):
                return parent._bind(args, kwargs, merged)

        return FuncWrapper()

    def bind(self, *args, **kwargs):
        return self._bind(args, kwargs, self._default_options)

    def _bind(self, args, kwargs, options):
        """Ray DAG: a ``FunctionNode`` (``raycompat.dag``); nothing runs until ``execute()``."""

        return FunctionNode(self, args, kwargs, options)

    def _remote(self, args, kwargs, options: dict[str, Any]):
        try:
            self._signature.bind(*args, **kwargs)
        except TypeError as e:
            raise TypeError(str(e)) from None
        if self._blob is None:
            self._blob = _submit.FunctionBlob(
                self._function, f"{_options.ray_module_name(self.__module__)}.{self.__qualname__}"
            )
        name = options.get("name") or self._function.__name__
        if self._is_generator and options.get("num_returns") is None:
            options = {**options, "num_returns": "streaming"}  # Ray's default for generators
        return _submit.submit(self._blob, name, options, args, kwargs)
