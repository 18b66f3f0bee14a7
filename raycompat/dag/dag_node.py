"""``DAGNode`` (Ray's ``ray.dag.dag_node``): a bound call, run by ``execute()``.

A node is only a description: what to call (set by the subclass), its bound arguments,
options and "other args to resolve" (the parent actor of a method call, the InputNode
of an attribute access...). ``execute(*args, **kwargs)`` walks the DAG bottom-up, as
Ray's ``apply_recursive`` does: each node's children (nodes found in its args, then its
kwargs, then its other args) run first, each node runs at most once per ``execute``,
and a child's result (an ObjectRef, an ActorHandle or the user's input) takes its place
in the parent's arguments. A node then calls raycompat's public
``.options(**bound_options).remote(...)``, so the DAG adds nothing to the task path.

Like Ray, nodes are found anywhere inside the arguments: a node nested in a list,
tuple, dict (keys too) or set, or inside an object of another type, is replaced by its
ObjectRef, which the task receives as an ObjectRef (Ray resolves only top-level refs);
an InputNode nested there is replaced by the input value itself. Ray finds nested nodes
by pickling every argument; raycompat walks builtin containers directly and pickles only
other objects, keeping them as they are when they hold no node.
"""

from __future__ import annotations

import io
import pickle
import uuid
import warnings
from typing import Any, Callable

import cloudpickle

from raycompat.util.annotations import RayDeprecationWarning

_ATOMIC = (int, float, complex, str, bytes, bool, type(None))


class DAGNode:
    """Abstract class for a node in a Ray task graph.

    A node has a type (e.g., FunctionNode), data (e.g., function options and body),
    arguments (Python values, DAGNodes, and DAGNodes nested within Python argument
    values) and options (Ray API .options() used for function, class or class method).
    """

    def __init__(self, args, kwargs: dict, options: dict, other_args_to_resolve: dict):
        self._bound_args = args or []
        self._bound_kwargs = kwargs or {}
        self._bound_options = options or {}
        self._bound_other_args_to_resolve = other_args_to_resolve or {}
        self._stable_uuid = uuid.uuid4().hex
        self.cache_from_last_execute = {}

    def get_args(self):
        """Return the tuple of arguments for this node."""
        return self._bound_args

    def get_kwargs(self) -> dict:
        """Return the dict of keyword arguments for this node."""
        return self._bound_kwargs.copy()

    def get_options(self) -> dict:
        """Return the dict of options arguments for this node."""
        return self._bound_options.copy()

    def get_other_args_to_resolve(self) -> dict:
        """Return the dict of other args to resolve arguments for this node."""
        return self._bound_other_args_to_resolve.copy()

    def get_stable_uuid(self) -> str:
        """Return the uuid made when this node was created."""
        return self._stable_uuid

    def clear_cache(self):
        self.cache_from_last_execute = {}

    def execute(self, *args: Any, _ray_cache_refs: bool = False, **kwargs: Any):
        """Run this DAG; returns this node's result (an ObjectRef, a list of them for a
        MultiOutputNode, an ActorHandle for a ClassNode).

        ``args``/``kwargs`` are the DAG's input (see ``InputNode``). Ray 2.60 deprecates
        this method with a ``RayDeprecationWarning``; so does raycompat.
        """
        warnings.warn(
            "DAGNode.execute() is deprecated and will be removed in a future release.",
            RayDeprecationWarning,
            stacklevel=2,
        )
        run = _Execution(args, kwargs)
        result = run(self)
        if _ray_cache_refs:
            self.cache_from_last_execute = run.cache
        return result

    def experimental_compile(self, *args, **kwargs):
        raise NotImplementedError("raycompat does not support Ray Compiled Graphs (experimental_compile).")

    def _execute_impl(self, args, kwargs, other: dict, dag_input: tuple):
        """Run this node given its resolved args, kwargs and other args; ``dag_input``
        is ``(args, kwargs)`` of ``execute``."""
        raise NotImplementedError

    def _body_str(self) -> str:
        return ""

    def __str__(self) -> str:
        return (
            f"({type(self).__name__}, {self._stable_uuid})(body={self._body_str()}, "
            f"args={self._bound_args}, kwargs={self._bound_kwargs}, options={self._bound_options})"
        )

    __repr__ = __str__

    def __getstate__(self):
        return self.__dict__

    def __setstate__(self, d):
        self.__dict__.update(d)

    def __getattr__(self, attr: str):
        if attr == "bind":
            raise AttributeError(f".bind() cannot be used again on {type(self)} ")
        if attr == "remote":
            raise AttributeError(
                f".remote() cannot be used on {type(self)}. To execute the task "
                "graph for this node, use .execute()."
            )
        return self.__getattribute__(attr)


