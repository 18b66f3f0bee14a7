"""``raycompat start`` / ``status`` / ``list`` / ``summary`` / ``stop``, as Ray's CLI.

A head (scheduler + 2 CPUs and a custom resource) and a second node on another loopback
address (127.0.0.2, so another host: another Ray node) are started on free ports, with
their record in a temporary ``RAY_TMPDIR`` (never the machine's: a cluster recorded
there is what every ``ray.init()`` on the machine would join). Every process they
started is stopped by pid at the end, whatever happened.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import urllib.request

import pytest

from conftest import wait_until
from raycompat._dask import local_clusters

CLI = [sys.executable, "-m", "raycompat.scripts.scripts"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(tmp) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "DASK_SCHEDULER_ADDRESS")}
    env["RAY_TMPDIR"] = str(tmp)
    env["PYTHONPATH"] = os.pathsep.join(sys.path)
    return env


def _cli(env, *args, timeout=120) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *args], env=env, capture_output=True, text=True, timeout=timeout)


def _running_in_group(pgid: int) -> list:
    """The pids of group ``pgid`` that still run (zombies wait for init, and are gone)."""
    running = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == pgid and fields[0] != "Z":
                running.append(int(entry))
    return running


def _kill_leftovers(temp_dir, pids) -> None:
    """Whatever a test left running: the recorded processes (and their groups), by pid."""
    local_clusters.stop(local_clusters.records(temp_dir), grace=5, temp_dir=temp_dir)
    for pid in pids:
        try:
            os.killpg(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


class Cluster:
    def __init__(self, tmp):
        self.tmp = str(tmp)
        self.env = _env(tmp)
        self.port, self.dashboard_port = _free_port(), _free_port()
        self.head = _cli(self.env, "start", "--head", "--port", str(self.port), "--dashboard-port",
                         str(self.dashboard_port), "--num-cpus", "2", "--resources", '{"foo": 2}')
        self.address = f"tcp://127.0.0.1:{self.port}"
        self.node = None
        if self.head.returncode == 0:
            self.node = _cli(self.env, "start", f"--address={self.address}", "--num-cpus", "1",
                             "--node-ip-address", "127.0.0.2")
        self.pids = [r["pid"] for r in local_clusters.records(self.tmp)]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("raytmp")
    c = None
    try:
        c = Cluster(tmp)
        assert c.head.returncode == 0, c.head.stdout + c.head.stderr
        assert c.node.returncode == 0, c.node.stdout + c.node.stderr
        yield c
    finally:
        _kill_leftovers(str(tmp), c.pids if c is not None else [])


DRIVER = """
import os, sys, time
import raycompat as ray

ray.init()  # no address: the cluster `raycompat start` recorded (RAY_TMPDIR)

@ray.remote
class Keeper:
    def ping(self):
        return "pong"

@ray.remote
def hold(release):
    while not os.path.exists(release):
        time.sleep(0.05)

