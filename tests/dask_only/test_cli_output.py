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


def test_a_leaving_driver_takes_its_event_topics_along(cli_cluster):
    # The scheduler keeps the last 1,000 events of every topic while it runs: a driver's
    # output and stream topics must not pile up on a long-lived cluster.
    import time

    import distributed

    proc = run_script(
        f"""
        import raycompat as ray
        from raycompat._dask import driver, output, streaming
        ray.init(address="{cli_cluster.address}")

        @ray.remote
        def count(n):
            for i in range(n):
                print("item", i)
                yield i

        assert [ray.get(r) for r in count.remote(3)] == [0, 1, 2]
        print("TOPICS", output.TOPIC_PREFIX + driver.current_job_id(),
              streaming.TOPIC_PREFIX + driver.client().id)
        ray.shutdown()
        """
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    topics = set(re.search(r"^TOPICS (\S+) (\S+)$", proc.stdout, re.M).groups())
    with distributed.Client(cli_cluster.address, set_as_default=False) as client:
        deadline = time.time() + 30
        while topics & set(client.get_events()) and time.time() < deadline:
            time.sleep(0.2)
        assert not topics & set(client.get_events()), topics
