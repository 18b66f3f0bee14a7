"""Connecting to a cluster of real ``dask scheduler`` / ``dask worker`` processes."""

import os
import time


from conftest import run_script


def test_connect_run_and_leave_cluster_running(cli_cluster):
    proc = run_script(
        f"""
        import raycompat as ray
        ctx = ray.init(address="{cli_cluster.address}")
        @ray.remote
        def f(x):
            return x * 2
        assert ray.get([f.remote(i) for i in range(10)]) == [i * 2 for i in range(10)]
        @ray.remote
        def fib(n):
            return n if n < 2 else sum(ray.get([fib.remote(n - 1), fib.remote(n - 2)]))
        assert ray.get(fib.remote(6), timeout=120) == 8
        assert ray.cluster_resources()["CPU"] == 2.0
        assert ray.cluster_resources()["foo"] == 4.0
        assert ray.cluster_resources()["GPU"] == 1.0
        ray.shutdown()
        print("OK")
        """
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert all(p.poll() is None for p in cli_cluster.procs), "shutdown must not stop a cluster it only joined"


def test_connect_through_env_and_auto(cli_cluster):
    proc = run_script(
        """
        import raycompat as ray
        ray.init(address="auto")
        @ray.remote(num_gpus=1)
        def on_gpu_worker():
            import distributed
            return distributed.get_worker().name
        assert ray.get(on_gpu_worker.remote()) == "w0"
        ray.shutdown()
        ray.init()  # RAY_ADDRESS set: connect, do not start
        assert ray.get(ray.put(3)) == 3
        ray.shutdown()
        print("OK")
        """,
        env={"RAY_ADDRESS": cli_cluster.address},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]


def test_node_affinity_and_spread(cli_cluster):
    proc = run_script(
        f"""
        import raycompat as ray
        from raycompat.util.scheduling_strategies import NodeAffinitySchedulingStrategy
        ray.init(address="{cli_cluster.address}")
        node = ray.nodes()[0]["NodeID"]
        @ray.remote
        def where():
            return ray.get_runtime_context().get_node_id()
        s = NodeAffinitySchedulingStrategy(node_id=node, soft=False)
        assert ray.get(where.options(scheduling_strategy=s).remote()) == node
        assert ray.get([where.options(scheduling_strategy="SPREAD").remote() for _ in range(4)]) == [node] * 4
        bad = NodeAffinitySchedulingStrategy(node_id="0" * 56, soft=False)
        try:
            ray.get(where.options(scheduling_strategy=bad).remote())
        except ray.exceptions.TaskUnschedulableError:
            pass
        else:
            raise AssertionError("hard affinity to a missing node must fail")
        assert ray.get(where.options(scheduling_strategy=NodeAffinitySchedulingStrategy("0" * 56, soft=True)).remote()) == node
        ray.shutdown()
        print("OK")
        """
    )
    assert proc.returncode == 0, proc.stderr[-3000:]


def test_infeasible_resource_on_connected_cluster_warns_and_pends(cli_cluster):
    proc = run_script(
        f"""
        import warnings, raycompat as ray
        ray.init(address="{cli_cluster.address}")
        @ray.remote(resources={{"nosuch": 1}})
        def f():
            return 1
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always")
            r = f.remote()
        assert any("nosuch" in str(x.message) for x in w), [str(x.message) for x in w]
        try:
            ray.get(r, timeout=1)
        except ray.exceptions.GetTimeoutError:
            pass
        ray.cancel(r)
        ray.shutdown()
        print("OK")
        """
    )
    assert proc.returncode == 0, proc.stderr[-3000:]


def test_connection_error_names_address_within_bound():
    start = time.monotonic()
    proc = run_script(
        """
        import raycompat as ray
        try:
            ray.init(address="tcp://127.0.0.1:9", _connect_timeout=3)
        except ConnectionError as e:
            print("ERR", e)
        """
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "ERR" in proc.stdout and "tcp://127.0.0.1:9" in proc.stdout and "dask scheduler" in proc.stdout
    assert time.monotonic() - start < 60


def test_auto_without_cluster_raises_connection_error():
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "DASK_SCHEDULER_ADDRESS")}
    proc = run_script(
        """
        import os, raycompat as ray
        os.environ.pop("RAY_ADDRESS", None); os.environ.pop("DASK_SCHEDULER_ADDRESS", None)
        try:
            ray.init(address="auto")
        except ConnectionError as e:
            print("ERR", e)
        """,
        env=env,
    )
    assert "Could not find any running Ray instance" in proc.stdout, proc.stderr[-2000:]


