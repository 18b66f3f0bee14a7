"""A Dataset's repr, as Ray 2.60 draws it.

With a schema known without running anything (a source's, or a materialized dataset's)
Ray draws a table: ``shape: (rows, cols)``, column names and types, and for a
``MaterializedDataset`` up to 10 rows (5 first, ``…``, 5 last), then ``(Showing k of n
rows)`` or ``(Dataset isn't materialized)``. Otherwise it prints the plan from the last
operator down, ending in ``Dataset(num_rows=?, schema=Unknown schema)`` (the source's
count and schema when the source knows them).
"""

from __future__ import annotations

import numpy as np

import raycompat
from raycompat.data import _blocks, _ops
from raycompat.data import _execution as ex

_ELLIPSIS = "…"
_MAX_ROWS, _HEAD_ROWS, _MAX_WIDTH = 10, 5, 40


def _cell(value: str) -> str:
    return value if len(value) <= _MAX_WIDTH else value[: _MAX_WIDTH - 1] + _ELLIPSIS


def _format_value(value) -> str:
    if isinstance(value, np.generic):
        value = value.item()
    return str(value).replace("\n", " ").replace("\r", " ")


def _dtype(t) -> str:
    if isinstance(t, type):
        return t.__name__
    name = getattr(t, "name", None)
    return name if isinstance(name, str) else str(t)


def _preview_rows(ds, num_rows):
    """The first and last rows the repr shows, fetched as slices cut on the cluster (a
    block is never fetched whole for a few rows of it)."""
    blocks = list(ds._node.stream())
    if num_rows is None or num_rows <= _MAX_ROWS:
        head_n, tail_n = (num_rows if num_rows is not None else _MAX_ROWS), 0
    else:
        head_n, tail_n = _HEAD_ROWS, _MAX_ROWS - _HEAD_ROWS
    head_parts, tail_parts = [], []
    wanted = head_n
    for b in blocks:
        if wanted <= 0:
            break
        rows = b.meta.num_rows
        if rows:
            head_parts.append(_slice(b, 0, min(rows, wanted)))
            wanted -= min(rows, wanted)
    for b in reversed(blocks):
        if tail_n <= 0:
            break
        rows = b.meta.num_rows
        if rows:
            start = max(0, rows - tail_n)
            tail_parts.append(_slice(b, start, rows))
            tail_n -= rows - start
    tables = raycompat.get(head_parts + list(reversed(tail_parts)))
    head = [r for t in tables[:len(head_parts)] for r in _blocks.rows_of(t)]
    tail = [r for t in tables[len(head_parts):] for r in _blocks.rows_of(t)]
    return head, tail


def _slice(block, start: int, stop: int):
    if (start, stop) == (0, block.meta.num_rows) and block.meta.num_rows <= _MAX_ROWS:
        return block.ref  # small enough to fetch as it is
    return ex.submit_apply(block.ref, (_ops.Slice(start, stop),), "Repr").ref


def _table(schema, num_rows, name, materialized, head, tail) -> str:
    columns = list(schema.names)
    headers = [_cell(str(c)) for c in columns]
    dtypes = [_cell(_dtype(t)) for t in schema.types]
    sep = ["---"] * len(columns)
    fmt = lambda rows: [[_cell(_format_value(r.get(c))) for c in columns] for r in rows]  # noqa: E731
    rows = fmt(head) + ([[_ELLIPSIS] * len(columns)] if head and tail else []) + fmt(tail)
    widths = [max([len(headers[i]), len(dtypes[i]), 3] + [len(r[i]) for r in rows]) for i in range(len(columns))]

    def border(left, mid, right, fill):
        return left + mid.join(fill * (w + 2) for w in widths) + right

    def line(values):
        return "│" + "┆".join(f" {v.ljust(w)} " for v, w in zip(values, widths)) + "│"

    lines = [border("╭", "┬", "╮", "─"), line(headers), line(sep), line(dtypes)]
    if rows:
        lines.append(border("╞", "╪", "╡", "═"))
        lines.extend(line(r) for r in rows)
    lines.append(border("╰", "┴", "╯", "─"))
    shown = len(head) + len(tail)
    if materialized:
        summary = f"(Showing {shown} of {num_rows if num_rows is not None else '?'} rows)"
    else:
        summary = "(Dataset isn't materialized)"
    parts = [f"name: {name}"] if name is not None else []
    shape = f"shape: ({num_rows if num_rows is not None else '?'}, {len(columns)})"
    return "\n".join(parts + [shape, "\n".join(lines), summary])


def _summary(ds, materialized: bool) -> str:
    names = ex.plan_lines(ds._node)
    source = ex.source_of(ds._node)
    schema = source.known_schema()
    count = source.known_num_rows()
    if schema is None or not schema.names:
        schema_str = "Unknown schema"
    else:
        schema_str = "{" + ", ".join(f"{n}: {t}" for n, t in zip(schema.names, schema.types)) + "}"
    name = f"name={ds.name}, " if ds.name is not None else ""
    blocks = len(source.blocks) if materialized and isinstance(source, ex.RefSource) else 0
    blocks_str = f"num_blocks={blocks}, " if blocks else ""
    text = (f"{type(ds).__name__}({name}{blocks_str}num_rows={count if count is not None else '?'}, "
            f"schema={schema_str})")
    out = ""
    for depth, op in enumerate(names):
        out += (op if depth == 0 else " " * ((depth - 1) * 3) + "+- " + op) + "\n"
    if names:
        out += " " * ((len(names) - 1) * 3) + "+- " + text
    else:
        out += text
    return out


def dataset_repr(ds, materialized: bool) -> str:
    schema = ds._node.known_schema()
    if schema is None or not schema.names:
        return _summary(ds, materialized)
    num_rows = ds._node.repr_num_rows()
    head, tail = _preview_rows(ds, num_rows) if materialized else ([], [])
    return _table(schema, num_rows, ds.name, materialized, head, tail)