class _Execution:
    """One ``execute()``: runs each node once (cached by its uuid), children first.

    The walk is Ray's depth-first, post-order one, kept on an explicit stack so that
    long chains (e.g. many calls bound on one ClassNode) do not hit Python's recursion
    limit.
    """

    def __init__(self, args, kwargs):
        self.dag_input = (args, kwargs)
        self.cache: dict = {}
        self.input_node_uuid = None

    def __call__(self, root: DAGNode):
        stack = [(root, False)]
        while stack:
            node, children_done = stack.pop()
            if node._stable_uuid in self.cache:
                continue
            if children_done:
                self._run(node)
                continue
            stack.append((node, True))
            children: list = []
            map_nodes(_bound(node), children.append)
            stack.extend((child, False) for child in reversed(children))
        return self.cache[root._stable_uuid]

    def _run(self, node: DAGNode):
        # late: raycompat.dag.input_node imports this module
        from raycompat.dag.input_node import InputNode

        if isinstance(node, InputNode):
            if self.input_node_uuid is None:
                self.input_node_uuid = node._stable_uuid
            elif self.input_node_uuid != node._stable_uuid:
                raise AssertionError("Each DAG should only have one unique InputNode.")
        args, kwargs, other = map_nodes(_bound(node), lambda child: self.cache[child._stable_uuid])
        self.cache[node._stable_uuid] = node._execute_impl(args, kwargs, other, self.dag_input)


def _bound(node: DAGNode) -> tuple:
    return (node._bound_args, node._bound_kwargs, node._bound_other_args_to_resolve)


def map_nodes(obj: Any, fn: Callable[[DAGNode], Any]) -> Any:
    """``obj`` with every DAGNode found in it replaced by ``fn(node)``, in Ray's order."""
    if isinstance(obj, DAGNode):
        return fn(obj)
    t = type(obj)
    if t in _ATOMIC or t.__module__.startswith("raycompat."):
        return obj
    if t is list or t is tuple:
        return t(map_nodes(v, fn) for v in obj)
    if t is dict:
        return {map_nodes(k, fn): map_nodes(v, fn) for k, v in obj.items()}
    if t is set or t is frozenset:
        return t(map_nodes(v, fn) for v in obj)
    return _pickle_map_nodes(obj, fn)


class _NodeFinder(cloudpickle.Pickler):
    def __init__(self, file):
        # Large buffers (numpy, Arrow...) stay out of band: scanning never copies them.
        self.buffers: list = []
        super().__init__(file, protocol=5, buffer_callback=self.buffers.append)
        self.nodes: list = []
        self.kept: list = []

    def persistent_id(self, obj):
        if isinstance(obj, DAGNode):
            self.nodes.append(obj)
            return ("node", len(self.nodes) - 1)
        # raycompat's own objects (ObjectRefs, actor handles) hold no nodes, and pickling
        # a ref would pin it: keep them by identity.
        if type(obj).__module__.startswith("raycompat."):
            self.kept.append(obj)
            return ("kept", len(self.kept) - 1)
        return None


class _NodeReplacer(pickle.Unpickler):
    def __init__(self, file, buffers: list, nodes: list, kept: list):
        super().__init__(file, buffers=buffers)
        self.nodes, self.kept = nodes, kept

    def persistent_load(self, pid):
        kind, i = pid
        return self.nodes[i] if kind == "node" else self.kept[i]


def _pickle_map_nodes(obj, fn):
    buf = io.BytesIO()
    finder = _NodeFinder(buf)
    try:
        finder.dump(obj)
    except Exception:
        # Not picklable: it cannot hold a node Ray would find either (Ray fails at
        # bind), and submitting it reports the pickling error.
        return obj
    if not finder.nodes:
        return obj
    values: dict = {}
    for node in finder.nodes:
        if id(node) not in values:
            values[id(node)] = fn(node)
    buf.seek(0)
    return _NodeReplacer(buf, finder.buffers, [values[id(n)] for n in finder.nodes], finder.kept).load()
