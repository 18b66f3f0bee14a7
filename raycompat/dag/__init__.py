"""Ray's ``ray.dag``: build a DAG of tasks and actor calls with ``.bind()``, run it with
``execute()``.

``f.bind(...)``, ``Cls.bind(...)``, ``node.method.bind(...)`` and
``handle.method.bind(...)`` make nodes (descriptions, nothing runs);
``InputNode`` marks the DAG's input and ``MultiOutputNode`` returns several results.
``dag.execute(*inputs)`` submits each node once through raycompat's ordinary
``.options(...).remote(...)`` and returns the root's ObjectRef (a list of them for a
MultiOutputNode). Ray Compiled Graphs (``experimental_compile``, collectives, tensor
transports) are not supported.
"""

from raycompat.dag.dag_node import DAGNode
from raycompat.dag.function_node import FunctionNode
from raycompat.dag.class_node import ClassMethodNode, ClassNode
from raycompat.dag.input_node import DAGInputData, InputAttributeNode, InputNode
from raycompat.dag.output_node import MultiOutputNode
from raycompat.dag.constants import (
    BIND_INDEX_KEY,
    DAGNODE_TYPE_KEY,
    IS_CLASS_METHOD_OUTPUT_KEY,
    PARENT_CLASS_NODE_KEY,
    PREV_CLASS_METHOD_CALL_KEY,
)

__all__ = [
    "ClassNode",
    "ClassMethodNode",
    "DAGNode",
    "FunctionNode",
    "InputNode",
    "InputAttributeNode",
    "DAGInputData",
    "PARENT_CLASS_NODE_KEY",
    "PREV_CLASS_METHOD_CALL_KEY",
    "BIND_INDEX_KEY",
    "IS_CLASS_METHOD_OUTPUT_KEY",
    "DAGNODE_TYPE_KEY",
    "MultiOutputNode",
]
