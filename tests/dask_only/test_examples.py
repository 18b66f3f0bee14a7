"""The seed tutorial's programs run as written (only the import swapped) from examples/,
on the cluster ``ray.init()`` starts and on a cluster it joins through ``RAY_ADDRESS``."""

import os
import subprocess
import sys
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def _run(name, **env):
    full_env = {**os.environ, **env}
    return subprocess.run(
        [sys.executable, str(EXAMPLES / name)], capture_output=True, text=True, timeout=300, env=full_env
    )


def test_hello_world(example_env):
    proc = _run("hello_world.py", **example_env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().splitlines()[-1] == "Hello, world!"


def test_sum_list_local_and_remote(example_env):
    n = 200_000
    expected = str(n * (n - 1) // 2)
    for name in ("sum_list_local.py", "sum_list_remote.py"):
        proc = _run(name, RAYCOMPAT_SUM_LIST_SIZE=str(n), **example_env)
        assert proc.returncode == 0, proc.stderr[-2000:]
        lines = proc.stdout.strip().splitlines()
        assert lines[0] == expected
        assert lines[1].startswith("Time taken: ")


def test_counter_actor(example_env):
    proc = _run("counter_actor.py", **example_env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().splitlines()[-1] == "1"


def test_rl_rollouts_learns(example_env):
    # Small and seeded: 2 rollout-worker actors, 4 CartPole episodes each per iteration.
    # The run is deterministic (per-worker seeds, gradients averaged in worker order), so
    # the random policy's first iteration (about 23) is beaten by the last (about 60).
    small = {"RAYCOMPAT_RL_WORKERS": "2", "RAYCOMPAT_RL_EPISODES": "4", "RAYCOMPAT_RL_ITERATIONS": "10",
             "RAYCOMPAT_RL_SEED": "0"}
    proc = _run("rl_rollouts.py", **small, **example_env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stdout.strip().splitlines()
    returns = [float(line.rsplit(" ", 1)[1]) for line in lines if line.startswith("iteration ")]
    assert len(returns) == 10
    assert lines[-2] == f"initial mean return: {returns[0]:.1f}"
    assert lines[-1] == f"final mean return: {returns[-1]:.1f}"
    assert returns[-1] > 1.5 * returns[0], returns
