"""Fixtures for Dask-only tests: a real ``dask scheduler`` + two ``dask worker``
processes on 127.0.0.1, started and stopped (by pid) by the tests."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent


def _dask_cmd():
    exe = BIN / "dask"
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "dask"]


class CLICluster:
    def __init__(self, tmp: Path, worker_resources: list[str], nanny: bool = False, worker_args=()):
        self.procs: list[subprocess.Popen] = []
        self.sched_file = tmp / "scheduler.json"
        self.logs = tmp
        self.procs.append(
            self._start(
                ["scheduler", "--host", "127.0.0.1", "--port", "0", "--dashboard-address", "127.0.0.1:0",
                 "--scheduler-file", str(self.sched_file)],
                "scheduler",
            )
        )
        deadline = time.monotonic() + 60
        while not self.sched_file.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        self.address = json.loads(self.sched_file.read_text())["address"]
        for i, res in enumerate(worker_resources):
            cmd = ["worker", self.address, "--host", "127.0.0.1", "--dashboard-address", "127.0.0.1:0",
                   "--nthreads", "1", "--nworkers", "1", "--nanny" if nanny else "--no-nanny", "--name", f"w{i}"]
            if res:
                cmd += ["--resources", res]
            cmd += list(worker_args)
            self.procs.append(self._start(cmd, f"worker{i}"))
        from distributed import Client

        with Client(self.address, timeout=60) as c:
            c.wait_for_workers(len(worker_resources), timeout=60)

    def _start(self, args, name):
        log = open(self.logs / f"{name}.log", "w")
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
        return subprocess.Popen(_dask_cmd() + args, stdout=log, stderr=subprocess.STDOUT, env=env,
                                start_new_session=True)

    def stop(self, timeout: float = 20):
        # Workers first, each gone before the next signal: a worker still closing when the
        # scheduler goes away can hang until the timeout.
        for p in reversed(self.procs):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
            try:
                p.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


@pytest.fixture(scope="module")
def cli_cluster(tmp_path_factory):
    cluster = CLICluster(tmp_path_factory.mktemp("cli"), ["GPU=1,foo=2", "foo=2"])
    yield cluster
    cluster.stop()


@pytest.fixture(scope="module")
def plain_cli_cluster(tmp_path_factory):
    """A ``dask scheduler`` and two plain ``dask worker`` processes (1 thread, nanny)."""
    cluster = CLICluster(tmp_path_factory.mktemp("plain"), ["", ""], nanny=True)
    yield cluster
    cluster.stop()


@pytest.fixture(params=["embedded", "joined"])
def example_env(request) -> dict:
    """Where an example runs: the cluster its ``ray.init()`` starts, or (``RAY_ADDRESS``)
    a cluster of ``dask scheduler`` + two ``dask worker`` processes it joins."""
    if request.param == "embedded":
        return {"RAY_ADDRESS": ""}
    return {"RAY_ADDRESS": request.getfixturevalue("plain_cli_cluster").address}
