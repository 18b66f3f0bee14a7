"""One benchmark workload on one engine, in this fresh interpreter; prints one JSON line.

    python benchmarks/workloads.py ENGINE WORKLOAD [--quick]

ENGINE is ``raycompat``, ``ray`` (run with the Ray venv's python) or ``dask`` (raw
dask.distributed written the way a Dask user would). Every engine gets the same
2-process, 1-thread-per-process local cluster with the dashboard off; start-up time is
measured separately, so the other workloads time only their own work.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time

from measure import tree_rss_mb

ENGINE, WORKLOAD = sys.argv[1], sys.argv[2]
QUICK = "--quick" in sys.argv
NCPU = 2


# ---------------------------------------------------------------- engine adapters


class RayLike:
    """raycompat and real Ray share one code path: that is the point of raycompat."""

    def __init__(self, name):
        if name == "ray":
            os.environ.setdefault("RAY_ADDRESS", "local")
            import ray as mod

            mod.init(num_cpus=NCPU, include_dashboard=False, logging_level="ERROR")
        else:
            import raycompat as mod

            mod.init(num_cpus=NCPU, include_dashboard=False, logging_level="ERROR")
        self.ray = mod
        r = mod
        self.noop = r.remote(lambda: None)
        self.ident = r.remote(lambda x: x)
        self.inc = r.remote(lambda x: x + 1)
        self.total = r.remote(lambda a: float(a.sum()))
        self.make = r.remote(lambda n: __import__("numpy").ones(n // 8))
        self.sum_list = r.remote(lambda xs: sum(xs))
        self.burn = r.remote(_burn)

        @r.remote
        def fib(n):
            if n < 2:
                return n
            return sum(r.get([fib.remote(n - 1), fib.remote(n - 2)]))

        self.fib = fib
        self.slow_gen = r.remote(_slow_gen)

    def warm(self):
        self.ray.get([self.noop.remote() for _ in range(NCPU * 2)])

    def first_item(self, n, delay):
        gen = self.slow_gen.remote(n, delay)
        first = self.ray.get(next(gen))
        t = time.perf_counter()
        rest = [self.ray.get(r) for r in gen]
        return first, rest, time.perf_counter() - t

    def empty_tasks(self, n):
        return self.ray.get([self.noop.remote() for _ in range(n)])

    def round_trip(self):
        return self.ray.get(self.ident.remote(1))

    def chain(self, n):
        ref = self.ray.put(0)
        for _ in range(n):
            ref = self.inc.remote(ref)
        return self.ray.get(ref)

    def put(self, value):
        return self.ray.put(value)

    def read_by_tasks(self, ref, k):
        return self.ray.get([self.total.remote(ref) for _ in range(k)])

    def result_of(self, nbytes):
        return self.ray.get(self.make.remote(nbytes))

    def sum_by_value(self, xs):
        return self.ray.get(self.sum_list.remote(xs))

    def sum_by_put(self, xs):
        return self.ray.get(self.sum_list.remote(self.ray.put(xs)))

    def cpu(self, k, seconds):
        return self.ray.get([self.burn.remote(seconds) for _ in range(k)])

    def nested(self, n):
        return self.ray.get(self.fib.remote(n))

    def _counter(self):
        if not hasattr(self, "counter"):
            self.counter = self.ray.remote(Counter).remote()
            self.ray.get(self.counter.increment.remote(0))
        return self.counter

    def actor_calls(self, n):
        c = self.ray.remote(Counter).remote()
        self.ray.get(c.increment.remote(0))
        return self.ray.get([c.increment.remote() for _ in range(n)])

    def actor_one_call(self):
        return self.ray.get(self._counter().increment.remote())

    def actor_create(self):
        """A new actor and its first call's answer; the actor is dropped after."""
        return self.ray.get(self.ray.remote(Counter).remote().increment.remote())

    def workers_alive(self) -> bool:
        """No worker process died (Ray: the nodes are alive; Dask: the workers kept)."""
        if self.ray.__name__ == "ray":
            return all(n["Alive"] for n in self.ray.nodes())
        from raycompat._dask import driver

        from raycompat._dask.actor_host import task_workers

        s = driver.current_session()
        return len(task_workers(s.client.scheduler_info()["workers"])) == NCPU and _no_restarts(s.client)

    def shutdown(self):
        self.ray.shutdown()


