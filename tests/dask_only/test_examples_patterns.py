"""Programs for the patterns Ray's documentation teaches, run as written from examples/.

Each swaps only its imports (``import raycompat as ray``, ``from raycompat.util...``,
``from raycompat.dag...``). With those lines switched back to ``ray``, Ray 2.60 prints
the same lines (checked by hand); like ``test_examples.py`` they
live with the Dask-only tests, since the examples import raycompat.
"""

from .test_examples import _run


def _stdout_lines(name, env):
    proc = _run(name, **env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc, proc.stdout.strip().splitlines()


def test_actor_pool(example_env):
    _, lines = _stdout_lines("actor_pool.py", example_env)
    assert lines[-3:] == ["[2, 4, 6, 8]", "[10, 12, 14, 16]", "18 20"]


def test_queue_producer_consumer(example_env):
    _, lines = _stdout_lines("queue_producer_consumer.py", example_env)
    assert lines[-4:] == [
        "Produced 20 items",
        "Consumed 20 items by 3 consumers",
        "True 2470",
        "Queue empty: True",
    ]


def test_dag_pipeline(example_env):
    proc, lines = _stdout_lines("dag_pipeline.py", example_env)
    assert lines[-3:] == ["[2, 4, 6]", "[10, 20, 30]", "5"]
    # As on Ray 2.60: execute() is deprecated, and RayDeprecationWarning is shown once
    # per module that triggers it (three calls, one warning).
    assert proc.stderr.count("RayDeprecationWarning: DAGNode.execute() is deprecated") == 1


def test_streaming_generator(example_env):
    proc, lines = _stdout_lines("streaming_generator.py", example_env)
    # It ends without ray.shutdown(), as many scripts do: the exit must be quiet.
    assert "Traceback" not in proc.stderr and "ERROR" not in proc.stderr, proc.stderr[-2000:]
    got = [line for line in lines if line.startswith("got ")]
    assert [line.split()[1] for line in got] == ["0", "1", "4", "9", "16"]
    # Items arrive as they are yielded (0.2 s apart), not all when the task ends (1 s).
    seconds = [float(line.split()[-1].rstrip("s")) for line in got]
    assert seconds == sorted(seconds) and seconds[0] < seconds[-1]
    assert lines[-3:] == ["ready before the first yield: True", "next item: 0",
                          "['tick 0', 'tick 1', 'tick 2']"]
