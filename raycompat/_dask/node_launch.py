"""``raycompat start``: the Dask processes of a Ray node (Ray's ``ray start``).

``ray start --head`` starts the GCS, a raylet and the dashboard; ``ray start --address``
starts a raylet that joins. On Dask, the head is a ``dask scheduler`` (its dashboard is
Ray's dashboard, raycompat's scheduler plugins installed as soon as it listens), and a
node's CPUs are one nanny'd ``dask worker`` command with a worker process per CPU, one
thread each (as on the embedded cluster: one task at a time per process, as Ray's
workers). GPUs and custom resources are Dask worker resources, which are per worker
process: they all go to one more ``dask worker`` process, with a thread per GPU (at
least one), whose threads count among the node's CPUs; a ``--num-cpus 0`` node gets
no CPU workers (that one process, if any, still has its thread).

Every process runs the interpreter of this command, in a session of its own (it
outlives the command, and ``raycompat stop`` can signal its group), with its output in
``<state dir>/logs/``, and is recorded in ``local_clusters.py``. The scheduler and
worker processes get the embedded cluster's Dask defaults (``embedded_cluster.py``:
tasks not queued on the scheduler, workers that may start subprocesses, 100 ms
profiling) where the user's own Dask configuration does not set them.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time

import distributed
from distributed.system import MEMORY_LIMIT

from raycompat._dask import embedded_cluster, joining, local_clusters

#: Seconds to wait for the scheduler to listen and the workers to register.
READY_TIMEOUT = 120.0


def _dask_env() -> dict:
    env = dict(os.environ)
    for key, value in embedded_cluster._apply_defaults().items():
        if key == "distributed.scheduler.allowed-failures":
            continue  # per-task max_retries: retries.install_remote keeps the operator's limit
        name = "DASK_" + key.upper().replace(".", "__").replace("-", "_")
        env.setdefault(name, "inf" if value == float("inf") else str(value))
    return env


def _spawn(args: list, log_name: str, temp_dir=None) -> subprocess.Popen:
    log_path = os.path.join(local_clusters.log_dir(temp_dir), f"{log_name}-{time.time_ns()}.log")
    with open(log_path, "w") as log:
        proc = subprocess.Popen([sys.executable, "-m", *args], stdin=subprocess.DEVNULL, stdout=log,
                                stderr=subprocess.STDOUT, env=_dask_env(), start_new_session=True)
    proc.log_path = log_path
    return proc


def _log_tail(proc, lines: int = 20) -> str:
    try:
        with open(proc.log_path) as f:
            return "".join(f.readlines()[-lines:])
    except OSError:
        return ""


class StartError(RuntimeError):
    """A process of the node did not come up (its log's last lines in the message)."""


def start_scheduler(host: str, port: int, dashboard_address, temp_dir=None) -> tuple:
    """Start the head's scheduler; returns ``(process, address)`` once it listens."""
    sched_file = os.path.join(local_clusters.state_dir(temp_dir), f"scheduler-{time.time_ns()}.json")
    args = ["distributed.cli.dask_scheduler", "--host", host, "--port", str(port), "--scheduler-file", sched_file]
    args += ["--dashboard-address", dashboard_address] if dashboard_address else ["--no-dashboard"]
    proc = _spawn(args, f"scheduler-{port}", temp_dir)
    deadline = time.monotonic() + READY_TIMEOUT
    while not os.path.exists(sched_file):
        if proc.poll() is not None:
            raise StartError(f"The Dask scheduler exited (code {proc.returncode}):\n{_log_tail(proc)}")
        if time.monotonic() > deadline:
            raise StartError(f"The Dask scheduler did not start within {READY_TIMEOUT:g} s:\n{_log_tail(proc)}")
        time.sleep(0.05)
    for _ in range(100):  # written, maybe not yet flushed
        try:
            with open(sched_file) as f:
                address = json.load(f)["address"]
            break
        except (OSError, ValueError, KeyError):
            time.sleep(0.05)
    os.remove(sched_file)
    local_clusters.record(proc.pid, "scheduler", address, temp_dir, log=proc.log_path)
    return proc, address


def worker_layout(num_cpus: int, num_gpus: float, resources: dict) -> list:
    """``[(processes, threads each, resources)]`` of a node's ``dask worker`` commands."""
    extra = {k: float(v) for k, v in (resources or {}).items() if v}
    if num_gpus:
        extra["GPU"] = float(num_gpus)
    layout = []
    cpus = num_cpus
    if extra:
        threads = max(1, min(num_cpus, math.ceil(num_gpus or 1)))
        layout.append((1, threads, extra))
        cpus -= threads
    if cpus > 0:
        layout.append((cpus, 1, {}))
    return layout


def start_workers(address: str, host: str, num_cpus: int, num_gpus: float, resources: dict,
                  memory_limit=None, temp_dir=None) -> list:
    """Start a node's ``dask worker`` commands (``worker_layout``); returns the processes."""
    layout = worker_layout(num_cpus, num_gpus, resources)
    n_procs = sum(n for n, _, _ in layout) or 1
    per_process = int(memory_limit or MEMORY_LIMIT) // n_procs
    procs = []
    for n, threads, extra in layout:
        args = ["distributed.cli.dask_worker", address, "--host", host, "--nworkers", str(n),
                "--nthreads", str(threads), "--nanny", "--no-dashboard", "--memory-limit", str(per_process)]
        if extra:
            args += ["--resources", ",".join(f"{k}={v:g}" for k, v in extra.items())]
        proc = _spawn(args, "worker", temp_dir)
        local_clusters.record(proc.pid, "worker", address, temp_dir, log=proc.log_path, processes=n)
        procs.append((proc, n))
    return procs


def wait_for_workers(address: str, procs: list, before: int, timeout: float = READY_TIMEOUT) -> None:
    """Wait until the scheduler has ``before`` + the new worker processes; raise if a
    ``dask worker`` command exits first."""
    want = before + sum(n for _, n in procs)
    with distributed.Client(address, timeout=timeout, set_as_default=False) as client:
        deadline = time.monotonic() + timeout
        while len(client.scheduler_info(n_workers=-1)["workers"]) < want:
            for proc, _ in procs:
                if proc.poll() is not None:
                    raise StartError(f"A Dask worker exited (code {proc.returncode}):\n{_log_tail(proc)}")
            if time.monotonic() > deadline:
                raise StartError(f"The Dask workers did not register within {timeout:g} s")
            time.sleep(0.1)


def prepare_scheduler(address: str) -> int:
    """Install raycompat's scheduler plugins at once (``joining.install_scheduler_plugins``,
    which the first driver would otherwise do), so the state API sees every task and
    actor from the start; returns how many workers the scheduler has."""
    with distributed.Client(address, timeout=READY_TIMEOUT, set_as_default=False) as client:
        joining.install_scheduler_plugins(client)
        return len(client.scheduler_info(n_workers=-1)["workers"])


def count_workers(address: str) -> int:
    with distributed.Client(address, timeout=READY_TIMEOUT, set_as_default=False) as client:
        return len(client.scheduler_info(n_workers=-1)["workers"])

