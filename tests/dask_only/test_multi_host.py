"""raycompat on a Dask cluster spread over real hosts (Linux network namespaces).

One module-scoped cluster (``netns_cluster.py``): a scheduler host, three worker hosts
(one ``dask worker --nthreads 1 --no-nanny`` each) and a driver host, each with its own
address on a private bridge. Every test runs its driver script on the driver's host.
The tests skip, with the reason, where namespaces cannot be made (not root, no
``ip netns``). Real Ray cannot be started in these namespaces here, so each test's
docstring states what Ray does (from Ray 2.60's documentation and behaviour) instead of
running it under ``RAYCOMPAT_TEST_ENGINE=ray``.

``test_host_cut_off_mid_run`` cuts one worker host off for good; the other tests use only
the hosts still connected (``cluster.workers``), so they hold in any order.
"""

from __future__ import annotations

import json
import time

import pytest

from dask_only.netns_cluster import NetnsCluster, NetnsUnavailable, netns_unavailable_reason


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    reason = netns_unavailable_reason()
    if reason is not None:
        pytest.skip(reason)
    try:
        c = NetnsCluster(tmp_path_factory.mktemp("netns"), n_workers=3)
    except NetnsUnavailable as e:
        pytest.skip(str(e))
    try:
        yield c
    finally:
        c.stop()


def _result(proc, tag="RESULT "):
    assert proc.returncode == 0, f"driver failed (rc={proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
    lines = [line for line in proc.stdout.splitlines() if line.startswith(tag)]
    assert lines, f"no {tag!r} line in:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return json.loads(lines[-1][len(tag):])


def test_nodes_are_the_worker_hosts(cluster):
    """Ray: ``ray.nodes()`` lists one entry per node (raylet), ``NodeManagerAddress``
    being the node's IP and ``NodeID`` a distinct 56-hex-digit id; each node's
    ``Resources`` has its CPUs and ``node:<ip>``. (A Ray driver always runs on a node,
    usually the head; a host that only runs the driver is not a Ray node: here the driver's
    host runs no Dask worker, so it must not be listed.)"""
    proc = cluster.run_driver(
        f"""
        import json, raycompat as ray
        ray.init(address="{cluster.address}")
        print("RESULT " + json.dumps(ray.nodes()), flush=True)
        ray.shutdown()
        """
    )
    nodes = _result(proc)
    hosts = {w.ip for w in cluster.workers}
    assert sorted(n["NodeManagerAddress"] for n in nodes) == sorted(hosts)
    ids = [n["NodeID"] for n in nodes]
    assert len(set(ids)) == len(ids) == len(hosts)
    assert all(len(i) == 56 and int(i, 16) >= 0 for i in ids)
    for n in nodes:
        assert n["Alive"] is True
        assert n["Resources"]["CPU"] == 1.0
        assert n["Resources"][f"node:{n['NodeManagerAddress']}"] == 1.0
    assert cluster.driver_host.ip not in {n["NodeManagerAddress"] for n in nodes}
    assert cluster.scheduler.ip not in {n["NodeManagerAddress"] for n in nodes}


def test_node_affinity_and_spread_place_on_hosts(cluster):
    """Ray: ``NodeAffinitySchedulingStrategy(node_id, soft=False)`` runs the task on that
    node only (``get_runtime_context().get_node_id()`` inside it is that id, and the
    worker's IP the node's); with ``soft=True`` it prefers that node while it is alive
    and has room. ``"SPREAD"`` spreads tasks over the nodes, so a dozen tasks on three idle
    one-CPU nodes reach every node."""
    proc = cluster.run_driver(
        f"""
        import json, time, distributed, raycompat as ray
        from raycompat.util.scheduling_strategies import NodeAffinitySchedulingStrategy as Affinity
        ray.init(address="{cluster.address}")

        @ray.remote
        def where(pause=0.0):
            time.sleep(pause)
            return (ray.get_runtime_context().get_node_id(), ray.util.get_node_ip_address(),
                    distributed.get_worker().ip)

        out = {{"nodes": {{n["NodeManagerAddress"]: n["NodeID"] for n in ray.nodes()}}}}
        out["hard"] = {{ip: ray.get(where.options(scheduling_strategy=Affinity(node, soft=False)).remote(), timeout=60)
                       for ip, node in out["nodes"].items()}}
        out["soft"] = {{ip: ray.get(where.options(scheduling_strategy=Affinity(node, soft=True)).remote(), timeout=60)
                       for ip, node in out["nodes"].items()}}
        out["spread"] = ray.get([where.options(scheduling_strategy="SPREAD").remote(0.3) for _ in range(12)],
                                timeout=120)
        ray.shutdown()
        print("RESULT " + json.dumps(out), flush=True)
        """
    )
    out = _result(proc)
    nodes = out["nodes"]
    assert sorted(nodes) == sorted(w.ip for w in cluster.workers)
    for kind in ("hard", "soft"):
        for ip, (node_id, node_ip, worker_ip) in out[kind].items():
            assert (node_id, node_ip, worker_ip) == (nodes[ip], ip, ip), (kind, ip)
    assert {tuple(r) for r in out["spread"]} == {(nodes[ip], ip, ip) for ip in nodes}


