"""``FunctionNode`` (Ray's ``ray.dag.function_node``): ``f.bind(...)``."""

from __future__ import annotations

from raycompat.dag.dag_node import DAGNode


class FunctionNode(DAGNode):
    """Represents a bound task node in a Ray task DAG.

    Made by ``f.bind(*args, **kwargs)`` or ``f.options(...).bind(...)``; the options are
    the function's merged options, as in Ray. Executing it calls
    ``f.options(**options).remote(*args, **kwargs)`` (so, as in Ray 2.60, a function
    declared with ``max_calls`` cannot run in a DAG: ``.options()`` refuses that key).
    """

    def __init__(self, remote_function, func_args, func_kwargs, func_options, other_args_to_resolve=None):
        self._remote_function = remote_function
        self._body = remote_function._function
        super().__init__(func_args, func_kwargs, func_options, other_args_to_resolve)

    def _execute_impl(self, args, kwargs, other, dag_input):
        return self._remote_function.options(**self._bound_options).remote(*args, **kwargs)

    def _body_str(self) -> str:
        return str(self._body)
