"""``raycompat list``, ``raycompat get`` and ``raycompat summary``: Ray's state CLI.

As ``ray list actors|tasks|nodes [--filter key=value] [--limit N] [--detail] [--format]``,
``ray get actors|tasks|nodes ID`` and ``ray summary tasks|actors``, over
``raycompat.util.state`` (the cluster at ``--address``, else ``RAY_ADDRESS``, else the one
``raycompat start`` last started here). Output as Ray's (``state_output.py``).
"""

from __future__ import annotations

import sys

from raycompat.scripts import state_output
from raycompat.util.state import api
from raycompat.util.state.common import DEFAULT_LIMIT, DEFAULT_RPC_TIMEOUT
from raycompat.util.state.exception import RayStateApiException

RESOURCES = ("actors", "tasks", "nodes")


def parse_filter(text: str) -> tuple:
    """Ray's ``--filter``: ``key=value`` or ``key!=value`` (the first predicate found)."""
    for i, char in enumerate(text):
        if char == "=":
            return text[:i].strip(), "=", text[i + 1:].strip()
        if char == "!" and text[i + 1:i + 2] == "=":
            return text[:i].strip(), "!=", text[i + 2:].strip()
    raise ValueError(
        f"The format of a given filter {text} is invalid: Cannot find the predicate. "
        "Please provide key=val or key!=val format string."
    )


def _common(p) -> None:
    p.add_argument("--address", default=None,
                   help="The Dask scheduler's address (default: RAY_ADDRESS, else the cluster started here).")
    p.add_argument("--timeout", type=int, default=DEFAULT_RPC_TIMEOUT,
                   help=f"Timeout in seconds for the API requests. Default is {DEFAULT_RPC_TIMEOUT}")


def add_parsers(subparsers) -> None:
    p = subparsers.add_parser("list", help="List the cluster's actors, tasks or nodes (ray list).")
    p.add_argument("resource", choices=RESOURCES)
    p.add_argument("--format", default="default", choices=state_output.FORMATS)
    p.add_argument("-f", "--filter", action="append", default=[],
                   help="key=value or key!=value; several are ANDed; string values are case-insensitive.")
    p.add_argument("--limit", type=int, default=DEFAULT_LIMIT, help="Maximum number of entries to return.")
    p.add_argument("--detail", action="store_true", help="Every column (printed as YAML by default).")
    _common(p)
    p.set_defaults(func=list_command)

    p = subparsers.add_parser("get", help="Get an actor, task or node by its id (ray get).")
    p.add_argument("resource", choices=RESOURCES)
    p.add_argument("id")
    _common(p)
    p.set_defaults(func=get_command)

    p = subparsers.add_parser("summary", help="Summarize the cluster's tasks or actors (ray summary).")
    p.add_argument("resource", choices=("tasks", "actors"))
    _common(p)
    p.set_defaults(func=summary_command)


def _fail(e: BaseException) -> int:
    print(f"Error: {e}", file=sys.stderr)
    return 2


def list_command(args) -> int:
    schema, _ = api.SCHEMAS[args.resource]
    try:
        filters = [parse_filter(f) for f in args.filter]
        rows = api.query(args.resource, args.address, filters, args.limit, args.timeout, args.detail)
    except (ValueError, ConnectionError, RayStateApiException) as e:
        return _fail(e)
    states = [schema.from_row(r, args.detail) for r in rows]
    print(state_output.list_output(states, schema, args.format, args.detail))
    return 0


def get_command(args) -> int:
    schema, _ = api.SCHEMAS[args.resource]
    try:
        found = api.get_one(args.resource, args.id, args.address, args.timeout)
    except (ValueError, ConnectionError, RayStateApiException) as e:
        return _fail(e)
    if not found:
        print(f"Resource with id={args.id} not found in the cluster.")
        return 0
    states = found if isinstance(found, list) else [found]
    print(state_output.list_output(states, schema, "yaml", detail=True))
    return 0


def summary_command(args) -> int:
    fn = api.summarize_tasks if args.resource == "tasks" else api.summarize_actors
    try:
        summary = fn(address=args.address, timeout=args.timeout)
    except (ValueError, ConnectionError, RayStateApiException) as e:
        return _fail(e)
    print(state_output.summary_output(summary, args.resource))
    return 0