def test_placement_group_strategies_place_bundles_on_hosts(cluster):
    """Ray: ``STRICT_SPREAD`` puts each bundle on a different node (a group of more
    bundles than nodes stays pending), ``STRICT_PACK`` all on one node, and a task with
    ``PlacementGroupSchedulingStrategy(pg, i)`` runs on bundle ``i``'s node
    (``placement_group_table(pg)["bundles_to_node_id"][i]``); with three one-CPU nodes,
    a one-CPU bundle takes its node's CPU out of ``available_resources()``."""
    n = len(cluster.workers)
    proc = cluster.run_driver(
        f"""
        import json, raycompat as ray
        from raycompat.util.placement_group import placement_group, placement_group_table, remove_placement_group
        from raycompat.util.scheduling_strategies import PlacementGroupSchedulingStrategy as S
        ray.init(address="{cluster.address}")

        @ray.remote(num_cpus=1)
        def node():
            return ray.get_runtime_context().get_node_id()

        spread = placement_group([{{"CPU": 1}}] * {n}, strategy="STRICT_SPREAD")
        assert spread.wait(60)
        table = placement_group_table(spread)["bundles_to_node_id"]
        ran = ray.get([node.options(scheduling_strategy=S(spread, i)).remote() for i in range({n})])
        cpus_left = ray.available_resources().get("CPU", 0)
        remove_placement_group(spread)
        too_many = placement_group([{{"CPU": 0.5}}] * {n + 1}, strategy="STRICT_SPREAD")
        pending = (too_many.wait(2), placement_group_table(too_many)["state"])
        remove_placement_group(too_many)
        pack = placement_group([{{"CPU": 0.5}}, {{"CPU": 0.5}}], strategy="STRICT_PACK")
        assert pack.wait(60)
        packed = placement_group_table(pack)["bundles_to_node_id"]
        print("RESULT " + json.dumps({{"table": table, "ran": ran, "cpus_left": cpus_left,
                                      "pending": pending, "packed": packed,
                                      "nodes": [x["NodeID"] for x in ray.nodes()]}}), flush=True)
        ray.shutdown()
        """
    )
    out = _result(proc)
    table = [out["table"][str(i)] for i in range(n)]
    assert sorted(table) == sorted(out["nodes"])  # one bundle per node
    assert out["ran"] == table  # each task on its bundle's node
    assert out["cpus_left"] == 0
    assert out["pending"] == [False, "PENDING"]
    assert len(set(out["packed"].values())) == 1