keeper = Keeper.options(name="keeper").remote()
assert ray.get(keeper.ping.remote()) == "pong"
ref = hold.remote(sys.argv[1])
print("ADDRESS", ray.get_runtime_context().gcs_address, flush=True)
ray.get(ref, timeout=120)
"""


def test_start_prints_the_next_steps_and_serves_the_dashboard(cluster):
    out = cluster.head.stdout
    assert "Ray runtime started." in out
    assert f"raycompat start --address='{cluster.address}'" in out
    assert f"ray.init(address='{cluster.address}')" in out and "import raycompat as ray" in out
    assert "raycompat stop" in out and "raycompat status" in out
    url = f"http://127.0.0.1:{cluster.dashboard_port}/status"
    assert url in out
    with urllib.request.urlopen(url, timeout=30) as page:
        assert page.status == 200
    assert "Ray runtime started." in cluster.node.stdout and "raycompat stop" in cluster.node.stdout
    roles = sorted(r["role"] for r in local_clusters.records(cluster.tmp))
    # the scheduler, the head's CPU workers and its foo worker, the second node's workers
    assert roles == ["scheduler", "worker", "worker", "worker"]
    assert local_clusters.current_address(cluster.tmp) == cluster.address


def test_status_list_and_summary_show_the_cluster_and_a_driver(cluster, tmp_path):
    release = tmp_path / "release"
    with open(tmp_path / "driver.py", "w") as f:
        f.write(textwrap.dedent(DRIVER))
    driver = subprocess.Popen([sys.executable, str(tmp_path / "driver.py"), str(release)], env=cluster.env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        lines = []
        for line in driver.stdout:  # after init's log line
            lines.append(line)
            if line.startswith("ADDRESS"):
                break
        assert lines[-1].strip() == f"ADDRESS {cluster.address}", "".join(lines)

        def running():
            return "RUNNING" in _cli(cluster.env, "list", "tasks", "--filter", "name=hold").stdout

        assert wait_until(running, 60)
        status = _cli(cluster.env, "status")
        assert status.returncode == 0, status.stderr
        text = status.stdout
        assert "Node status" in text and "Total Usage:" in text and "Pending Demands:" in text
        assert text.count(" 1 node_") == 2
        assert "1.0/3.0 CPU" in text and "/2.0 foo" in text  # hold holds its CPU
        assert " 1 hold" in text.split("Running:")[1] and " 1 Keeper" in text.split("Alive:")[1]

        actors = _cli(cluster.env, "list", "actors")
        assert actors.returncode == 0, actors.stderr
        line = next(ln for ln in actors.stdout.splitlines() if "Keeper" in ln)
        assert "ALIVE" in line and "keeper" in line and "ACTOR_ID" in actors.stdout

        nodes = _cli(cluster.env, "list", "nodes")
        assert "Total: 2" in nodes.stdout and "127.0.0.1" in nodes.stdout and "127.0.0.2" in nodes.stdout
        assert "CPU: 2.0" in nodes.stdout and "CPU: 1.0" in nodes.stdout and "foo: 2.0" in nodes.stdout

        summary = _cli(cluster.env, "summary", "tasks", "--address", cluster.address)
        assert summary.returncode == 0, summary.stderr
        for word in ("hold", "RUNNING: 1", "Keeper.ping", "ACTOR_TASK", "keeper:Keeper.__init__",
                     "total_tasks: 1"):
            assert word in summary.stdout, summary.stdout

        detail = _cli(cluster.env, "list", "actors", "--detail", "--filter", "name=keeper")
        assert "death_cause: null" in detail.stdout and "class_name: Keeper" in detail.stdout
        bad = _cli(cluster.env, "list", "actors", "--filter", "name")
        assert bad.returncode != 0 and "Cannot find the predicate" in bad.stderr
    finally:
        release.touch()
        try:
            driver.wait(timeout=60)
        finally:
            driver.kill()
            driver.wait()


def test_stop_stops_every_started_process_by_pid(cluster, monkeypatch):
    from raycompat._dask.session import _resolve_address

    for name in ("RAY_ADDRESS", "DASK_SCHEDULER_ADDRESS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("RAY_TMPDIR", cluster.tmp)
    # ray.init() and ray.init("auto") join the recorded cluster while it runs, as Ray's
    # find the address `ray start` wrote.
    assert _resolve_address(None) == _resolve_address("auto") == cluster.address
    pids = [r["pid"] for r in local_clusters.records(cluster.tmp)]
    assert len(pids) == 4 and all(local_clusters.alive(r) for r in local_clusters.records(cluster.tmp))
    stop = _cli(cluster.env, "stop")
    assert stop.returncode == 0 and "Stopped all 4 Ray processes." in stop.stdout, stop.stdout + stop.stderr
    for pid in pids:  # the process and its group (a nanny's worker processes)
        assert _running_in_group(pid) == []
    assert local_clusters.records(cluster.tmp) == [] and local_clusters.current_address(cluster.tmp) is None
    status = _cli(cluster.env, "status")
    assert status.returncode != 0 and "Could not find any running Ray instance" in status.stderr
    assert "Did not find any active Ray processes." in _cli(cluster.env, "stop").stdout
    assert _resolve_address(None) is None  # a new local cluster, as Ray's init with none running
    with pytest.raises(ConnectionError, match="Could not find any running Ray instance"):
        _resolve_address("auto")


def test_start_block_stays_until_signalled_then_stops_its_processes(tmp_path):
    env = _env(tmp_path)
    proc = subprocess.Popen([*CLI, "start", "--head", "--block", "--port", str(_free_port()),
                             "--include-dashboard", "false", "--num-cpus", "1"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    pids = []
    try:
        lines = []
        for line in proc.stdout:
            lines.append(line)
            if "--block" in line:
                break
        assert any("Ray runtime started." in ln for ln in lines), "".join(lines)
        pids = [r["pid"] for r in local_clusters.records(str(tmp_path))]
        assert len(pids) == 2 and proc.poll() is None
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
        assert all(_running_in_group(p) == [] for p in pids)
        assert local_clusters.records(str(tmp_path)) == []
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        _kill_leftovers(str(tmp_path), pids)


def test_start_refuses_what_ray_start_refuses(tmp_path, capsys):
    from raycompat.scripts.scripts import main

    temp = ["--temp-dir", str(tmp_path)]
    assert main(["start", *temp]) != 0
    assert "`--address` is a required flag" in capsys.readouterr().err
    assert main(["start", "--address", "127.0.0.1:1", "--port", "5", *temp]) != 0
    assert "--port should only be specified when starting head node" in capsys.readouterr().err
    assert main(["start", "--head", "--resources", "{nope", *temp]) != 0
    assert "is not a valid JSON string" in capsys.readouterr().err
    assert main(["start", "--head", "--resources", '{"CPU": 2}', *temp]) != 0
    assert "--num-cpus" in capsys.readouterr().err
    assert local_clusters.records(str(tmp_path)) == []


def test_stop_leaves_a_reused_pid_alone_and_a_stale_record_is_no_cluster(tmp_path):
    """A recorded pid the system gave to another process (its start time differs) is not
    signalled; an address whose processes are all gone is not a running cluster."""
    temp = str(tmp_path)
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True)
    try:
        rec = local_clusters.record(other.pid, "worker", "tcp://127.0.0.1:1", temp)
        assert local_clusters.alive(rec)
        path = tmp_path / f"raycompat-{os.getuid()}" / "started" / f"{other.pid}.json"
        path.write_text(path.read_text().replace(f'"ticks": {rec["ticks"]}', f'"ticks": {rec["ticks"] + 1}'))
        local_clusters.write_address("tcp://127.0.0.1:1", temp)
        assert local_clusters.current_address(temp) is None
        assert local_clusters.stop(local_clusters.records(temp), grace=1, temp_dir=temp) == (0, 0)
        assert other.poll() is None  # not ours any more: untouched
        assert local_clusters.records(temp) == []
    finally:
        other.kill()
        other.wait()
