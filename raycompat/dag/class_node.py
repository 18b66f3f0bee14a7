"""``ClassNode`` and ``ClassMethodNode`` (Ray's ``ray.dag.class_node``).

``Cls.bind(...)`` is a ClassNode: each ``execute`` that reaches it starts a new actor
(``Cls.options(**options).remote(...)``), as in Ray. ``node.method.bind(...)`` is a
ClassMethodNode calling that actor; it also depends on the method node bound on the
same ClassNode just before it, so executing a later call runs the earlier ones first, in
bind order (Ray's ``prev_class_method_call``). ``handle.method.bind(...)`` on a live
actor is a ClassMethodNode on that actor (its state carries over between executes); as
in Ray its arguments are checked against the method's signature at bind time, and a
method with ``num_returns=N > 1`` gives a tuple of N nodes, one per return value.
"""

from __future__ import annotations

from raycompat.dag.constants import (
    IS_CLASS_METHOD_OUTPUT_KEY,
    PARENT_CLASS_NODE_KEY,
    PREV_CLASS_METHOD_CALL_KEY,
)
from raycompat.dag.dag_node import DAGNode, map_nodes
from raycompat.dag.input_node import InputNode


class ClassNode(DAGNode):
    """Represents an actor creation in a Ray task DAG."""

    def __init__(self, actor_class, cls_args, cls_kwargs, cls_options, other_args_to_resolve=None):
        self._actor_class = actor_class
        self._body = actor_class.__ray_actor_class__
        self._last_call = None
        super().__init__(cls_args, cls_kwargs, cls_options, other_args_to_resolve)
        children: list = []
        map_nodes((self._bound_args, self._bound_kwargs, self._bound_other_args_to_resolve), children.append)
        if any(isinstance(child, InputNode) for child in children):
            raise ValueError(
                "InputNode handles user dynamic input the DAG, and "
                "cannot be used as args, kwargs, or other_args_to_resolve "
                "in ClassNode constructor because it is not available at "
                "class construction or binding time."
            )

    def _execute_impl(self, args, kwargs, other, dag_input):
        return self._actor_class.options(**self._bound_options).remote(*args, **kwargs)

    def _body_str(self) -> str:
        return str(self._body)

    def __getattr__(self, method_name: str):
        if method_name == "bind" and "bind" not in dir(self._body):
            raise AttributeError(f".bind() cannot be used again on {type(self)} ")
        getattr(self._body, method_name)  # AttributeError for a method the class lacks
        return _UnboundClassMethodNode(self, method_name, {})


class _UnboundClassMethodNode:
    def __init__(self, actor: ClassNode, method_name: str, options: dict):
        self._actor = actor
        self._method_name = method_name
        self._options = options

    def bind(self, *args, **kwargs):
        other_args_to_resolve = {
            PARENT_CLASS_NODE_KEY: self._actor,
            PREV_CLASS_METHOD_CALL_KEY: self._actor._last_call,
        }
        node = ClassMethodNode(self._method_name, args, kwargs, self._options, other_args_to_resolve)
        self._actor._last_call = node
        return node

    def __getattr__(self, attr: str):
        if attr == "remote":
            raise AttributeError(
                ".remote() cannot be used on ClassMethodNodes. Use .bind() instead "
                "to express an symbolic actor call."
            )
        return self.__getattribute__(attr)

    def options(self, **options):
        self._options = options
        return self


class ClassMethodNode(DAGNode):
    """Represents an actor method invocation in a Ray function DAG.

    Executing it calls ``actor.method.options(**options).remote(*args, **kwargs)``; an
    output node of a ``num_returns=N`` call (``is_class_method_output``) picks one ref.
    """

    def __init__(self, method_name: str, method_args, method_kwargs, method_options, other_args_to_resolve):
        self._method_name = method_name
        self._parent_class_node = other_args_to_resolve.get(PARENT_CLASS_NODE_KEY)
        self._is_class_method_output = other_args_to_resolve.get(IS_CLASS_METHOD_OUTPUT_KEY, False)
        super().__init__(method_args, method_kwargs, method_options, other_args_to_resolve)

    def _execute_impl(self, args, kwargs, other, dag_input):
        if self._is_class_method_output:
            refs, index = args
            return refs[index]
        method = getattr(other[PARENT_CLASS_NODE_KEY], self._method_name)
        return method.options(**self._bound_options).remote(*args, **kwargs)

    def _body_str(self) -> str:
        return f"{self._method_name}()"

    def get_method_name(self) -> str:
        return self._method_name

    @property
    def is_class_method_call(self) -> bool:
        return not self._is_class_method_output

    @property
    def is_class_method_output(self) -> bool:
        return self._is_class_method_output

    @property
    def class_method_call(self):
        return self._bound_args[0] if self._is_class_method_output else None

    @property
    def output_idx(self):
        return self._bound_args[1] if self._is_class_method_output else None


def bind_actor_method(handle, method_name: str, signature, num_returns, args, kwargs):
    """``handle.method.bind(...)``: Ray's ``ActorMethod._bind``."""
    if signature is not None:
        try:
            signature.bind(*args, **kwargs)
        except TypeError as e:
            raise TypeError(
                f"{e}. The function `{method_name}` has a signature "
                f"`{signature}`, but the given arguments to `bind` doesn't "
                f"match. args: {args}. kwargs: {kwargs}."
            ) from None
    other_args_to_resolve = {PARENT_CLASS_NODE_KEY: handle, PREV_CLASS_METHOD_CALL_KEY: None}
    node = ClassMethodNode(method_name, args, kwargs, {"num_returns": num_returns}, other_args_to_resolve)
    if isinstance(num_returns, int) and num_returns > 1:
        return tuple(
            ClassMethodNode(
                f"return_idx_{i}", (node, i), {}, {},
                {IS_CLASS_METHOD_OUTPUT_KEY: True, PARENT_CLASS_NODE_KEY: handle},
            )
            for i in range(num_returns)
        )
    return node