def test_runtime_env_working_dir_and_py_modules_reach_every_host(cluster, tmp_path):
    """Ray: ``ray.init(runtime_env={"working_dir": d, "py_modules": [pkg]})`` uploads both
    to the cluster (GCS) at ``init``; on every node, each worker of the job starts inside
    its own unpacked copy of ``working_dir`` (the current directory; its modules import)
    with the ``py_modules`` on ``sys.path``, so tasks on any node read the files and import
    the modules even after the driver's local copies are gone."""
    wd = tmp_path / "wd"
    wd.mkdir()
    (wd / "data.txt").write_text("payload-7f3a\n")
    (wd / "wd_helper.py").write_text("WHO = 'working_dir module'\n")
    pkg = tmp_path / "mods" / "mh_pkg"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("VALUE = 4242\n")
    proc = cluster.run_driver(
        f"""
        import json, os, shutil, raycompat as ray
        from raycompat.util.scheduling_strategies import NodeAffinitySchedulingStrategy as Affinity
        ray.init(address="{cluster.address}",
                 runtime_env={{"working_dir": {str(wd)!r}, "py_modules": [{str(pkg)!r}]}})
        # The job's packages are made at init: the hosts must not need the driver's files.
        shutil.rmtree({str(tmp_path)!r})

        @ray.remote
        def use_env():
            import mh_pkg, wd_helper
            with open("data.txt") as f:
                data = f.read().strip()
            return (ray.get_runtime_context().get_node_id(), data, wd_helper.WHO, mh_pkg.VALUE,
                    os.getcwd(), os.path.abspath(mh_pkg.__file__))

        out = {{}}
        for n in ray.nodes():
            s = Affinity(n["NodeID"], soft=False)
            out[n["NodeManagerAddress"]] = [n["NodeID"], ray.get(use_env.options(scheduling_strategy=s).remote(),
                                                                timeout=90)]
        ray.shutdown()
        print("RESULT " + json.dumps(out), flush=True)
        """
    )
    out = _result(proc)
    assert sorted(out) == sorted(w.ip for w in cluster.workers)
    for ip, (node_id, (ran_on, data, who, value, cwd, mod_file)) in out.items():
        assert ran_on == node_id, ip
        assert (data, who, value) == ("payload-7f3a", "working_dir module", 4242), ip
        assert not cwd.startswith(str(tmp_path)) and not mod_file.startswith(str(tmp_path)), (cwd, mod_file)


def test_worker_output_reaches_the_driver_with_the_remote_prefix(cluster):
    """Ray: each line a task or actor prints is printed by its job's driver as
    ``\\x1b[36m(<task name> pid=<pid>, ip=<node ip>)\\x1b[0m <line>`` when the worker is
    on another node than the driver (``(<name> pid=<pid>)`` on the driver's own node),
    the actor's class name for actor methods; stdout lines on the driver's stdout."""
    proc = cluster.run_driver(
        f"""
        import json, os, distributed, raycompat as ray
        from raycompat.util.scheduling_strategies import NodeAffinitySchedulingStrategy as Affinity
        ray.init(address="{cluster.address}")

        @ray.remote
        def say(tag):
            print(f"multi-host line {{tag}}")
            return os.getpid(), distributed.get_worker().ip

        @ray.remote
        class Talker:
            def talk(self, tag):
                print(f"actor line {{tag}}")
                return os.getpid(), distributed.get_worker().ip

        out = {{"tasks": {{}}, "actors": {{}}}}
        for n in ray.nodes():
            ip, s = n["NodeManagerAddress"], Affinity(n["NodeID"], soft=False)
            out["tasks"][ip] = ray.get(say.options(scheduling_strategy=s).remote(ip), timeout=60)
            talker = Talker.options(scheduling_strategy=s).remote()
            out["actors"][ip] = ray.get(talker.talk.remote(ip), timeout=60)
        ray.shutdown()  # waits until every worker's output so far has been printed
        print("RESULT " + json.dumps(out), flush=True)
        """
    )
    out = _result(proc)
    assert sorted(out["tasks"]) == sorted(out["actors"]) == sorted(w.ip for w in cluster.workers)
    for ip, (pid, worker_ip) in out["tasks"].items():
        assert worker_ip == ip
        assert f"\x1b[36m(say pid={pid}, ip={ip})\x1b[0m multi-host line {ip}\n" in proc.stdout, proc.stdout
    for ip, (pid, worker_ip) in out["actors"].items():
        assert worker_ip == ip
        assert f"\x1b[36m(Talker pid={pid}, ip={ip})\x1b[0m actor line {ip}\n" in proc.stdout, proc.stdout
    assert "multi-host line" not in proc.stderr and "actor line" not in proc.stderr


