"""Fault injection, short: ``benchmarks/faults.py`` with 60 tasks and 3 worker SIGKILLs,
and an actor with ``max_restarts=-1`` under 3 kills, on the embedded cluster and on a
joined ``dask scheduler`` + two nannied ``dask worker`` processes.

Ray: a task whose worker process dies is retried (``max_retries``, ``-1`` without limit),
so every ``get`` returns the right value and none is lost, though a task may run more
than once; an actor with ``max_restarts=-1`` is restarted each time its process dies,
and with ``max_task_retries=-1`` the calls in flight at the death are re-sent to the new
instance, so every call answers and the actor keeps serving (its state is its
constructor's again: the calls in flight count from 1; Ray does not guarantee their order
when retries occur).

The script runs in a fresh interpreter (its driver, and on the embedded cluster its
cluster, in a process of its own), so the kills never reach the session's cluster; it
kills only task workers of the cluster it is given (``WorkerState.pid``, never a nanny).
The full run (1,000 tasks, 20 kills, 10 actor kills, and the multi-host cluster) is
``python benchmarks/faults.py``; its figures are in ``benchmarks/README.md``. The last
test pins a bug of the embedded cluster that run found, fixed since (a task worker killed
again within Dask's lost-worker-timeout never came back); another pins one left as a
strict xfail (a worker's death uses up the ``max_retries`` of tasks only queued on it).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from conftest import run_script

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "faults.py"
TASKS, KILLS, ACTOR_KILLS, CALLS_BETWEEN = 60, 3, 3, 20


def _run(tmp_path: Path, *extra: str) -> dict:
    out = tmp_path / "faults.json"
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "DASK_SCHEDULER_ADDRESS")}
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--tasks", str(TASKS), "--kills", str(KILLS), "--actor-kills",
         str(ACTOR_KILLS), "--variants", "main", "--timeout", "100", "--out", str(out), *extra],
        capture_output=True, text=True, timeout=200, env=env,
    )
    print(proc.stdout)
    assert proc.returncode == 0, f"rc={proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
    (row,) = json.loads(out.read_text())["runs"]
    assert "error" not in row, row["error"]
    return row


def _check(row: dict) -> None:
    t = row["tasks"]
    print(f"{row['cluster']}: {t['tasks']} tasks, {t['kills_done']} kills: {t['extra_runs']} extra runs "
          f"({t['runs_cut_short']} cut short, {t['results_recomputed']} finished results recomputed), "
          f"{t['wall_s']} s")
    assert t["killer_errors"] == [] and t["kills_done"] == KILLS, t["kills"]
    assert t["errors"] == {} and t["lost"] == 0, t["error_examples"]
    assert t["results_correct"] and t["wrong_values"] == 0
    assert t["tasks_never_started"] == 0
    assert t["extra_runs"] >= 0 and t["runs_started"] == TASKS + t["extra_runs"]
    assert t["runs_finished"] >= TASKS
    assert t["task_workers_after"] == row["task_workers"], "the nannies did not bring every killed worker back"

    a = row["actor"]
    print(f"{row['cluster']}: actor under {a['actor_kills']} kills: {a['calls_ok']} calls answered, "
          f"{a['restarts_observed']} restarts, back within {a['recover_s']} s")
    assert a["call_errors"] == {}, a
    assert a["served_after_every_kill"] and a["first_call_failures_per_kill"] == [0] * ACTOR_KILLS
    # every call answered: 20 + whoami before each kill, 5 in flight + 1 after it, 20 at the end
    assert a["calls_ok"] == ACTOR_KILLS * (CALLS_BETWEEN + 1 + 5 + 1) + CALLS_BETWEEN
    assert a["restarts_observed"] == ACTOR_KILLS and a["incarnations"] == ACTOR_KILLS + 1
    assert a["reconstructed_flags"] == [True] * ACTOR_KILLS
    # the calls in flight at each kill were re-sent to the new instance and each ran once
    # there, from the constructor's state (Ray: "the task execution order is not guaranteed
    # when task retries occur", so their order is reported, not asserted)
    assert [sorted(v) for v in a["in_flight_values"]] == [[1, 2, 3, 4, 5]] * ACTOR_KILLS, a["in_flight_values"]
    assert a["task_workers_after"] == row["task_workers"]


def test_worker_kills_on_the_embedded_cluster(tmp_path):
    _check(_run(tmp_path, "--cluster", "embedded"))


def test_worker_kills_on_a_joined_cluster(plain_cli_cluster, tmp_path):
    row = _run(tmp_path, "--cluster", "joined", "--address", plain_cli_cluster.address)
    assert row["task_workers"] == 2
    _check(row)


def test_a_worker_killed_again_within_lost_worker_timeout_comes_back():
    """Ray: the raylet starts a new worker process whenever one dies, however often; the
    node's CPUs stay usable. Here: task worker "1" of the embedded cluster is SIGKILLed,
    comes back, and is SIGKILLed again 2 s after the first kill, and its restarts as they
    start until 4 s, so it is not registered ``lost-worker-timeout`` (Dask's 15 s, 3 s
    here) after its first death, as happens by chance under repeated kills (the full
    benchmark, 20 kills, hit it and ran its last tasks on one worker); its nanny, or
    raycompat, must bring it back."""
    proc = run_script(
        """
        import json, os, signal, time
        import psutil
        import raycompat as ray
        from raycompat._dask import driver

        ray.init(num_cpus=2, include_dashboard=False)
        client = driver.current_session().client

        def task_workers(dask_scheduler):
            return {str(ws.name): ws.pid for ws in dask_scheduler.workers.values()
                    if not str(ws.name).startswith("raycompat-actor-")}

        def kill(name):
            deadline = time.monotonic() + 30
            while name not in (w := client.run_on_scheduler(task_workers)):
                assert time.monotonic() < deadline, f"worker {name} never came back"
                time.sleep(0.05)
            os.kill(w[name], signal.SIGKILL)
            return w[name]

        def back(name, killed):
            return client.run_on_scheduler(task_workers).get(name) not in (None, killed)

        t0 = time.monotonic()
        kill("1")
        time.sleep(max(0.0, 2.0 - (time.monotonic() - t0)))
        # Killed again before the 3 s mark, and its restarts killed as they start until
        # 4 s: its name is not registered at 3 s (the nanny keeps restarting it).
        me = psutil.Process()
        known = {p.pid for p in me.children()}
        killed = kill("1")
        while time.monotonic() - t0 < 4.0:
            for p in me.children():
                if p.pid not in known:
                    known.add(p.pid)
                    try:
                        p.kill()
                    except psutil.Error:
                        pass
            time.sleep(0.005)
        deadline = time.monotonic() + 8  # a restart takes ~1 s; the reviver looks every 2 s
        while not back("1", killed) and time.monotonic() < deadline:
            time.sleep(0.2)
        workers = sorted(client.run_on_scheduler(task_workers))

        @ray.remote
        def one():
            return 1

        print("RESULT " + json.dumps({"workers": workers, "sum": sum(ray.get([one.remote() for _ in range(20)]))}),
              flush=True)
        ray.shutdown()
        """,
        timeout=120,
        # Dask's 15 s, shortened: the same race in less test time.
        env={"DASK_DISTRIBUTED__DEPLOY__LOST_WORKER_TIMEOUT": "3s"},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads([ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")][-1][7:])
    assert out["sum"] == 20
    assert out["workers"] == ["0", "1"], f"task workers registered 8 s after the last kill: {out['workers']}"


class ChargedWithoutRunning(AssertionError):
    """The one failure the xfail below expects (any other failure fails the test)."""


#: The start of a driver script that kills the embedded cluster's task workers by name.
KILLER = """
import json, os, signal, time, uuid
import raycompat as ray
from raycompat._dask import driver

