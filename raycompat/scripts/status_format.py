"""``ray status``'s text (Ray's ``format_info_string``, ``autoscaler/_private/util.py``).

Ray prints the active, pending and failed nodes, then each resource's usage over its
total (memory in GiB/MiB, ``node:`` resources left out) and the pending demands. The
same layout from ``cluster_status.status_remote``; a cluster without an autoscaler has
no pending or failed nodes. raycompat then adds the running and pending tasks by name
and the live actors by class, in the same style.
"""

from __future__ import annotations

from datetime import datetime

MEMORY_SUFFIXES = (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10))


def format_memory(mem_bytes) -> str:
    for suffix, unit in MEMORY_SUFFIXES:
        if mem_bytes >= unit:
            return f"{mem_bytes / unit:.2f}{suffix}"
    return f"{int(mem_bytes)}B"


def _usage_lines(usage: dict) -> list:
    lines = []
    for name, (used, total) in sorted(usage.items()):
        if "node:" in name:
            continue
        if name in ("memory", "object_store_memory"):
            lines.append(f"{format_memory(used)}/{format_memory(total)} {name}")
        else:
            lines.append(f"{used}/{total} {name}")
    return lines


def _counts(counts: dict, empty: str) -> str:
    if not counts:
        return f" {empty}"
    return "\n".join(f" {n} {name}" for name, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def format_status(status: dict, time=None) -> str:
    header = "=" * 8 + f" Autoscaler status: {time or datetime.now()} " + "=" * 8
    separator = "-" * len(header)
    active = "\n".join(f" 1 node_{node_id}" for node_id in status["nodes"]) or " (no active nodes)"
    usage = "".join(f" {line}\n" for line in _usage_lines(status["usage"]))
    demands = "\n".join(f" {request}: {count}+ pending tasks/actors" for request, count in status["demands"])
    return f"""{header}
Node status
{separator}
Active:
{active}
Pending:
 (no pending nodes)
Recent failures:
 (no failures)

Resources
{separator}
Total Usage:
{usage}
From request_resources:
 (none)
Pending Demands:
{demands or " (no resource demands)"}

Tasks
{separator}
Running:
{_counts(status["running"], "(no running tasks)")}
Pending:
{_counts(status["pending"], "(no pending tasks)")}

Actors
{separator}
Alive:
{_counts(status["actors"], "(no live actors)")}""".strip()
