"""The behaviour suite's cluster-relevant modules on a cluster raycompat joins.

``tests/joined_cluster.py`` starts a ``dask scheduler`` and two ``dask worker``
processes (one thread each), points ``RAY_ADDRESS`` at it and runs pytest; here on the
modules whose behaviour depends on the cluster (resources, tasks, actors, objects,
failures, generators, worker output, the state API). ``python tests/joined_cluster.py`` runs all of
``tests/`` that way (README, "Tests").
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]
MODULES = [
    "test_resources.py",
    "test_tasks.py",
    "test_actors.py",
    "test_get_put_wait.py",
    "test_failures.py",
    "test_object_lifetime.py",
    "test_generators.py",
    "test_worker_output.py",
    "test_placement_group.py",
    "test_util_state.py",
]


def test_cluster_relevant_modules_pass_on_a_joined_cluster():
    proc = subprocess.run(
        [sys.executable, str(TESTS / "joined_cluster.py"), *(str(TESTS / m) for m in MODULES),
         "-q", "-p", "no:cacheprovider", "--timeout", "120", "-x"],
        capture_output=True, text=True, timeout=1200,
    )
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-2000:]
    assert " passed" in proc.stdout.splitlines()[-1]
