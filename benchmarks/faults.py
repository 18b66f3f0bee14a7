"""Fault injection at scale: tasks and an actor while their worker processes are SIGKILLed.

    python benchmarks/faults.py                         # embedded, joined (and netns as root)
    python benchmarks/faults.py --cluster embedded --quick
    python benchmarks/faults.py --cluster joined --address tcp://HOST:PORT  # a cluster you run

Not a timed test: a script that reports what happened. For each cluster it runs, in a
fresh driver process:

1. **Tasks** (``--tasks``, 1,000): each sleeps 10-50 ms and returns ``f(i)``; every run
   of task ``i`` creates a marker file ``<i>.<pid>.<ns>`` when it starts and another when
   it returns, in a scratch directory every process sees (the netns hosts share the
   filesystem). A killer thread in the driver SIGKILLs a random *task worker* process
   (``WorkerState.pid`` from the scheduler; never a nanny, never an actor host) ``--kills``
   times (20), the k-th once ``k / (kills + 1)`` of the tasks have started, so every kill
   lands while tasks remain; the nannies start the killed workers again. Then every ref
   is fetched: *correct* means every value is ``f(i)``, *lost* counts refs that raised or
   never finished, and *extra runs* = runs started beyond the first of each task that
   started (split into runs cut short by a kill, started - finished, and results
   recomputed after the worker holding them died, finished beyond the first of each).
   The tasks use ``max_retries=-1``: with 20 kills a task may well be on a killed worker
   more than Ray's default 3 times (see the ``default-retries`` variant).
2. **An actor** with ``max_restarts=-1, max_task_retries=-1``: calls in a loop; ``--actor-kills``
   times (10) its process (its pid from a method returning ``os.getpid()``) is SIGKILLed
   while a slow call and four more are in flight. It must keep serving: the calls in
   flight are re-sent and answer, the next call answers (from a new process:
   *restarts observed*), and the constructor's marker files count the incarnations.

Variants (``--variants``, default all of them):

- ``main``: the two above;
- ``default-retries``: the tasks with Ray's default ``max_retries`` (3): how many fail with
  ``WorkerCrashedError``;
- ``actor-no-retry``: the actor with ``max_task_retries=0``: calls in flight at a kill may
  raise ``ActorUnavailableError`` (counted); the caller retries until the actor answers.

Clusters (``--cluster``, comma-separated):

- ``embedded``: ``ray.init(num_cpus=2)``, raycompat's LocalCluster (nannied workers; actors
  in actor hosts of their own);
- ``joined``: a ``dask scheduler`` and two ``dask worker --nanny --nthreads 1`` processes on
  127.0.0.1 started here (or ``--address``: a cluster you run, whose task workers get killed);
- ``netns``: a scheduler host and ``--netns-hosts`` worker hosts (``dask worker --nanny``),
  each a Linux network namespace (``tests/dask_only/netns_cluster.py``); the driver on a
  host of its own. Needs root.

Prints a table; writes the raw numbers to ``benchmarks/results/faults.json`` (``--out``).
Every process this script starts is stopped by its pid (or its own process group).
"""

from __future__ import annotations

import argparse
import collections
import importlib.util
import json
import os
import platform
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
TESTS = HERE.parent / "tests"
ACTOR_HOST_PREFIX = "raycompat-actor-"  # raycompat/_dask/actor_host.py NAME_PREFIX
ALL_VARIANTS = ("main", "default-retries", "actor-no-retry")


def f(i: int) -> int:
    """What task ``i`` returns."""
    return (i * 2654435761 + 12345) % 2**32


# ======================================================================== the driver (child)


def _task_workers(dask_scheduler) -> dict:
    """On the scheduler: address -> (name, pid) of each task worker (no actor hosts)."""
    return {a: (str(ws.name), ws.pid) for a, ws in dask_scheduler.workers.items()
            if not str(ws.name).startswith(ACTOR_HOST_PREFIX)}


def _markers(directory: Path) -> collections.Counter:
    """task index -> number of marker files."""
    out: collections.Counter = collections.Counter()
    for name in os.listdir(directory):
        out[int(name.split(".", 1)[0])] += 1
    return out


def _touch(path: str) -> None:
    os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))


