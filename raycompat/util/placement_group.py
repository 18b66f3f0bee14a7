"""``ray.util.placement_group``: reserve groups of resource bundles and schedule into them.

Same functions, arguments, errors and table as Ray 2.60; the reservation is made in
raycompat's resource ledgers on the Dask workers' hosts (``raycompat._dask.placement_groups``
says how).
"""

from __future__ import annotations

from typing import Dict, List, Optional, Union

from raycompat._dask import api as _api
from raycompat._dask import context as _context
from raycompat._dask import driver as _driver
from raycompat._dask import placement_groups as _groups
from raycompat._dask.refs import ObjectRef

VALID_PLACEMENT_GROUP_STRATEGIES = {"PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD"}


class PlacementGroupID:
    """Ray's placement group id (36 hex digits)."""

    __slots__ = ("_hex",)

    def __init__(self, hex_id: str = ""):
        self._hex = hex_id

    @classmethod
    def nil(cls) -> "PlacementGroupID":
        return cls("")

    def is_nil(self) -> bool:
        return not self._hex

    def hex(self) -> str:
        return self._hex or "ff" * 18

    def binary(self) -> bytes:
        return bytes.fromhex(self.hex())

    def __eq__(self, other):
        return isinstance(other, PlacementGroupID) and other._hex == self._hex

    def __hash__(self):
        return hash(self._hex)

    def __repr__(self):
        return f"PlacementGroupID({self.hex()})"

    def __reduce__(self):
        return PlacementGroupID, (self._hex,)


class PlacementGroup:
    """A handle to a placement group."""

    @staticmethod
    def empty() -> "PlacementGroup":
        return PlacementGroup(PlacementGroupID.nil())

    def __init__(self, id: PlacementGroupID, bundle_cache: Optional[List[Dict]] = None):
        self.id = id
        self.bundle_cache = bundle_cache

    @property
    def is_empty(self) -> bool:
        return self.id.is_nil()

    def ready(self):
        """An ObjectRef that resolves to this group once all its bundles are reserved."""
        if self.is_empty:
            return _api.put(self)
        client = _driver.current_session().client
        return ObjectRef(_groups.ready_future(client, self.id.hex()), None, "placement_group_ready")

    def wait(self, timeout_seconds: Union[float, int] = 30) -> bool:
        """True once the group is created, False if ``timeout_seconds`` pass first."""
        ready, _ = _api.wait([self.ready()], timeout=timeout_seconds)
        return bool(ready)

    @property
    def bundle_specs(self) -> List[Dict]:
        self._fill_bundle_cache_if_needed()
        return self.bundle_cache

    @property
    def bundle_count(self) -> int:
        self._fill_bundle_cache_if_needed()
        return len(self.bundle_cache)

    def _fill_bundle_cache_if_needed(self) -> None:
        if not self.bundle_cache:
            rec = _groups.record(_driver.current_session().client, self.id.hex()) or {}
            bundles = rec.get("bundles") or {}
            self.bundle_cache = [dict(bundles[i]) for i in sorted(bundles, key=int)]

    def __eq__(self, other):
        return isinstance(other, PlacementGroup) and self.id == other.id

    def __hash__(self):
        return hash(self.id)


def check_placement_group_index(placement_group: PlacementGroup, bundle_index: int) -> None:
    """Ray's ``ValueError`` for a bundle index the group does not have."""
    assert placement_group is not None
    if placement_group.id.is_nil():
        if bundle_index != -1:
            raise ValueError("If placement group is not set, the value of bundle index must be -1.")
    elif bundle_index >= placement_group.bundle_count or bundle_index < -1:
        raise _groups.bad_bundle_index(bundle_index, placement_group.bundle_count)


def _validate_bundles(bundles) -> None:
    if not isinstance(bundles, list):
        raise ValueError(f"Placement group bundles must be a list, got {type(bundles)}.")
    if len(bundles) == 0:
        raise ValueError(
            "Bundles must be a non-empty list of resource "
            'dictionaries. For example: `[{"CPU": 1.0}, {"GPU": 1.0}]`. '
            "Got empty list instead."
        )
    for bundle in bundles:
        if (
            not isinstance(bundle, dict)
            or not all(isinstance(k, str) for k in bundle)
            or not all(isinstance(v, (int, float)) for v in bundle.values())
        ):
            raise ValueError(
                "Bundles must be a non-empty list of "
                'resource dictionaries. For example: `[{"CPU": 1.0}, {"GPU": 1.0}]`.'
            )
        if len(bundle) == 0 or all(v == 0 for v in bundle.values()):
            raise ValueError(
                f"Bundles cannot be an empty dictionary or resources with only 0 values. Bundles: {bundles}"
            )