ray.init(num_cpus=2, include_dashboard=False)
client = driver.current_session().client

def task_workers(dask_scheduler):
    return {str(ws.name): ws.pid for ws in dask_scheduler.workers.values()
            if not str(ws.name).startswith("raycompat-actor-")}
"""


@pytest.mark.xfail(strict=True, raises=ChargedWithoutRunning, reason=(
    "raycompat difference (README): the embedded cluster sets worker-saturation: inf, so a "
    "worker's Dask 'processing' set holds every task assigned to it, and Dask's remove_worker "
    "counts a death against each and fails those out of retries before any plugin hears of it; "
    "retries.MaxRetriesPlugin gives the count back to the tasks that were only queued, which "
    "cannot save a max_retries=0 task"))
def test_a_worker_death_charges_only_the_task_it_was_running(tmp_path):
    """Ray: ``max_retries`` counts the deaths of a worker *while it ran the task*; tasks
    still waiting for a worker are not affected by another worker's death. With
    ``max_retries=0``, killing one worker while 40 tasks are submitted fails at most the
    task it was running (``WorkerCrashedError``); every other task returns its value."""
    runs = tmp_path / "runs"
    runs.mkdir()
    proc = run_script(
        KILLER + textwrap.dedent(f"""
        @ray.remote(max_retries=0)
        def work(i):
            open(os.path.join({str(runs)!r}, str(i)), "w").close()
            time.sleep(0.2)
            return i

        refs = [work.remote(i) for i in range(40)]
        while len(os.listdir({str(runs)!r})) < 4:
            time.sleep(0.01)
        os.kill(client.run_on_scheduler(task_workers)["1"], signal.SIGKILL)
        failed = []
        for i, ref in enumerate(refs):
            try:
                assert ray.get(ref, timeout=60) == i
            except ray.exceptions.WorkerCrashedError:
                failed.append(i)
        started = sorted(int(n) for n in os.listdir({str(runs)!r}))
        print("RESULT " + json.dumps({{"failed": failed, "started": started}}), flush=True)
        ray.shutdown()
        """),
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads([ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")][-1][7:])
    print(f"failed with WorkerCrashedError: {out['failed']}")
    assert len(out["started"]) >= 4
    never_ran = sorted(set(out["failed"]) - set(out["started"]))
    if never_ran or len(out["failed"]) > 1:
        raise ChargedWithoutRunning(f"{len(out['failed'])} tasks failed, {len(never_ran)} of them never started: "
                                    f"{out['failed']}")


def test_a_worker_death_spends_the_retries_of_the_task_it_ran_only(tmp_path):
    """Ray: ``max_retries`` counts the deaths of a worker *while it ran the task*. With
    ``max_retries=1``, worker "1" then worker "0" killed while 60 tasks go through (the
    tasks queued on "1" move to "0" before it dies): a task fails
    (``WorkerCrashedError``) only if both deaths hit it while it ran; before ``retries.py``
    gave queued tasks their count back, every task queued on the workers at both kills
    failed (about 20) without having run twice."""
    runs = tmp_path / "runs"
    runs.mkdir()
    proc = run_script(
        KILLER + textwrap.dedent(f"""
        @ray.remote(max_retries=1)
        def work(i):
            open(os.path.join({str(runs)!r}, f"{{i}}-{{uuid.uuid4().hex}}"), "w").close()
            time.sleep(0.1)
            return i

        refs = [work.remote(i) for i in range(60)]
        for wanted, victim in ((4, "1"), (14, "0")):  # the second takes the first's queue
            while len(os.listdir({str(runs)!r})) < wanted:
                time.sleep(0.01)
            deadline = time.monotonic() + 30
            while len(w := client.run_on_scheduler(task_workers)) < 2:
                assert time.monotonic() < deadline
                time.sleep(0.05)
            os.kill(w[victim], signal.SIGKILL)
        failed = []
        for i, ref in enumerate(refs):
            try:
                assert ray.get(ref, timeout=60) == i
            except ray.exceptions.WorkerCrashedError:
                failed.append(i)
        counts = {{}}
        for name in os.listdir({str(runs)!r}):
            i = int(name.split("-")[0])
            counts[i] = counts.get(i, 0) + 1
        print("RESULT " + json.dumps({{"failed": failed, "runs": counts}}), flush=True)
        ray.shutdown()
        """),
        timeout=180,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads([ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")][-1][7:])
    # Each death of a one-thread worker hits the one task it runs: only a task running at
    # both deaths may fail (its markers may miss a run killed before the user's code).
    assert len(out["failed"]) <= 1, out
