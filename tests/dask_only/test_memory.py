"""A task that outgrows its worker's memory: Ray's ``OutOfMemoryError``, and the worker
pool survives.

Ray 2.60 (shared/docs/reliability.md 1.4, measured): a task past the memory monitor's
threshold gets ``OutOfMemoryError`` with ``max_retries=0`` ("Task was killed due to the
node running low on memory..."), and is retried otherwise; the cluster stays usable.
raycompat maps Dask's nanny memory kill onto it; the retries count against
``max_retries`` (Ray's OOM retries have no limit unless ``max_retries=0``, see README).
"""

from __future__ import annotations

import os

import pytest

from conftest import run_script

from .conftest import CLICluster

HOG = """
import os, time, uuid
import raycompat as ray

def hog_body(marks):
    open(os.path.join(marks, uuid.uuid4().hex), "w").close()  # one file per run
    x = []
    for _ in range(40):
        x.append(bytearray(50 * 2**20))
        time.sleep(0.05)
    return len(x)

def runs(marks):
    return len(os.listdir(marks))
"""


def _script(tmp_path, body: str, **env):
    marks = tmp_path / "marks"
    marks.mkdir(exist_ok=True)
    return run_script(HOG + f"\nMARKS = {str(marks)!r}\n" + body, timeout=240,
                      env={"RAYCOMPAT_WORKER_MEMORY_LIMIT": "300MiB", **env})


def test_oom_with_max_retries_0_raises_out_of_memory_error_and_pool_comes_back(tmp_path):
    proc = _script(
        tmp_path,
        """
import time
from raycompat._dask import driver
ray.init(num_cpus=2, dashboard_port=0)
hog = ray.remote(max_retries=0)(hog_body)
@ray.remote
def ok():
    return 1
for round in range(3):
    try:
        ray.get(hog.remote(MARKS), timeout=120)
    except ray.exceptions.OutOfMemoryError as e:
        assert isinstance(e, ray.exceptions.RayError)
        assert "Task was killed due to the node running low on memory" in str(e), str(e)
        assert "hog_body" in str(e), str(e)
    else:
        raise AssertionError("no OutOfMemoryError")
    assert runs(MARKS) == round + 1, runs(MARKS)  # max_retries=0: never retried
    start = time.monotonic()
    while len(driver.client().scheduler_info()["workers"]) < 2:
        assert time.monotonic() - start < 30, "the worker pool did not come back within 30 s"
        time.sleep(0.2)
    assert ray.get([ok.remote() for _ in range(4)], timeout=60) == [1] * 4
ray.shutdown()
print("OK")
""",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().endswith("OK")
    # Dask's "marked as failed because 1000001 workers died" is not shown (get raises).
    assert "marked as failed" not in proc.stderr, proc.stderr[-3000:]


def test_oom_is_retried_up_to_max_retries(tmp_path):
    proc = _script(
        tmp_path,
        """
ray.init(num_cpus=2, dashboard_port=0)
try:
    ray.get(ray.remote(max_retries=2)(hog_body).remote(MARKS), timeout=180)
except ray.exceptions.OutOfMemoryError:
    pass
print("RUNS", runs(MARKS))
ray.shutdown()
""",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "RUNS 3" in proc.stdout, proc.stdout  # the first run and two retries


def test_a_nanny_that_closed_for_good_is_replaced():
    """dask/distributed#7312: a nanny whose worker outlives its kill closes for good; the
    embedded cluster starts it again (``embedded_cluster._keep_workers``)."""
    proc = run_script(
        """
import time
import raycompat as ray
from distributed.utils import sync
from raycompat._dask import driver
ray.init(num_cpus=2, dashboard_port=0)
cluster = driver.current_session().cluster
@ray.remote
def ok():
    return 1
for _ in range(2):
    name = next(n for n in cluster.workers if not str(n).startswith("raycompat-actor-"))
    sync(cluster.loop, cluster.workers[name].close)
    start = time.monotonic()
    while len(cluster.workers) < 2 or len(driver.client().scheduler_info()["workers"]) < 2:
        assert time.monotonic() - start < 30, "not replaced within 30 s"
        time.sleep(0.1)
    assert ray.get([ok.remote() for _ in range(4)], timeout=60) == [1] * 4
ray.shutdown()
print("OK")
"""
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().endswith("OK")


@pytest.fixture(scope="module")
def small_memory_cluster(tmp_path_factory):
    cluster = CLICluster(tmp_path_factory.mktemp("oom"), ["", ""], nanny=True,
                         worker_args=["--memory-limit", "300MiB"])
    yield cluster
    cluster.stop()


def test_oom_on_a_joined_cluster(small_memory_cluster, tmp_path):
    proc = _script(
        tmp_path,
        f"""
ray.init(address={small_memory_cluster.address!r})
try:
    ray.get(ray.remote(max_retries=0)(hog_body).remote(MARKS), timeout=120)
except ray.exceptions.OutOfMemoryError as e:
    print("OOM", str(e).splitlines()[0])
@ray.remote
def ok():
    return os.getpid()
assert len(ray.get([ok.remote() for _ in range(4)], timeout=60)) == 4
ray.shutdown()
""",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "OOM Task was killed due to the node running low on memory." in proc.stdout, proc.stdout
    assert len(os.listdir(tmp_path / "marks")) == 1