def validate_placement_group(bundles, strategy=None, lifetime=None, **_ignored) -> None:
    """Ray's checks, in Ray's order, with Ray's ``ValueError`` texts."""
    if strategy is not None and strategy not in VALID_PLACEMENT_GROUP_STRATEGIES:
        raise ValueError(
            f"Invalid placement group strategy {strategy}. "
            f"Supported strategies are: {VALID_PLACEMENT_GROUP_STRATEGIES}."
        )
    _validate_bundles(bundles)
    if lifetime not in (None, "detached"):
        raise ValueError(
            f"Placement group `lifetime` argument must be either `None` or 'detached'. Got {lifetime}."
        )


def placement_group(
    bundles: List[Dict[str, float]],
    strategy: Optional[str] = None,
    name: str = "",
    lifetime: Optional[str] = None,
    _soft_target_node_id: Optional[str] = None,
    bundle_label_selector: Optional[List[Dict[str, str]]] = None,
    topology_strategy: Optional[Dict[str, str]] = None,
) -> PlacementGroup:
    """Asynchronously reserve ``bundles`` (``PACK`` by default); ``ready()`` tells when."""
    if topology_strategy is not None:
        raise ValueError("raycompat does not support `topology_strategy`: pass `strategy` instead.")
    validate_placement_group(bundles, strategy, lifetime)
    strategy = strategy or "PACK"
    client = _driver.current_session().client
    pg_id = _groups.new_id()
    group = PlacementGroup(
        PlacementGroupID(pg_id), bundle_cache=[{k: float(v) for k, v in b.items()} for b in bundles]
    )
    _groups.create(client, pg_id, bundles, strategy, name, lifetime, group)
    return group


def remove_placement_group(placement_group: PlacementGroup) -> None:
    """Remove the group: its resources go back, its actors die, tasks waiting for it fail."""
    assert placement_group is not None
    _groups.remove(_driver.current_session().client, placement_group.id.hex())


def get_placement_group(placement_group_name: str) -> PlacementGroup:
    """The live group named ``placement_group_name`` in this job's namespace."""
    if not placement_group_name:
        raise ValueError("Please supply a non-empty value to get_placement_group")
    client = _driver.current_session().client
    pg_id = _groups.find_by_name(client, placement_group_name, _driver.current_namespace())
    if pg_id is None:
        raise ValueError(f"Failed to look up placement group with name: {placement_group_name}")
    return PlacementGroup(PlacementGroupID(pg_id))


def _table_entry(rec: dict) -> dict:
    bundles = rec.get("bundles") or {}
    return {
        "placement_group_id": rec["placement_group_id"],
        "name": rec.get("name", ""),
        "bundles": {int(i): dict(b) for i, b in bundles.items()},
        "bundles_to_node_id": {int(i): n for i, n in (rec.get("bundles_to_node_id") or {}).items()},
        "strategy": rec["strategy"],
        "state": rec["state"],
        "stats": {
            "end_to_end_creation_latency_ms": 0.0,
            "scheduling_latency_ms": 0.0,
            "scheduling_attempt": 1,
            "highest_retry_delay_ms": 0.0,
            "scheduling_state": {"CREATED": "FINISHED", "REMOVED": "REMOVED"}.get(rec["state"], "QUEUED"),
        },
    }


def placement_group_table(placement_group: Optional[PlacementGroup] = None) -> dict:
    """Ray's table: one group's entry, or ``{id: entry}`` of all groups."""
    client = _driver.current_session().client
    if placement_group is not None:
        rec = _groups.record(client, placement_group.id.hex(), fresh=True)
        return _table_entry(rec) if rec else {}
    return {pg_id: _table_entry(rec) for pg_id, rec in _groups.table(client).items()}


def get_current_placement_group() -> Optional[PlacementGroup]:
    """The group the calling task or actor runs in (None in the driver or outside one)."""
    ctx = _context.current_task()
    if ctx is None or not ctx.placement_group:
        return None
    return PlacementGroup(PlacementGroupID(ctx.placement_group[0]))
