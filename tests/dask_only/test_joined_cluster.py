"""A cluster raycompat joins behaves as the embedded one: CPU accounting per host,
per-task ``max_retries``, the actor page; what the driver installs stays well-behaved
towards the cluster's other clients."""

from __future__ import annotations

import os

from conftest import run_script


def test_cpus_are_accounted_per_host(plain_cli_cluster):
    """Two 1-thread workers on one host are a node of 2 CPUs (Ray's semantics): a
    ``num_cpus=2`` task runs alone, a task blocked in ``get`` gives its CPU back (a tree
    deeper than the CPUs finishes), and ``available_resources`` shows the ledger."""
    proc = run_script(
        f"""
        import time
        import raycompat as ray
        ray.init(address="{plain_cli_cluster.address}")
        assert ray.cluster_resources()["CPU"] == 2.0
        @ray.remote(num_cpus=2)
        def both():
            start = time.time(); time.sleep(0.5); return start, time.time()
        spans = sorted(ray.get([both.remote() for _ in range(3)], timeout=60))
        assert all(b[0] >= a[1] - 0.02 for a, b in zip(spans, spans[1:])), spans
        @ray.remote
        def fib(n):
            return n if n < 2 else sum(ray.get([fib.remote(n - 1), fib.remote(n - 2)]))
        assert ray.get(fib.remote(7), timeout=120) == 13
        @ray.remote
        def sleeper():
            time.sleep(2); return 1
        @ray.remote
        def waiter(ref):
            return ray.get(ref[0])
        s = sleeper.remote()
        w = waiter.remote([s])
        deadline = time.time() + 30
        while ray.available_resources().get("CPU", 0.0) != 1.0:  # sleeper holds 1, waiter 0
            assert time.time() < deadline, ray.available_resources()
            time.sleep(0.1)
        assert ray.get(w, timeout=60) == 1
        deadline = time.time() + 30
        while ray.available_resources().get("CPU", 0.0) != 2.0:
            assert time.time() < deadline, ray.available_resources()
            time.sleep(0.1)
        ray.shutdown()
        print("OK")
        """
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().endswith("OK")


def test_max_retries_is_per_task_and_other_clients_keep_the_scheduler_limit(plain_cli_cluster, tmp_path):
    """Ray: a task whose worker dies is re-run up to its ``max_retries`` (0: never,
    ``WorkerCrashedError``). A plain Dask task of another client keeps the scheduler's
    ``allowed-failures`` (3: it runs 4 times, then ``KilledWorker``)."""
    proc = run_script(
        f"""
        import os
        import distributed
        import raycompat as ray
        ray.init(address="{plain_cli_cluster.address}")
        def crash_until(path, survive_after):
            n = len(os.listdir(path))
            open(os.path.join(path, str(n)), "w").close()
            if n < survive_after:
                os._exit(1)
            return n
        for name, retries, survive in (("zero", 0, 99), ("five", 5, 4), ("many", 4, 99)):
            d = os.path.join({str(tmp_path)!r}, name); os.mkdir(d)
            try:
                print(name, "value", ray.get(ray.remote(max_retries=retries)(crash_until).remote(d, survive), timeout=120))
            except ray.exceptions.WorkerCrashedError:
                print(name, "crashed")
            print(name, "runs", len(os.listdir(d)))
        d = os.path.join({str(tmp_path)!r}, "plain"); os.mkdir(d)
        with distributed.Client("{plain_cli_cluster.address}") as c:
            try:
                c.submit(crash_until, d, 99, pure=False).result(timeout=120)
            except distributed.KilledWorker:
                print("plain killed")
        print("plain runs", len(os.listdir(d)))
        ray.shutdown()
        """,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.splitlines() == [
        "zero crashed", "zero runs 1",
        "five value 4", "five runs 5",
        "many crashed", "many runs 5",
        "plain killed", "plain runs 4",
    ]


def test_actor_page_on_a_joined_cluster(plain_cli_cluster):
    proc = run_script(
        f"""
        import json, urllib.request
        import raycompat as ray
        ctx = ray.init(address="{plain_cli_cluster.address}")
        @ray.remote
        class Counter:
            def __init__(self):
                self.n = 0
            def inc(self):
                self.n += 1
                return self.n
        c = Counter.remote()
        assert ray.get([c.inc.remote() for _ in range(5)]) == [1, 2, 3, 4, 5]
        base = ctx.dashboard_url.rsplit("/status", 1)[0]
        import time
        deadline = time.time() + 30
        while True:  # the shell's report travels as a Dask event
            rows = json.loads(urllib.request.urlopen(base + "/raycompat/actors?format=json").read())
            if any(r["name"] == "Counter.inc" and r["calls"] == 5 for r in rows) or time.time() > deadline:
                break
            time.sleep(0.2)
        print(rows)
        assert any(r["name"] == "Counter.inc" and r["calls"] == 5 for r in rows), rows
        ray.shutdown()
        """
    )
    assert proc.returncode == 0, proc.stderr[-3000:]


def test_an_in_process_cluster_object_counts_every_worker():
    """``ray.init(address=LocalCluster(processes=False))``: workers that share a process
    (and the driver's) each add their threads to the host's CPUs."""
    proc = run_script(
        """
        import distributed
        import raycompat as ray
        cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                                           dashboard_address="127.0.0.1:0")
        ray.init(address=cluster)
        assert ray.cluster_resources()["CPU"] == 2.0
        @ray.remote(num_cpus=2)
        def two():
            return ray.get_runtime_context().get_assigned_resources()
        @ray.remote
        def fib(n):
            return n if n < 2 else sum(ray.get([fib.remote(n - 1), fib.remote(n - 2)]))
        assert ray.get(two.remote(), timeout=60) == {"CPU": 2.0}
        assert ray.get(fib.remote(6), timeout=120) == 8
        assert ray.available_resources()["CPU"] == 2.0
        ray.shutdown()
        cluster.close()
        print("OK")
        """
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().endswith("OK")
