"""``ray.util.joblib.register_ray``: joblib's ``Parallel`` on the cluster.

Behaviours pinned by running Ray 2.60 (``RAYCOMPAT_TEST_ENGINE=ray``): batches run in the
pool's actors, never in the driver (``n_jobs=1`` excepted, which joblib runs in the
driver); ``n_jobs=-1`` is the cluster's CPU count and more jobs than CPUs raise
``ValueError``; a failing call re-raises the user's exception; ``timeout=`` raises
``multiprocessing.TimeoutError``; ``return_as="generator"`` is refused; nested
``Parallel`` calls inside a batch work; ``ray_remote_args`` configures the actors.
"""

import importlib
import multiprocessing
import os
import time

import joblib
import pytest
from joblib import Parallel, delayed

from conftest import ENGINE

ray_joblib = importlib.import_module(f"{ENGINE}.util.joblib")
engine = importlib.import_module(ENGINE)


class MyError(Exception):
    pass


def where(i):
    return i, os.getpid(), engine.get_runtime_context().get_actor_id()


def fail_on_2(i):
    if i == 2:
        raise MyError(f"bad {i}")
    return i


def rendezvous(mine, other):
    open(mine, "w").close()
    deadline = time.monotonic() + 30
    while not os.path.exists(other):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def wait_for(path, timeout=30.0):
    deadline = time.monotonic() + timeout
    while not os.path.exists(path) and time.monotonic() < deadline:
        time.sleep(0.01)


def nested_sum(n):
    return sum(Parallel(n_jobs=2)(delayed(abs)(-j) for j in range(n)))


def getenv(name):
    return os.environ.get(name)


@pytest.fixture(scope="module", autouse=True)
def registered(ray):
    ray_joblib.register_ray()


def test_runs_in_actors_in_order(ray):
    with joblib.parallel_config(backend="ray"):
        out = Parallel(n_jobs=2)(delayed(where)(i) for i in range(10))
    assert [i for i, _, _ in out] == list(range(10))
    assert all(pid != os.getpid() and actor is not None for _, pid, actor in out)


def test_batches_run_concurrently(ray, tmp_path):
    a, b = str(tmp_path / "a"), str(tmp_path / "b")
    with joblib.parallel_config(backend="ray", n_jobs=2):
        assert Parallel(batch_size=1)(delayed(rendezvous)(x, y) for x, y in [(a, b), (b, a)]) == [True, True]


def test_n_jobs(ray):
    with joblib.parallel_config(backend="ray"):
        assert joblib.effective_n_jobs(-1) == 2  # the cluster's CPUs
        assert Parallel(n_jobs=-1)(delayed(abs)(-i) for i in range(5)) == [0, 1, 2, 3, 4]
        with pytest.raises(ValueError, match="only 2 CPUs in the ray cluster"):
            Parallel(n_jobs=3)(delayed(abs)(-i) for i in range(5))
        # n_jobs=1: joblib's sequential backend, in the driver.
        out = Parallel(n_jobs=1)(delayed(where)(i) for i in range(2))
        assert [(pid, actor) for _, pid, actor in out] == [(os.getpid(), None)] * 2


def test_errors_and_timeout(ray, tmp_path):
    with joblib.parallel_config(backend="ray"):
        with pytest.raises(MyError, match="bad 2"):
            Parallel(n_jobs=2)(delayed(fail_on_2)(i) for i in range(5))
        release = str(tmp_path / "release")
        try:
            with pytest.raises(multiprocessing.TimeoutError):
                Parallel(n_jobs=2, timeout=0.5)(delayed(wait_for)(release) for _ in range(2))
        finally:
            open(release, "w").close()
        with pytest.raises(ValueError, match="does not support return_as=generator"):
            Parallel(n_jobs=2, return_as="generator")(delayed(abs)(i) for i in range(3))
        # The backend still works after an aborted call.
        assert Parallel(n_jobs=2)(delayed(abs)(-i) for i in range(3)) == [0, 1, 2]


def test_nested_parallel(ray):
    with joblib.parallel_config(backend="ray"):
        assert Parallel(n_jobs=2)(delayed(nested_sum)(n) for n in range(5)) == [0, 0, 1, 3, 6]


def test_ray_remote_args_configure_the_actors(ray):
    remote_args = {"runtime_env": {"env_vars": {"RAYCOMPAT_JOBLIB_ENV": "yes"}}}
    with joblib.parallel_config(backend="ray", ray_remote_args=remote_args):
        assert Parallel(n_jobs=2)(delayed(getenv)("RAYCOMPAT_JOBLIB_ENV") for _ in range(4)) == ["yes"] * 4
