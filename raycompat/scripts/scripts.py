"""``raycompat``: the command line, in the shape of Ray's ``ray`` command.

Each sub-command lives in a module of its own that adds its parser here:

- ``run``: run an unmodified Ray program on raycompat (``run_script.py``);
- ``start`` / ``stop`` / ``status``: a Dask cluster managed like ``ray start`` (``cluster_commands.py``);
- ``list`` / ``summary``: Ray's state CLI over the scheduler's state (``state_commands.py``).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Optional

#: Modules that each define ``add_parsers(subparsers)``; a command sets ``func(args) -> int``.
COMMAND_MODULES = (
    "raycompat.scripts.run_script",
    "raycompat.scripts.cluster_commands",
    "raycompat.scripts.state_commands",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="raycompat",
        description="Ray's command line on dask.distributed.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as e:
            if e.name != name:
                raise
            continue  # a command still being written
        module.add_parsers(sub)
    return parser


def main(argv: Optional[list] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    return args.func(args) or 0


if __name__ == "__main__":
    sys.exit(main())
