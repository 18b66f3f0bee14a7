"""``process_env``: env vars and cwd that concurrent calls of one worker process set."""

import os

from raycompat._dask import process_env

KEY = "RAYCOMPAT_TEST_LAYERED"


def test_calls_ending_out_of_order_leave_nothing_behind(tmp_path):
    # Call A starts, call B starts, A ends, B ends (fractional-CPU tasks, or a task
    # blocked in get beside the next one). Restoring what each saw at its start would
    # leave B without its value after A ends, and A's value set for good after B ends.
    os.environ.pop(KEY, None)
    start_cwd = os.getcwd()
    a = process_env.push({KEY: "a", process_env.CWD: str(tmp_path)})
    b = process_env.push({KEY: "b"})
    assert os.environ[KEY] == "b"
    process_env.pop(a)
    assert os.environ[KEY] == "b"  # B still runs with its own value
    assert os.getcwd() == start_cwd  # A's working directory ended with A
    process_env.pop(b)
    assert KEY not in os.environ


def test_the_newest_active_layer_wins_and_the_old_value_comes_back():
    os.environ[KEY] = "before"
    try:
        a = process_env.push({KEY: "a"})
        b = process_env.push({KEY: "b"})
        process_env.pop(b)
        assert os.environ[KEY] == "a"
        process_env.pop(a)
        assert os.environ[KEY] == "before"
    finally:
        os.environ.pop(KEY, None)


def test_overlapping_path_layers_never_pile_up():
    # Tasks with the same working_dir that keep overlapping (fractional CPUs, a task
    # blocked in get) each put their paths in front of PYTHONPATH: each path once.
    os.environ[KEY] = "/base"
    try:
        tokens = [process_env.push({KEY: ["/wd"]})]
        for _ in range(100):
            tokens.append(process_env.push({KEY: ["/wd"]}))
            process_env.pop(tokens.pop(0))
        assert os.environ[KEY] == os.pathsep.join(["/wd", "/base"])
        other = process_env.push({KEY: ["/other"]})
        assert os.environ[KEY] == os.pathsep.join(["/other", "/wd", "/base"])
        process_env.pop(tokens.pop())
        assert os.environ[KEY] == os.pathsep.join(["/other", "/base"])
        process_env.pop(other)
        assert os.environ[KEY] == "/base"
    finally:
        os.environ.pop(KEY, None)
