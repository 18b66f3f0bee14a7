"""Ray's state API filters, sorting and limits over rows (dicts with Ray's field names).

Ray's API server (``ray/dashboard/state_api_utils.py``, ``do_filter``) takes filters as
``(column, "=" | "!=", value)`` tuples, ANDed; a column must be one the schema marks
filterable (else ``ValueError``); string values match case-insensitively; a string
value given for an int or bool column is converted (``"1"``, ``"true"``). Results are
sorted by the resource's id, then cut to ``limit``. These functions run where the rows
are: on the scheduler for tasks (there may be 100,000 of them), in the caller for
actors and nodes.
"""

from __future__ import annotations

PREDICATES = ("=", "!=")


def check_predicates(filters) -> list:
    """Ray's ``ListApiOptions`` check, done before anything is asked of the cluster."""
    filters = list(filters or [])
    for _, predicate, _ in filters:
        if predicate not in PREDICATES:
            raise ValueError(
                f"Unsupported filter predicate {predicate} is given. Available predicates: =, !=."
            )
    return filters


def _convert(value, kind: str):
    if not isinstance(value, str) or kind not in ("int", "float", "bool"):
        return value
    if kind == "bool":
        if value in ("False", "false", "0"):
            return False
        if value in ("True", "true", "1"):
            return True
        raise ValueError(f"Failed to convert a value {value} of type {type(value)} to {bool}")
    try:
        return int(value) if kind == "int" else float(value)
    except ValueError:
        raise ValueError(f"Failed to convert a value {value} of type {type(value)} to {kind}") from None


def _matches(cell, predicate: str, value) -> bool:
    if isinstance(value, str) and isinstance(cell, str):
        equal = cell.lower() == value.lower()
    elif isinstance(value, str) and isinstance(cell, bool):
        equal = cell == _convert(value, "bool")
    elif isinstance(value, str) and isinstance(cell, int):
        equal = cell == _convert(value, "int")
    else:
        equal = cell == value
    return equal if predicate == "=" else not equal


def apply(rows: list, filters, filterable, types: dict, id_column: str, limit) -> tuple:
    """``(rows kept, sorted and cut to limit, number that matched)``."""
    filters = check_predicates(filters)
    converted = []
    for column, predicate, value in filters:
        column = column.lower()
        if column not in filterable:
            raise ValueError(
                f"The given filter column {column} is not supported. Enter filters with "
                "--filter key=value or --filter key!=value "
                f"Supported filter columns: {set(filterable)}"
            )
        converted.append((column, predicate, _convert(value, types.get(column, "str"))))
    kept = [r for r in rows if all(c in r and _matches(r[c], p, v) for c, p, v in converted)]
    kept.sort(key=lambda r: r.get(id_column) or "")
    return (kept if limit is None else kept[: max(0, int(limit))]), len(kept)
