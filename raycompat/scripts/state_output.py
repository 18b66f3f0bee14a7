"""How ``ray list`` and ``ray summary`` print (``ray/util/state/state_cli.py``).

A list prints a header with the time, ``Total``, and a table in tabulate's ``plain``
format with a row index (Ray ships tabulate; this is the part of it Ray's tables use):
columns two spaces apart, at least two wider than their header, numbers (and strings
that read as numbers) right-aligned, dicts as YAML over several lines. ``--detail``
prints YAML; ``--format json|yaml|table`` as Ray.
"""

from __future__ import annotations

import json
from datetime import datetime

import yaml

FORMATS = ("default", "json", "yaml", "table")


def _is_number(value) -> bool:
    if isinstance(value, bool) or value is None:
        return False
    if isinstance(value, (int, float)):
        return True
    if isinstance(value, str):
        try:
            float(value)
            return True
        except ValueError:
            return False
    return False


def _text(value, floatfmt: str) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return format(value, floatfmt)
    return str(value)


def tabulate(rows: list, headers: list, numalign: str = "right", floatfmt: str = ".3f") -> str:
    """tabulate's ``tablefmt="plain", showindex=True``."""
    columns = [[str(i) for i in range(len(rows))]] + [[r[i] for r in rows] for i in range(len(headers))]
    heads = [""] + list(headers)
    numeric = [True] + [all(_is_number(v) for v in col if v not in (None, "")) and any(
        v not in (None, "") for v in col) for col in columns[1:]]
    cells = [[_text(v, floatfmt).splitlines() or [""] for v in col] for col in columns]
    widths = [max([len(h) + 2] + [len(line) for cell in col for line in cell]) for h, col in zip(heads, cells)]

    def line(parts, numeric_cols):
        out = []
        for part, width, num in zip(parts, widths, numeric_cols):
            right = num and (numalign == "right")
            out.append(part.rjust(width) if right else part.ljust(width))
        return "  ".join(out).rstrip()

    lines = [line(heads, numeric)]
    for r in range(len(rows)):
        height = max(len(col[r]) for col in cells)
        for k in range(height):
            lines.append(line([col[r][k] if k < len(col[r]) else "" for col in cells], numeric))
    return "\n".join(lines)


def _yaml_cells(row: dict) -> dict:
    return {k: yaml.dump(v, indent=2) if isinstance(v, dict) else v for k, v in row.items()}


def list_output(states: list, schema, fmt: str = "default", detail: bool = False) -> str:
    """Ray's ``format_list_api_output``."""
    if not states:
        return "No resource in the cluster"
    data = [schema.humanify(s.asdict()) for s in states]
    if detail and fmt == "default":
        fmt = "yaml"
    if fmt == "yaml":
        return yaml.dump(data, indent=4, explicit_start=True, sort_keys=False, explicit_end=True)
    if fmt == "json":
        return json.dumps(data)
    columns = [c for c in schema.list_columns(detail=detail) if c in data[0]]
    table = [[_yaml_cells(d)[c] for c in columns] for d in data]
    header = "=" * 8 + f" List: {datetime.now()} " + "=" * 8
    return (f"\n{header}\nStats:\n------------------------------\nTotal: {len(data)}\n\n"
            f"Table:\n------------------------------\n{tabulate(table, [c.upper() for c in columns])}\n")


def summary_output(summary: dict, resource: str) -> str:
    """Ray's ``format_summary_output`` (``resource``: "tasks" or "actors")."""
    if not summary:
        return "No resource in the cluster"
    cluster = dict(summary["cluster"])
    entries = cluster.pop("summary")
    summary_by = cluster.pop("summary_by")
    stats = yaml.dump(cluster, indent=2)
    table, headers = [], []
    for entry in entries.values():
        entry = _yaml_cells(entry)
        headers = sorted(k.upper() for k in entry)
        table.append([entry[h.lower()] for h in headers])
    header = "=" * 8 + f" {resource.capitalize()} Summary: {datetime.now()} " + "=" * 8
    return (f"\n{header}\nStats:\n------------------------------------\n{stats}\n"
            f"Table (group by {summary_by}):\n------------------------------------\n"
            f"{tabulate(table, headers, numalign='left')}\n")
