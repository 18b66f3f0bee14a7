"""``python -m raycompat script.py [args]`` runs a Ray program unmodified (as
``raycompat run``); ``python -m raycompat COMMAND ...`` is the ``raycompat`` command."""

import sys

from raycompat.scripts import run_script, scripts


def _main(argv: list) -> int:
    if argv and not argv[0].startswith("-") and argv[0] not in _commands():
        return run_script.run(argv[0], argv[1:])
    return scripts.main(argv)


def _commands() -> set:
    parser = scripts.build_parser()
    return set(parser._subparsers._group_actions[0].choices)


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
