"""``MultiOutputNode`` (Ray's ``ray.dag.output_node``): several results at once."""

from __future__ import annotations

from raycompat.dag.dag_node import DAGNode


class MultiOutputNode(DAGNode):
    """Ray dag node used in DAG building API to mark the endpoint of DAG.

    ``MultiOutputNode([a, b]).execute()`` returns the list ``[ref_a, ref_b]``.
    """

    def __init__(self, args, other_args_to_resolve=None):
        if isinstance(args, tuple):
            args = list(args)
        if not isinstance(args, list):
            raise ValueError(f"Invalid input type for `args`, {type(args)}.")
        super().__init__(args, {}, {}, other_args_to_resolve)

    def _execute_impl(self, args, kwargs, other, dag_input):
        return args

    def _body_str(self) -> str:
        return "__MultiOutputNode__"
