"""Ray's scheduling strategy classes (``ray.util.scheduling_strategies``).

``NodeAffinitySchedulingStrategy`` restricts a task to the Dask workers of one host
(``soft=True`` lets it run elsewhere if those are gone); ``"SPREAD"`` round-robins tasks
over workers; ``PlacementGroupSchedulingStrategy`` runs a task or actor in a bundle of a
placement group (``raycompat.util.placement_group``). Labels have no Dask equivalent:
accepted, ignored.
"""

from __future__ import annotations

from typing import Optional


class PlacementGroupSchedulingStrategy:
    def __init__(self, placement_group, placement_group_bundle_index: int = -1,
                 placement_group_capture_child_tasks: Optional[bool] = None):
        self.placement_group = placement_group
        self.placement_group_bundle_index = placement_group_bundle_index
        self.placement_group_capture_child_tasks = placement_group_capture_child_tasks


class NodeAffinitySchedulingStrategy:
    """Run on the node ``node_id`` (from ``ray.nodes()`` or ``get_runtime_context().get_node_id()``)."""

    def __init__(self, node_id: str, soft: bool, _spill_on_unavailable: bool = False,
                 _fail_on_unavailable: bool = False):
        self.node_id = node_id
        self.soft = soft
        self._spill_on_unavailable = _spill_on_unavailable
        self._fail_on_unavailable = _fail_on_unavailable


class NodeLabelSchedulingStrategy:
    def __init__(self, hard: dict, *, soft: Optional[dict] = None):
        self.hard = hard
        self.soft = soft


SchedulingStrategyT = object
