"""``raycompat run script.py [args...]``: an unmodified Ray program, run on raycompat.

The program's ``import ray`` (and ``ray.util.queue``, ``ray.exceptions``...) resolve to
raycompat's modules (``raycompat._private.ray_alias``), in this process and in every worker
of the cluster its ``ray.init()`` starts or joins. The script runs as ``python script.py``
would run it: ``__name__ == "__main__"``, ``sys.argv == [script, *args]``, its directory
first on ``sys.path``; its exit code is the process's, and an uncaught exception prints the
script's own traceback (no runner frames) and exits 1. ``-m module`` runs a module as
``python -m`` does.
"""

from __future__ import annotations

import argparse
import os
import runpy
import sys

from raycompat._private import ray_alias

_RUNNER_FILES = {__file__, runpy.__file__, "<frozen runpy>"}


def add_parsers(subparsers) -> None:
    parser = subparsers.add_parser(
        "run",
        help="run an unmodified Ray program (its `import ray` gives raycompat)",
        description="Run a Ray program on raycompat without editing it: `import ray` and "
        "`ray.*` modules resolve to raycompat's, in the driver and in the workers.",
    )
    parser.add_argument("-m", dest="module", metavar="MODULE", help="run a module, as `python -m`")
    parser.add_argument("script", nargs="?", help="the program to run")
    parser.add_argument("args", nargs=argparse.REMAINDER, help="the program's arguments")
    parser.set_defaults(func=_command)


def _command(args) -> int:
    if args.module:
        argv = [a for a in ([args.script] if args.script else []) + args.args]
        return run_module(args.module, argv)
    if not args.script:
        print("raycompat run: give the script to run (or -m MODULE)", file=sys.stderr)
        return 2
    return run(args.script, args.args)


def run(script: str, args: list) -> int:
    """Run ``script`` as ``__main__`` with ``ray`` aliased; returns its exit code."""
    if not os.path.exists(script):
        print(f"raycompat run: can't open file {script!r}: no such file", file=sys.stderr)
        return 2
    ray_alias.install()
    sys.argv = [script, *args]
    path = os.path.abspath(script)  # as Python: __file__ and tracebacks show the full path
    sys.path[0] = os.path.dirname(path)
    return _run_main(lambda: runpy.run_path(path, run_name="__main__"))


def run_module(module: str, args: list) -> int:
    """Run ``module`` as ``python -m module`` does, with ``ray`` aliased."""
    ray_alias.install()
    sys.argv = [module, *args]  # runpy replaces argv[0] with the module's path
    sys.path[0] = os.getcwd()
    return _run_main(lambda: runpy.run_module(module, run_name="__main__", alter_sys=True))


def _run_main(body) -> int:
    try:
        body()
    except SystemExit as e:
        return _exit_code(e.code)
    except BaseException as e:  # noqa: BLE001 - reported as Python reports an uncaught one
        tb = e.__traceback__
        while tb is not None and tb.tb_frame.f_code.co_filename in _RUNNER_FILES:
            tb = tb.tb_next
        sys.excepthook(type(e), e.with_traceback(tb), tb)
        return 130 if isinstance(e, KeyboardInterrupt) else 1
    return 0


def _exit_code(code) -> int:
    """``sys.exit(code)``'s meaning: None is 0, an int is itself, anything else is printed, 1."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)
    return 1