class RawDask:
    """The same work as a competent Dask user writes it."""

    def __init__(self):
        import distributed

        self.d = distributed
        self.cluster = distributed.LocalCluster(
            n_workers=NCPU, threads_per_worker=1, processes=True, dashboard_address=None
        )
        self.client = distributed.Client(self.cluster)

    def warm(self):
        self.client.gather([self.client.submit(_noop, pure=False) for _ in range(NCPU * 2)])

    def empty_tasks(self, n):
        return self.client.gather([self.client.submit(_noop, pure=False) for _ in range(n)])

    def round_trip(self):
        return self.client.submit(_ident, 1, pure=False).result()

    def chain(self, n):
        fut = self.client.scatter(0)
        for _ in range(n):
            fut = self.client.submit(_inc, fut, pure=False)
        return fut.result()

    def put(self, value):
        return self.client.scatter(value, hash=False) if not isinstance(value, list) else self.client.scatter([value], hash=False)[0]

    def read_by_tasks(self, fut, k):
        return self.client.gather([self.client.submit(_total, fut, pure=False) for _ in range(k)])

    def result_of(self, nbytes):
        return self.client.submit(_make, nbytes, pure=False).result()

    def sum_by_value(self, xs):
        return self.client.submit(_sum, xs, pure=False).result()

    def sum_by_put(self, xs):
        return self.client.submit(_sum, self.put(xs), pure=False).result()

    def cpu(self, k, seconds):
        return self.client.gather([self.client.submit(_burn, seconds, pure=False) for _ in range(k)])

    def nested(self, n):
        return self.client.submit(_dask_fib, n, pure=False).result()

    def first_item(self, n, delay):
        # Dask has no streaming task: a Dask user streams through a distributed.Queue.
        q = self.d.Queue(client=self.client)
        fut = self.client.submit(_dask_gen, q.name, n, delay, pure=False)
        first = q.get()
        t = time.perf_counter()
        rest = [q.get() for _ in range(n - 1)]
        fut.result()
        return first, rest, time.perf_counter() - t

    def actor_calls(self, n):
        c = self.client.submit(Counter, actor=True).result()
        c.increment(0).result()
        futures = [c.increment() for _ in range(n)]
        return [f.result() for f in futures]

    def actor_one_call(self):
        if not hasattr(self, "counter"):
            self.counter = self.client.submit(Counter, actor=True).result()
        return self.counter.increment().result()

    def actor_create(self):
        return self.client.submit(Counter, actor=True, pure=False).result().increment().result()

    def workers_alive(self) -> bool:
        return len(self.client.scheduler_info()["workers"]) == NCPU and _no_restarts(self.client)

    def shutdown(self):
        self.client.close()
        self.cluster.close()


def _no_restarts(client) -> bool:
    """No worker was lost and replaced during the run (Dask logs each removal)."""
    removed = [e for _, e in client.get_events("all") if isinstance(e, dict) and e.get("action") == "remove-worker"]
    return not removed


class Counter:
    def __init__(self):
        self.count = 0

    def increment(self, by=1):
        self.count += by
        return self.count


def _noop():
    return None


def _ident(x):
    return x


def _inc(x):
    return x + 1


def _total(a):
    return float(a.sum())