class Killer(threading.Thread):
    """SIGKILLs a random task worker each time the tasks started pass the next threshold."""

    def __init__(self, kc, runs: Path, thresholds: list, rng: random.Random):
        super().__init__(daemon=True)
        self.kc, self.runs, self.thresholds, self.rng = kc, runs, list(thresholds), rng
        self.done = threading.Event()
        self.kills: list = []
        self.errors: list = []

    def run(self):
        try:
            for threshold in self.thresholds:
                while not self.done.is_set() and len(_markers(self.runs)) < threshold:
                    time.sleep(0.02)
                if self.done.is_set():
                    return
                self.kills.append(self._kill_one(threshold))
        except Exception as e:  # reported, never silently swallowed
            self.errors.append(repr(e))

    def _kill_one(self, threshold: int) -> dict:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            workers = self.kc.run_on_scheduler(_task_workers)
            if workers:
                addr = self.rng.choice(sorted(workers))
                name, pid = workers[addr]
                if pid == os.getpid():
                    raise RuntimeError("the scheduler reported the driver's own pid as a worker")
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:  # died already, not yet removed: look again
                    time.sleep(0.05)
                    continue
                return {"t": time.monotonic(), "started": threshold, "pid": pid, "worker": name,
                        "live_task_workers": len(workers)}
            time.sleep(0.05)  # every task worker is restarting
        raise RuntimeError("no task worker to kill for 120 s")


def _wait_workers(kc, n: int, timeout: float = 60) -> dict:
    """After a phase: how long until the cluster has its ``n`` task workers again (None:
    not within ``timeout``; the run goes on with what it has, and says so)."""
    t = time.monotonic()
    while (have := len(kc.run_on_scheduler(_task_workers))) < n:
        if time.monotonic() - t > timeout:
            return {"workers_back_after_s": None, "task_workers_after": have}
        time.sleep(0.1)
    return {"workers_back_after_s": round(time.monotonic() - t, 2), "task_workers_after": have}


