"""Output of tasks and actors on real ``dask worker`` processes reaches the driver."""

import re

from conftest import run_script


def test_remote_worker_output_is_forwarded_with_prefix(cli_cluster):
    proc = run_script(
        f"""
        import os
        import raycompat as ray
        ray.init(address="{cli_cluster.address}")

        @ray.remote
        def shout():
            print("from a dask worker")
            return os.getpid()

        @ray.remote
        class Echo:
            def say(self):
                print("from an actor")
                return os.getpid()

        print("PIDS", ray.get(shout.remote()), ray.get(Echo.remote().say.remote()))
        ray.shutdown()
        """,
        env={"RAY_COLOR_PREFIX": "0"},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    task_pid, actor_pid = map(int, re.search(r"^PIDS (\d+) (\d+)$", proc.stdout, re.M).groups())
    worker_pids = {p.pid for p in cli_cluster.procs}
    assert task_pid in worker_pids and actor_pid in worker_pids
    assert f"(shout pid={task_pid}) from a dask worker\n" in proc.stdout
    assert f"(Echo pid={actor_pid}) from an actor\n" in proc.stdout
    # On a cluster the driver only joined, the lines also stay in the worker's own log.
    logs = "".join(p.read_text() for p in cli_cluster.logs.glob("worker*.log"))
    assert "from a dask worker" in logs and "from an actor" in logs