def _make(n):
    import numpy

    return numpy.ones(n // 8)


def _sum(xs):
    return sum(xs)


def _burn(seconds):
    end = time.process_time() + seconds
    x = 0
    while time.process_time() < end:
        x += 1
    return x


def _slow_gen(n, delay):
    for i in range(n):
        if i:
            time.sleep(delay)
        yield i


def _dask_gen(queue_name, n, delay):
    from distributed import Queue

    q = Queue(queue_name)
    for i in range(n):
        if i:
            time.sleep(delay)
        q.put(i)


def _dask_fib(n):
    if n < 2:
        return n
    from distributed import worker_client

    with worker_client() as c:
        return sum(c.gather([c.submit(_dask_fib, n - 1, pure=False), c.submit(_dask_fib, n - 2, pure=False)]))


class PeakRSS:
    """The largest total resident memory of this process tree, sampled every 50 ms."""

    def __init__(self):
        import threading

        self.peak = tree_rss_mb()
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.thread.start()

    def _sample(self):
        while not self.done.wait(0.05):
            self.peak = max(self.peak, tree_rss_mb())

    def stop(self) -> float:
        self.done.set()
        self.thread.join()
        return max(self.peak, tree_rss_mb())


# ---------------------------------------------------------------- workloads


def make_engine():
    return RawDask() if ENGINE == "dask" else RayLike(ENGINE)


def main():
    t0 = time.perf_counter()
    eng = make_engine()
    if WORKLOAD == "startup":
        eng.round_trip()
        first = time.perf_counter() - t0
        time.sleep(5)  # settled: raycompat starts its warm actor host 3 s after init
        idle = tree_rss_mb()
        t1 = time.perf_counter()
        eng.shutdown()
        return {"seconds": first, "shutdown_s": time.perf_counter() - t1, "idle_rss_mb": idle}
    eng.warm()
    out = {}
    if WORKLOAD == "empty_tasks":
        n = 2000
        t = time.perf_counter()
        eng.empty_tasks(n)
        out = {"tasks_per_s": n / (time.perf_counter() - t)}
    elif WORKLOAD == "round_trip":
        samples = []
        for _ in range(100 if QUICK else 300):
            t = time.perf_counter()
            eng.round_trip()
            samples.append(time.perf_counter() - t)
        out = {"ms": statistics.median(samples) * 1e3}
    elif WORKLOAD == "chain":
        n = 500
        t = time.perf_counter()
        assert eng.chain(n) == n
        out = {"tasks_per_s": n / (time.perf_counter() - t)}
    elif WORKLOAD == "large_put_read":
        import numpy

        # The first 200 MB into a fresh worker process pays its page faults (about 0.5 s
        # on this VM, on every engine), which is not the transfer: NCPU untimed rounds
        # (Dask scatters round-robin, and its readers run where the data is), then the
        # median of 3.
        samples, peak = [], 0.0
        for i in range(NCPU + 3):
            arr = numpy.ones(200 * 2**20 // 8)
            t = time.perf_counter()
            ref = eng.put(arr)
            eng.read_by_tasks(ref, 10)
            if i >= NCPU:
                samples.append(time.perf_counter() - t)
            peak = max(peak, tree_rss_mb())
            del ref, arr
        out = {"seconds": statistics.median(samples), "peak_rss_mb": peak}
    elif WORKLOAD == "large_result":
        nbytes = 200 * 2**20
        # As above: the task lands on either worker, so NCPU untimed rounds (with two
        # workers, consecutive tasks alternate between them), then the median of 3.
        rates = []
        for i in range(NCPU + 3):
            t = time.perf_counter()
            value = eng.result_of(nbytes)
            if i >= NCPU:
                rates.append(nbytes / 1e9 / (time.perf_counter() - t))
            del value
        out = {"gb_per_s": statistics.median(rates)}
    elif WORKLOAD == "actor_calls":
        n = 2000
        t = time.perf_counter()
        values = eng.actor_calls(n)
        out = {"calls_per_s": n / (time.perf_counter() - t), "in_order": values == list(range(1, n + 1))}
    elif WORKLOAD == "actor_round_trip":
        eng.actor_calls(10)
        samples = []
        for _ in range(200 if QUICK else 500):
            t = time.perf_counter()
            eng.actor_one_call()
            samples.append(time.perf_counter() - t)
        out = {"ms": statistics.median(samples) * 1e3}
    elif WORKLOAD == "actor_create":
        # One actor at a time, each created, called once and dropped (a new process per
        # actor on Ray and, from a warm pool, on raycompat; Dask places it in a worker).
        samples = []
        for _ in range(10 if QUICK else 20):
            t = time.perf_counter()
            assert eng.actor_create() == 1
            samples.append(time.perf_counter() - t)
        out = {"ms": statistics.median(samples) * 1e3}
    elif WORKLOAD == "sum_100m_value":
        # The seed tutorial as written: sum_list.remote(list(range(100_000_000))).
        peak = PeakRSS()
        xs = list(range(20_000_000 if QUICK else 100_000_000))
        t = time.perf_counter()
        total = eng.sum_by_value(xs)
        seconds = time.perf_counter() - t
        assert total == len(xs) * (len(xs) - 1) // 2
        out = {"seconds": seconds, "peak_rss_mb": peak.stop(), "workers_alive": eng.workers_alive()}
    elif WORKLOAD in ("sum_10m_value", "sum_10m_put"):
        xs = list(range(2_000_000 if QUICK else 10_000_000))
        t = time.perf_counter()
        fn = eng.sum_by_value if WORKLOAD.endswith("value") else eng.sum_by_put
        assert fn(xs) == len(xs) * (len(xs) - 1) // 2
        out = {"seconds": time.perf_counter() - t}
    elif WORKLOAD == "cpu_speedup":
        k, s = 8, 0.5
        t = time.perf_counter()
        eng.cpu(k, s)
        out = {"speedup": k * s / (time.perf_counter() - t)}
    elif WORKLOAD == "generator":
        # A generator yielding 5 items 0.1 s apart: time to the first item, and how long
        # the last 4 took after it (0.4 s of the generator's own sleeping).
        n, delay = 5, 0.1
        firsts, rests = [], []
        for _ in range(5 if QUICK else 15):
            t = time.perf_counter()
            first, rest, rest_s = eng.first_item(n, delay)
            firsts.append(time.perf_counter() - t - rest_s)
            rests.append(rest_s)
            assert [first, *rest] == list(range(n))
        out = {"first_item_ms": statistics.median(firsts) * 1e3,
               "rest_overhead_ms": (statistics.median(rests) - (n - 1) * delay) * 1e3}
    elif WORKLOAD == "nested":
        n = 10 if QUICK else 12
        t = time.perf_counter()
        eng.nested(n)
        out = {"seconds": time.perf_counter() - t}
    else:
        raise SystemExit(f"unknown workload {WORKLOAD}")
    eng.shutdown()
    return out


if __name__ == "__main__":
    result = main()
    print("BENCH " + json.dumps(result), flush=True)
    os._exit(0)