def task_phase(ray, kc, n_workers, n, kills, max_retries, scratch: Path, seed: int, timeout: float) -> dict:
    runs, done = scratch / "runs", scratch / "done"
    runs.mkdir()
    done.mkdir()

    def work(i, runs, done):
        import os
        import time

        _touch(f"{runs}/{i}.{os.getpid()}.{time.time_ns()}")
        time.sleep(0.010 + (i * 7919 % 41) / 1000)  # 10-50 ms
        _touch(f"{done}/{i}.{os.getpid()}.{time.time_ns()}")
        return f(i)

    opts = {} if max_retries is None else {"max_retries": max_retries}
    remote_work = ray.remote(**opts)(work) if opts else ray.remote(work)
    thresholds = [max(1, (k + 1) * n // (kills + 1)) for k in range(kills)]
    killer = Killer(kc, runs, thresholds, random.Random(seed))
    t0 = time.monotonic()
    refs = [remote_work.remote(i, str(runs), str(done)) for i in range(n)]
    killer.start()
    ready, pending = ray.wait(refs, num_returns=n, timeout=timeout)
    wall = time.monotonic() - t0
    killer.done.set()
    killer.join(timeout=150)
    values, errors, lost_examples = {}, collections.Counter(), []
    t_collect = time.monotonic()
    pending_set = set(pending)
    for i, ref in enumerate(refs):
        if ref in pending_set:
            errors["unfinished"] += 1
            continue
        try:
            values[i] = ray.get(ref, timeout=60)
        except Exception as e:  # noqa: BLE001 - counted by type
            errors[type(e).__name__] += 1
            if len(lost_examples) < 3:
                lost_examples.append(f"task {i}: {type(e).__name__}: {str(e)[:300]}")
    collect_s = time.monotonic() - t_collect  # one ray.get per ref, after all are done
    started, finished = _markers(runs), _markers(done)
    n_started, n_finished = sum(started.values()), sum(finished.values())
    back = _wait_workers(kc, n_workers)
    return {
        "tasks": n, "max_retries": max_retries if max_retries is not None else "default (3)",
        "kills_planned": kills, "kills_done": len(killer.kills), "killer_errors": killer.errors,
        "kills": [dict(k, t=round(k["t"] - t0, 3)) for k in killer.kills],
        "results_correct": len(values) == n and all(values[i] == f(i) for i in range(n)),
        "wrong_values": sum(1 for i, v in values.items() if v != f(i)),
        "lost": n - len(values), "errors": dict(errors), "error_examples": lost_examples,
        "runs_started": n_started, "runs_finished": n_finished,
        "extra_runs": n_started - len(started), "runs_cut_short": n_started - n_finished,
        "results_recomputed": n_finished - len(finished),  # finished more than once
        "tasks_never_started": n - len(started), "max_runs_of_one_task": max(started.values(), default=0),
        "wall_s": round(wall, 2), "collect_s": round(collect_s, 2), **back,
    }


class Tally:
    """The actor: counts its calls; each incarnation leaves a marker file."""

    def __init__(self, marks):
        import os
        import time

        _touch(f"{marks}/{os.getpid()}.{time.time_ns()}")
        self.n = 0

    def incr(self):
        self.n += 1
        return self.n

    def slow(self, t):
        import time

        time.sleep(t)
        self.n += 1
        return self.n

    def whoami(self):
        import os

        import raycompat as ray

        return os.getpid(), ray.get_runtime_context().was_current_actor_reconstructed


def actor_phase(ray, kc, n_workers, kills, max_task_retries, scratch: Path, calls_between: int = 20) -> dict:
    marks = scratch / "incarnations"
    marks.mkdir()
    cls = ray.remote(max_restarts=-1, max_task_retries=max_task_retries)(Tally)
    t0 = time.monotonic()
    a = cls.remote(str(marks))
    pid, _ = ray.get(a.whoami.remote(), timeout=120)
    pids, calls_ok, errors = [pid], 0, collections.Counter()
    recover_s, in_flight_values, reconstructed_flags, first_call_failures = [], [], [], []
    for _k in range(kills):
        for _ in range(calls_between):
            ray.get(a.incr.remote(), timeout=120)
            calls_ok += 1
        pid, _ = ray.get(a.whoami.remote(), timeout=120)
        calls_ok += 1
        in_flight = [a.slow.remote(0.3)] + [a.incr.remote() for _ in range(4)]
        time.sleep(0.1)  # the slow call is running
        os.kill(pid, signal.SIGKILL)
        t_kill = time.monotonic()
        got = []
        for r in in_flight:
            try:
                got.append(ray.get(r, timeout=120))
                calls_ok += 1
            except Exception as e:  # noqa: BLE001 - counted by type
                errors[type(e).__name__] += 1
        in_flight_values.append(got)
        # It keeps serving: the next call answers (max_task_retries=0: retried while the
        # actor is unavailable, for up to two minutes).
        failures = 0
        while True:
            try:
                new_pid, reconstructed = ray.get(a.whoami.remote(), timeout=120)
                calls_ok += 1
                break
            except ray.exceptions.ActorUnavailableError as e:
                errors[type(e).__name__] += 1
                failures += 1
                if time.monotonic() - t_kill > 120:
                    raise RuntimeError("the actor did not answer within 120 s of a kill") from e
                time.sleep(0.05)
        first_call_failures.append(failures)
        recover_s.append(round(time.monotonic() - t_kill, 3))
        pids.append(new_pid)
        reconstructed_flags.append(reconstructed)
    # And after the last kill, a last burst.
    for _ in range(calls_between):
        ray.get(a.incr.remote(), timeout=120)
        calls_ok += 1
    wall = time.monotonic() - t0
    ray.kill(a)
    back = _wait_workers(kc, n_workers)
    incarnations = len(os.listdir(marks))
    return {
        "max_restarts": -1, "max_task_retries": max_task_retries, "actor_kills": kills,
        "calls_ok": calls_ok, "call_errors": dict(errors),
        "served_after_every_kill": len(recover_s) == kills,
        "restarts_observed": sum(1 for x, y in zip(pids, pids[1:]) if x != y),
        "incarnations": incarnations, "reconstructed_flags": reconstructed_flags,
        "first_call_failures_per_kill": first_call_failures,
        "in_flight_values": in_flight_values,
        # Re-sent calls (max_task_retries=-1): each ran once on the new incarnation, from its
        # constructor's state; in submission order or not (Ray does not guarantee the order
        # when retries occur).
        "in_flight_each_once_on_new": all(sorted(v) == list(range(1, len(v) + 1)) for v in in_flight_values if v),
        "in_flight_in_order": all(v == sorted(v) for v in in_flight_values),
        "recover_s": recover_s, "recover_s_max": max(recover_s, default=None),
        "recover_s_median": sorted(recover_s)[len(recover_s) // 2] if recover_s else None,
        "wall_s": round(wall, 2), **back,
    }


def child(args) -> dict:
    import distributed

    import raycompat as ray
    from raycompat._dask import driver as _driver

    # A watchdog: a driver stuck past its time ends, so the parent reports it.
    threading.Timer(args.timeout, lambda: os._exit(3)).start()
    if args.address:
        ray.init(address=args.address, logging_level="ERROR")
    else:
        ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR")
    kc = distributed.Client(_driver.client().scheduler.address, set_as_default=False, timeout=60)
    n_workers = len(kc.run_on_scheduler(_task_workers))
    scratch = Path(args.scratch)
    import dask

    out = {"cluster": args.child, "task_workers": n_workers,
           "lost_worker_timeout": dask.config.get("distributed.deploy.lost-worker-timeout"),
           "hosts": sorted({a.rsplit(":", 1)[0] for a in kc.run_on_scheduler(_task_workers)})}
    variants = args.variants.split(",")
    phase_timeout = max(120.0, args.tasks * 0.5)
    if "main" in variants:
        (scratch / "tasks").mkdir()
        out["tasks"] = task_phase(ray, kc, n_workers, args.tasks, args.kills, -1, scratch / "tasks",
                                  args.seed, phase_timeout)
        print("PHASE tasks " + json.dumps(out["tasks"]), file=sys.stderr, flush=True)
    if "default-retries" in variants:
        (scratch / "tasks3").mkdir()
        out["tasks_default_retries"] = task_phase(ray, kc, n_workers, args.tasks, args.kills, None,
                                                  scratch / "tasks3", args.seed + 1, phase_timeout)
        print("PHASE tasks3 " + json.dumps(out["tasks_default_retries"]), file=sys.stderr, flush=True)
    if "main" in variants:
        (scratch / "actor").mkdir()
        out["actor"] = actor_phase(ray, kc, n_workers, args.actor_kills, -1, scratch / "actor")
        print("PHASE actor " + json.dumps(out["actor"]), file=sys.stderr, flush=True)
    if "actor-no-retry" in variants:
        (scratch / "actor0").mkdir()
        out["actor_no_retry"] = actor_phase(ray, kc, n_workers, args.actor_kills, 0, scratch / "actor0")
        print("PHASE actor0 " + json.dumps(out["actor_no_retry"]), file=sys.stderr, flush=True)
    kc.close()
    ray.shutdown()
    return out


# ======================================================================== clusters (parent)


def _load(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _run_child(argv: list, env: dict, log: Path, timeout: float) -> dict:
    with open(log, "w") as err:
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=err, text=True, env=env,
                                start_new_session=True)
        try:
            stdout, _ = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # the driver and what it started (its own group)
            stdout, _ = proc.communicate()
    line = next((ln for ln in stdout.splitlines() if ln.startswith("FAULTS ")), None)
    if line is None:
        return {"error": f"driver rc={proc.returncode}; stderr tail:\n" + log.read_text(errors="replace")[-3000:]}
    return json.loads(line[len("FAULTS "):])


def _child_args(args, name: str, scratch: Path, address: str = "") -> list:
    argv = [str(Path(__file__).resolve()), "--child", name, "--tasks", str(args.tasks), "--kills", str(args.kills),
            "--actor-kills", str(args.actor_kills), "--variants", args.variants, "--seed", str(args.seed),
            "--scratch", str(scratch), "--timeout", str(args.timeout)]
    return argv + (["--address", address] if address else [])


def run_embedded(args, scratch: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "DASK_SCHEDULER_ADDRESS")}
    return _run_child([sys.executable] + _child_args(args, "embedded", scratch), env, scratch / "driver.log",
                      args.timeout + 60)


def run_joined(args, scratch: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "DASK_SCHEDULER_ADDRESS")}
    if args.address:
        return _run_child([sys.executable] + _child_args(args, "joined", scratch, args.address), env,
                          scratch / "driver.log", args.timeout + 60)
    cli = _load("raycompat_faults_cli", TESTS / "dask_only" / "conftest.py")
    logs = scratch / "cluster"
    logs.mkdir()
    cluster = cli.CLICluster(logs, ["", ""], nanny=True)
    try:
        return _run_child([sys.executable] + _child_args(args, "joined", scratch, cluster.address), env,
                          scratch / "driver.log", args.timeout + 60)
    finally:
        cluster.stop()


def run_netns(args, scratch: Path) -> dict:
    sys.path.insert(0, str(TESTS))  # netns_cluster lives in tests/dask_only
    from dask_only import netns_cluster as nc

    class NannyNetnsCluster(nc.NetnsCluster):
        """The harness's hosts, each worker under a nanny (a killed worker comes back)."""

        def _start_processes(self) -> None:
            s = self.scheduler
            sched = self._popen(s, nc._dask_cmd() + ["scheduler", "--host", s.ip, "--port", str(nc.SCHEDULER_PORT),
                                                     "--dashboard-address", f"{s.ip}:0"], "scheduler",
                                env={"DASK_DISTRIBUTED__SCHEDULER__WORKER_TTL": self.worker_ttl})
            self._wait_for_log(sched, "scheduler", "Scheduler at:", 90)
            started = [(w, self._popen(w, nc._dask_cmd() + ["worker", self.address, "--host", w.ip, "--nthreads", "1",
                                                            "--nworkers", "1", "--nanny", "--no-dashboard",
                                                            "--name", w.role], w.role))
                       for w in self.workers]
            for w, proc in started:
                self._wait_for_log(proc, w.role, "Registered to:", 90)

    reason = nc.netns_unavailable_reason()
    if reason:
        return {"error": f"skipped: {reason}"}
    logs = scratch / "cluster"
    logs.mkdir()
    try:
        cluster = NannyNetnsCluster(logs, n_workers=args.netns_hosts)
    except nc.NetnsUnavailable as e:
        return {"error": f"skipped: {e}"}
    try:
        argv = ["ip", "netns", "exec", cluster.driver_host.netns, sys.executable] + _child_args(
            args, "netns", scratch, cluster.address)
        return _run_child(argv, dict(cluster.base_env), scratch / "driver.log", args.timeout + 60)
    finally:
        cluster.stop()


RUNNERS = {"embedded": run_embedded, "joined": run_joined, "netns": run_netns}


# ======================================================================== the table


def _yes(b) -> str:
    return "yes" if b else "NO"


def print_tables(rows: list) -> None:
    print(f"\n{'cluster':9s} {'tasks':>6s} {'kills':>6s} {'correct':>8s} {'lost':>5s} {'extra runs':>11s} "
          f"{'wall s':>7s} {'workers after':>14s} | {'actor kills':>11s} {'calls ok':>9s} {'restarts':>9s} "
          f"{'recover s (med/max)':>20s}")
    for r in rows:
        if "error" in r:
            print(f"{r['cluster']:9s} {r['error'][:300]}")
            continue
        t, a = r.get("tasks"), r.get("actor")
        left = (f"{t['tasks']:>6d} {t['kills_done']:>6d} {_yes(t['results_correct']):>8s} {t['lost']:>5d} "
                f"{t['extra_runs']:>11d} {t['wall_s']:>7.1f} {t['task_workers_after']:>9d} of {r['task_workers']}"
                ) if t else f"{'-':>6s} " * 7
        right = (f"{a['actor_kills']:>11d} {a['calls_ok']:>9d} {a['restarts_observed']:>9d} "
                 f"{a['recover_s_median']:>9.2f} / {a['recover_s_max']:<8.2f}") if a else "-"
        print(f"{r['cluster']:9s} {left} | {right}")
    detail = [r for r in rows if "error" not in r]
    if any("tasks" in r for r in detail):
        print(f"\nextra runs of max_retries=-1 tasks: {'cluster':9s} cut short by a kill / finished results "
              "recomputed / most runs of one task")
        for r in detail:
            if "tasks" in r:
                t = r["tasks"]
                print(f"{'':36s}{r['cluster']:9s} {t['runs_cut_short']:>5d} / {t['results_recomputed']:>5d} / "
                      f"{t['max_runs_of_one_task']:>3d}")
    if any("actor" in r for r in detail):
        print("\nactor, max_task_retries=-1: cluster, kills whose calls in flight were re-sent out of submission "
              "order, each ran once on the new instance")
        for r in detail:
            a = r.get("actor")
            if a:
                reordered = sum(1 for v in a["in_flight_values"] if v != sorted(v))
                print(f"  {r['cluster']:9s} {reordered:>3d} of {a['actor_kills']:<3d} "
                      f"{_yes(a['in_flight_each_once_on_new'])}")
    if any("tasks_default_retries" in r for r in detail):
        print("\ndefault max_retries (3): cluster, tasks, kills, failed (by error), extra runs, wall s")
        for r in detail:
            t = r.get("tasks_default_retries")
            if t:
                print(f"  {r['cluster']:9s} {t['tasks']:>6d} {t['kills_done']:>4d} {t['lost']:>5d} {t['errors']} "
                      f"{t['extra_runs']:>5d} {t['wall_s']:>7.1f}")
    if any("actor_no_retry" in r for r in detail):
        print("\nactor with max_task_retries=0: cluster, kills, calls ok, errors, restarts, recover s med/max")
        for r in detail:
            a = r.get("actor_no_retry")
            if a:
                print(f"  {r['cluster']:9s} {a['actor_kills']:>4d} {a['calls_ok']:>6d} {a['call_errors']} "
                      f"{a['restarts_observed']:>3d} {a['recover_s_median']:.2f}/{a['recover_s_max']:.2f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cluster", default=None, help="embedded,joined,netns (default: embedded,joined; +netns as root)")
    ap.add_argument("--tasks", type=int, default=1000)
    ap.add_argument("--kills", type=int, default=20)
    ap.add_argument("--actor-kills", type=int, default=10)
    ap.add_argument("--quick", action="store_true", help="60 tasks, 3 kills, 3 actor kills")
    ap.add_argument("--variants", default=",".join(ALL_VARIANTS), help=",".join(ALL_VARIANTS))
    ap.add_argument("--address", default="", help="joined: a running cluster's scheduler (its workers get killed)")
    ap.add_argument("--netns-hosts", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--timeout", type=float, default=1800.0, help="per cluster, seconds")
    ap.add_argument("--out", default=str(HERE / "results" / "faults.json"))
    ap.add_argument("--keep", action="store_true", help="keep the scratch directories (markers, logs)")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--scratch", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.quick:
        args.tasks, args.kills, args.actor_kills = 60, 3, 3
    unknown = set(args.variants.split(",")) - set(ALL_VARIANTS)
    if unknown:
        ap.error(f"unknown variants: {sorted(unknown)}")
    if args.child:
        out = child(args)
        print("FAULTS " + json.dumps(out), flush=True)
        os._exit(0)

    clusters = args.cluster.split(",") if args.cluster else (
        ["embedded", "joined"] + (["netns"] if hasattr(os, "geteuid") and os.geteuid() == 0 else []))
    rows = []
    for name in clusters:
        scratch = Path(tempfile.mkdtemp(prefix=f"raycompat-faults-{name}-"))
        os.chmod(scratch, 0o755)
        t = time.monotonic()
        res = RUNNERS[name](args, scratch)
        res.setdefault("cluster", name)
        res["total_s"] = round(time.monotonic() - t, 1)
        if args.keep or "error" in res:
            res["scratch"] = str(scratch)
        else:
            shutil.rmtree(scratch, ignore_errors=True)
        print(f"{name}: {json.dumps(res)[:2000]}", file=sys.stderr, flush=True)
        rows.append(res)
    print_tables(rows)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"date": time.strftime("%Y-%m-%d %H:%M:%S"), "machine": platform.platform(),
                               "python": platform.python_version(), "cpus": os.cpu_count(),
                               "args": {k: v for k, v in vars(args).items() if k not in ("child", "scratch")},
                               "runs": rows}, indent=1))
    print(f"\nraw numbers: {out}")


if __name__ == "__main__":
    main()