def test_init_with_client_and_cluster_objects(cli_cluster):
    proc = run_script(
        f"""
        import distributed, raycompat as ray
        client = distributed.Client("{cli_cluster.address}", set_as_default=False)
        ray.init(address=client)
        assert ray.get(ray.put(1)) == 1
        ray.shutdown()
        assert client.status == "running", "shutdown must leave the user's own client open"
        assert client.submit(lambda: 2).result() == 2
        client.close()
        cluster = distributed.LocalCluster(n_workers=1, threads_per_worker=1, host="127.0.0.1",
                                           dashboard_address="127.0.0.1:0")
        ray.init(address=cluster)
        @ray.remote
        def f():
            return 3
        assert ray.get(f.remote()) == 3
        ray.shutdown()
        assert cluster.status.name == "running", "shutdown must not stop a cluster it was handed"
        cluster.close()
        print("OK")
        """
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "OK" in proc.stdout


def test_named_actors_are_cluster_wide_and_detached_outlive_their_driver(cli_cluster):
    creator = run_script(
        f"""
        import raycompat as ray
        ray.init(address="{cli_cluster.address}", namespace="shared")
        @ray.remote
        class Store:
            def __init__(self):
                self.v = 0
            def put(self, v):
                self.v = v
                return v
            def get(self):
                return self.v
        d = Store.options(name="kept", lifetime="detached").remote()
        t = Store.options(name="temporary").remote()
        assert ray.get(d.put.remote(41)) == 41
        assert ray.get(t.put.remote(7)) == 7
        assert sorted(ray.util.list_named_actors()) == ["kept", "temporary"]
        ray.shutdown()
        print("OK")
        """
    )
    assert creator.returncode == 0, creator.stderr[-3000:]
    other = run_script(
        f"""
        import raycompat as ray
        ray.init(address="{cli_cluster.address}", namespace="shared")
        kept = ray.get_actor("kept")
        assert ray.get(kept.get.remote()) == 41, "the detached actor kept its state"
        try:
            ray.get_actor("temporary")
        except ValueError:
            pass
        else:
            raise AssertionError("a non-detached actor's name goes with its driver")
        ray.kill(kept)
        try:
            ray.get_actor("kept")
        except ValueError:
            print("OK")
        ray.shutdown()
        """
    )
    assert other.returncode == 0, other.stderr[-3000:]
    assert "OK" in other.stdout


def test_non_detached_actor_goes_with_a_driver_that_exits_without_shutdown(cli_cluster):
    creator = run_script(
        f"""
        import os, raycompat as ray
        ray.init(address="{cli_cluster.address}", namespace="crash")
        @ray.remote
        class Box:
            def get(self):
                return "here"
        d = Box.options(name="stays", lifetime="detached").remote()
        t = Box.options(name="goes").remote()
        assert ray.get([d.get.remote(), t.get.remote()]) == ["here", "here"]
        print("OK", flush=True)
        os._exit(0)  # no ray.shutdown(): the driver just dies
        """
    )
    assert "OK" in creator.stdout, creator.stderr[-3000:]
    other = run_script(
        f"""
        import time, raycompat as ray
        ray.init(address="{cli_cluster.address}", namespace="crash")
        deadline = time.time() + 30
        while "goes" in ray.util.list_named_actors() and time.time() < deadline:
            time.sleep(0.2)
        assert ray.util.list_named_actors() == ["stays"], ray.util.list_named_actors()
        stays = ray.get_actor("stays")
        assert ray.get(stays.get.remote()) == "here"
        ray.kill(stays)
        ray.shutdown()
        print("OK")
        """
    )
    assert other.returncode == 0, other.stderr[-3000:]
    assert "OK" in other.stdout


def test_shutdown_stops_the_drivers_running_generators(cli_cluster, tmp_path):
    # Ray 2.60 (checked with the same script on a local Ray cluster): a generator still
    # running when its driver calls ray.shutdown() stops (2 of its 20 steps ran).
    # On a cluster raycompat only joined, the workers outlive the driver, so shutdown
    # cancels the driver's unfinished generators itself.
    import time

    steps = tmp_path / "steps.txt"
    proc = run_script(
        f"""
        import time, raycompat as ray
        ray.init(address="{cli_cluster.address}")

        @ray.remote
        def count(path):
            for i in range(20):
                with open(path, "a") as f:
                    f.write(f"{{i}}\\n")
                time.sleep(0.2)
                yield i

        gen = count.remote({str(steps)!r})
        assert ray.get(next(gen)) == 0
        ray.shutdown()
        """
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    time.sleep(2)
    ran = len(steps.read_text().splitlines())
    time.sleep(1)
    assert len(steps.read_text().splitlines()) == ran < 20


def test_init_refuses_what_only_a_new_cluster_takes(cli_cluster):
    """Ray 2.60 (``ray/_private/worker.py``, ``init`` connecting to an existing cluster,
    read in the reference venv): ``num_cpus``/``num_gpus`` first, then ``resources`` (even
    ``{}``), ``labels``, ``object_store_memory``, each a ``ValueError`` naming it; nothing
    is left connected."""
    proc = run_script(
        f"""
        import raycompat as ray
        cases = [dict(num_cpus=2), dict(num_gpus=0, resources={{"a": 1}}), dict(resources={{}}),
                 dict(labels={{"a": "b"}}), dict(object_store_memory=10**8)]
        for kw in cases:
            try:
                ray.init(address="{cli_cluster.address}", **kw)
            except ValueError as e:
                print(str(e))
            assert not ray.is_initialized()
        ray.init(address="{cli_cluster.address}")
        assert ray.is_initialized()
        ray.shutdown()
        """
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.splitlines() == [
        "When connecting to an existing cluster, num_cpus and num_gpus must not be provided.",
        "When connecting to an existing cluster, num_cpus and num_gpus must not be provided.",
        "When connecting to an existing cluster, resources must not be provided.",
        "When connecting to an existing cluster, labels must not be provided.",
        "When connecting to an existing cluster, object_store_memory must not be provided.",
    ]
