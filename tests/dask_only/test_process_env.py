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