def test_host_cut_off_mid_run(cluster, tmp_path):
    """A worker host drops off the network mid-run (its veth goes down, then its worker
    process is SIGKILLed: no FIN, no RST, the host just goes silent).

    Ray: the GCS marks the node dead once its raylet misses health checks (Ray 2.60:
    ``health_check_period_ms`` 3 s x ``health_check_failure_threshold`` 5, plus
    ``health_check_timeout_ms``: about 15-30 s); tasks that were queued or running there are
    retried on the other nodes (``max_retries`` 3 by default, soft-affinity tasks go
    elsewhere), and lost results are reconstructed from lineage, so every ``get`` returns
    the right values; an actor with ``max_restarts=1`` is restarted on another node (a
    call in flight raises ``ActorUnavailableError`` when ``max_task_retries=0``, later calls
    reach the new instance, ``was_current_actor_reconstructed`` is True, and its
    constructor ran twice in all); an actor with ``max_restarts=0`` is dead: calls raise
    ``ActorDiedError`` (a subclass of ``RayActorError``). The driver goes on running new
    tasks on the remaining nodes, and ``ray.nodes()`` stops listing the dead node as alive.

    Here the scheduler's ``worker-ttl`` is 5 s (see ``netns_cluster.py``): the test prints
    how long the scheduler took to drop the host and how long until results and actors
    answered again."""
    victim = cluster.workers[-1]
    survivors = [w.ip for w in cluster.workers if w is not victim]
    log_a, log_b = tmp_path / "comeback.log", tmp_path / "doomed.log"
    driver = cluster.start_driver(
        f"""
        import json, os, sys, time, raycompat as ray
        from raycompat.util.scheduling_strategies import NodeAffinitySchedulingStrategy as Affinity
        ray.init(address="{cluster.address}")
        nodes = {{n["NodeManagerAddress"]: n["NodeID"] for n in ray.nodes()}}
        victim = nodes[{victim.ip!r}]
        out = {{"victim": victim, "nodes": nodes}}

        @ray.remote
        def slow(i):
            time.sleep(1)
            return i * i, ray.get_runtime_context().get_node_id()

        @ray.remote
        class Where:
            def __init__(self, log):
                with open(log, "a") as f:
                    f.write(f"{{os.getpid()}}\\n")
            def node(self):
                ctx = ray.get_runtime_context()
                return ctx.get_node_id(), ctx.was_current_actor_reconstructed

        # Soft affinity for the actor that must come back: as in Ray, a restart with hard
        # affinity to a dead node cannot be placed (Ray fails it; see the harness report).
        comeback = Where.options(max_restarts=1, scheduling_strategy=Affinity(victim, soft=True)).remote({str(log_a)!r})
        doomed = Where.options(max_restarts=0, scheduling_strategy=Affinity(victim, soft=False)).remote({str(log_b)!r})
        assert ray.get(comeback.node.remote(), timeout=60) == (victim, False)
        assert ray.get(doomed.node.remote(), timeout=60) == (victim, False)

        spread = [slow.options(scheduling_strategy="SPREAD").remote(i) for i in range(20)]
        pinned = [slow.options(scheduling_strategy=Affinity(victim, soft=True)).remote(100 + i) for i in range(4)]
        refs = spread + pinned
        ready, _ = ray.wait(refs, num_returns=4, timeout=60)
        done_before = {{r.hex() for r in ready}}
        print("READY", flush=True)
        assert sys.stdin.readline().strip() == "CUT"
        t_cut = time.monotonic()

        a_ref, b_ref = comeback.node.remote(), doomed.node.remote()
        while victim in {{n["NodeID"] for n in ray.nodes()}}:
            assert time.monotonic() - t_cut < 150, "the scheduler never dropped the silent host"
            time.sleep(0.2)
        out["detect_s"] = time.monotonic() - t_cut
        print("DETECTED", out["detect_s"], flush=True)

        values = ray.get(refs, timeout=150)
        out["tasks_s"] = time.monotonic() - t_cut
        out["values"] = [v[0] for v in values]
        out["late_on_victim"] = [i for i, (r, v) in enumerate(zip(refs, values))
                                 if v[1] == victim and r.hex() not in done_before]
        out["task_nodes"] = sorted({{v[1] for v in values}})

        # The actor that may not restart: dead (possibly unavailable first).
        errors = []
        for _ in range(3):
            try:
                errors.append(["value", ray.get(b_ref, timeout=150)])
            except ray.exceptions.ActorDiedError as e:
                errors.append(["ActorDiedError", str(e)[:300]])
                break
            except ray.exceptions.ActorUnavailableError as e:
                errors.append(["ActorUnavailableError", str(e)[:300]])
            b_ref = doomed.node.remote()
        out["doomed"] = errors
        out["doomed_s"] = time.monotonic() - t_cut

        # The actor with a restart left: answers again, from another host.
        attempts = []
        deadline = time.monotonic() + 150
        while time.monotonic() < deadline:
            try:
                out["comeback"] = ray.get(a_ref, timeout=150)
                break
            except ray.exceptions.ActorUnavailableError as e:
                attempts.append(str(e)[:300])
                a_ref = comeback.node.remote()
        out["comeback_unavailable"] = attempts
        out["comeback_s"] = time.monotonic() - t_cut

        # The driver goes on: new tasks run, on the hosts left.
        out["after"] = ray.get([slow.options(scheduling_strategy="SPREAD").remote(i) for i in range(6)], timeout=90)
        out["nodes_after"] = sorted(n["NodeManagerAddress"] for n in ray.nodes())
        time.sleep(1)  # a constructor run late (e.g. a lost actor recomputed) shows in the logs
        out["constructed"] = [len(open(p).read().split()) for p in ({str(log_a)!r}, {str(log_b)!r})]
        ray.shutdown()
        print("RESULT " + json.dumps(out), flush=True)
        """,
        stderr_path=tmp_path / "driver-stderr.log",
    )
    seen: list = []

    def stderr_tail():
        return (tmp_path / "driver-stderr.log").read_text(errors="replace")[-6000:]

    try:
        cluster.expect_line(driver, "READY", timeout=120, seen=seen)
    except (TimeoutError, EOFError) as e:
        pytest.fail(f"{e}\nstdout: {''.join(seen)}\nstderr: {stderr_tail()}")
    t0 = time.monotonic()
    cluster.cut_off(victim)
    cluster.kill_processes(victim)
    print(f"cut off {victim} and killed its worker in {time.monotonic() - t0:.2f}s")
    driver.stdin.write("CUT\n")
    driver.stdin.flush()
    try:
        rest, _ = driver.communicate(timeout=240)
    except Exception:
        driver.kill()
        rest, _ = driver.communicate()
        pytest.fail(f"the driver hung after the cut\nstdout: {''.join(seen)}{rest}\nstderr: {stderr_tail()}")
    stdout = "".join(seen) + rest
    print(stdout)
    assert driver.returncode == 0, f"rc={driver.returncode}\nstdout: {stdout}\nstderr: {stderr_tail()}"
    out = json.loads([line for line in stdout.splitlines() if line.startswith("RESULT ")][-1][7:])
    print(f"silent host dropped by the scheduler after {out['detect_s']:.1f}s; all task results after "
          f"{out['tasks_s']:.1f}s; max_restarts=0 actor dead after {out['doomed_s']:.1f}s; "
          f"max_restarts=1 actor answered again after {out['comeback_s']:.1f}s")

    nodes, gone = out["nodes"], out["victim"]
    assert out["detect_s"] < 60, "worker-ttl is 5 s: the silent host should be dropped within ~10 s"
    assert out["values"] == [i * i for i in range(20)] + [(100 + i) ** 2 for i in range(4)]
    assert out["late_on_victim"] == [], "a result finished on the cut-off host after the cut"
    assert out["doomed"][-1][0] == "ActorDiedError", out["doomed"]
    assert all(kind == "ActorUnavailableError" for kind, _ in out["doomed"][:-1]), out["doomed"]
    assert "comeback" in out, out["comeback_unavailable"]
    node_after, reconstructed = out["comeback"]
    assert node_after != gone and node_after in {nodes[ip] for ip in survivors}
    assert reconstructed is True
    assert len(out["comeback_unavailable"]) <= 1, out["comeback_unavailable"]
    assert [v for v, _ in out["after"]] == [i * i for i in range(6)]
    assert {n for _, n in out["after"]} <= {nodes[ip] for ip in survivors}
    assert out["nodes_after"] == sorted(survivors)
    assert out["constructed"] == [2, 1], "constructor runs: max_restarts=1 actor, max_restarts=0 actor"
