"""Run the behaviour suite and the examples on a cluster raycompat joins.

Starts a ``dask scheduler`` and two ``dask worker`` processes (one thread each, with
nannies, on 127.0.0.1), points ``RAY_ADDRESS`` at it, runs pytest with the given
arguments (default: the behaviour suite, ``tests/`` without ``tests/dask_only``) and
then stops the processes it started, by pid::

    python tests/joined_cluster.py                # the behaviour suite on a joined cluster
    python tests/joined_cluster.py tests/test_actors.py -x
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent


def _cli_cluster_class():
    spec = importlib.util.spec_from_file_location("dask_only_conftest", HERE / "dask_only" / "conftest.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.CLICluster


def main(argv: list[str]) -> int:
    args = argv or [str(HERE), f"--ignore={HERE / 'dask_only'}", "-q", "-p", "no:cacheprovider"]
    cluster = _cli_cluster_class()(Path(tempfile.mkdtemp(prefix="raycompat-joined-")), ["", ""], nanny=True)
    try:
        print(f"dask scheduler at {cluster.address} (logs in {cluster.logs})", flush=True)
        env = {**os.environ, "RAY_ADDRESS": cluster.address}
        return subprocess.call([sys.executable, "-m", "pytest", *args], env=env, cwd=HERE.parent)
    finally:
        cluster.stop()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
