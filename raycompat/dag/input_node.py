"""``InputNode`` and ``InputAttributeNode`` (Ray's ``ray.dag.input_node``).

``with InputNode() as inp:`` marks the DAG's input; ``dag.execute(*args, **kwargs)``
supplies it. One positional argument and no keywords: ``inp`` is that value. Otherwise
``inp`` is a ``DAGInputData`` holding them all, and ``inp[0]`` / ``inp.x`` /
``inp["k"]`` (InputAttributeNodes) pick the i-th positional argument or a keyword;
with a single argument they index it or read its attribute. As in Ray, a DAG has one
InputNode and it must have been entered as a context manager.
"""

from __future__ import annotations

from typing import Any, Optional, Union

from raycompat.dag.dag_node import DAGNode

IN_CONTEXT_MANAGER = "__in_context_manager__"


class InputNode(DAGNode):
    """Ray dag node used in DAG building API to mark entrypoints of a DAG."""

    def __init__(self, *args: Any, input_type=None, _other_args_to_resolve=None, **kwargs: Any):
        if len(args) != 0 or len(kwargs) != 0:
            raise ValueError("InputNode should not take any args or kwargs.")
        self.input_attribute_nodes = {}
        self.input_type = input_type
        super().__init__([], {}, {}, other_args_to_resolve=_other_args_to_resolve)

    def _execute_impl(self, args, kwargs, other, dag_input):
        assert other.get(IN_CONTEXT_MANAGER), (
            "InputNode is a singleton instance that should be only used in "
            "context manager for dag building and execution. See the docstring "
            "of class InputNode for examples."
        )
        in_args, in_kwargs = dag_input
        if len(in_args) == 1 and len(in_kwargs) == 0:
            return in_args[0]
        return DAGInputData(*in_args, **in_kwargs)

    def set_context(self, key: str, val: Any):
        self._bound_other_args_to_resolve[key] = val

    def _body_str(self) -> str:
        return "__InputNode__"

    def __getattr__(self, key: str):
        # Ray makes a node of any attribute; dunders stay attributes so that protocol
        # probes (copy, numpy, IPython) do not get a node back.
        if key.startswith("__") and key.endswith("__"):
            raise AttributeError(key)
        assert isinstance(key, str), "Please only access dag input attributes with str key."
        if key not in self.input_attribute_nodes:
            self.input_attribute_nodes[key] = InputAttributeNode(self, key, "__getattr__")
        return self.input_attribute_nodes[key]

    def __getitem__(self, key: Union[int, str]) -> Any:
        assert isinstance(key, (str, int)), (
            "Please only use int index or str as first-level key to access fields of dag input."
        )
        if key not in self.input_attribute_nodes:
            self.input_attribute_nodes[key] = InputAttributeNode(self, key, "__getitem__")
        return self.input_attribute_nodes[key]

    def __enter__(self):
        self.set_context(IN_CONTEXT_MANAGER, True)
        return self

    def __exit__(self, *args):
        pass


class InputAttributeNode(DAGNode):
    """Part of the DAG's input: an index (int), an attribute or a dict key (str)."""

    def __init__(self, dag_input_node: InputNode, key: Union[int, str], accessor_method: str,
                 input_type: Optional[str] = None):
        self._dag_input_node = dag_input_node
        self._key = key
        self._accessor_method = accessor_method
        super().__init__([], {}, {}, {
            "dag_input_node": dag_input_node,
            "key": key,
            "accessor_method": accessor_method,
            "result_type_string": input_type,
        })

    def _execute_impl(self, args, kwargs, other, dag_input):
        value = other["dag_input_node"]
        if isinstance(value, DAGInputData):
            return value[self._key]
        if isinstance(self._key, str):
            if self._accessor_method == "__getitem__":
                return value[self._key]
            return getattr(value, self._key)
        if isinstance(self._key, int):
            return value[self._key]
        raise ValueError("Please only use int index or str as first-level key to access fields of dag input.")

    def _body_str(self) -> str:
        return f'["{self._key}"]'

    @property
    def key(self) -> Union[int, str]:
        return self._key


class DAGInputData:
    """The DAG's input when ``execute`` got several arguments or keywords: ``[i]`` is
    the i-th positional argument, ``["k"]`` the keyword ``k``."""

    def __init__(self, *args, **kwargs):
        self._args = list(args)
        self._kwargs = kwargs

    def __getitem__(self, key: Union[int, str]) -> Any:
        if isinstance(key, int):
            return self._args[key]
        if isinstance(key, str):
            return self._kwargs[key]
        raise ValueError("Please only use int index or str as first-level key to access fields of dag input.")
