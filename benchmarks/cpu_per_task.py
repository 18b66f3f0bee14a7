"""CPU cost of a raycompat task on the embedded cluster, split by process.

    python benchmarks/cpu_per_task.py [--bursts 6]

Throughput on a 2-core machine is bounded by the CPU every process spends per task
(the driver runs the client and the embedded scheduler; the workers run Dask's worker
and the task wrapper), and CPU time is far less noisy than wall-clock rates. Prints,
for bursts of 2,000 empty tasks: tasks/s (first burst and median), and the median
CPU-microseconds per task in the driver and in all workers together; then a chain of
300 dependent tasks (tasks/s), the median round trip of 200 sequential tasks, and the
median of 300 small bursts (6 tasks, then ``get`` of all: the end of a burst is where a
worker switches from batching its reports to sending them at once).
Environment variables (``RAYCOMPAT_*``, ``DASK_*``) set before the run are what an
A/B compares; run each side several times, interleaved.
"""

from __future__ import annotations

import argparse
import statistics
import time

import psutil

N = 2000


def _cpu(p: psutil.Process) -> float:
    t = p.cpu_times()
    return t.user + t.system


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bursts", type=int, default=6)
    args = ap.parse_args()

    import raycompat as ray

    ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR")

    @ray.remote
    def noop():
        return None

    @ray.remote
    def inc(x):
        return x + 1

    ray.get([noop.remote() for _ in range(100)])
    me = psutil.Process()
    workers = me.children(recursive=True)
    rates, driver_us, worker_us = [], [], []
    for _ in range(args.bursts):
        d0, w0 = _cpu(me), sum(_cpu(w) for w in workers)
        t = time.perf_counter()
        ray.get([noop.remote() for _ in range(N)])
        rates.append(N / (time.perf_counter() - t))
        driver_us.append((_cpu(me) - d0) / N * 1e6)
        worker_us.append((sum(_cpu(w) for w in workers) - w0) / N * 1e6)
    chain = []
    for _ in range(3):
        t = time.perf_counter()
        r = 0
        for _ in range(300):
            r = inc.remote(r)
        assert ray.get(r) == 300
        chain.append(300 / (time.perf_counter() - t))
    trips = []
    for _ in range(200):
        t = time.perf_counter()
        ray.get(noop.remote())
        trips.append(time.perf_counter() - t)
    small = []
    for _ in range(300):
        t = time.perf_counter()
        ray.get([noop.remote() for _ in range(6)])
        small.append(time.perf_counter() - t)
    ray.shutdown()
    print(
        f"empty tasks/s: first {rates[0]:,.0f}, median {statistics.median(rates):,.0f} | "
        f"CPU us/task: driver {statistics.median(driver_us):.0f}, workers "
        f"{statistics.median(worker_us):.0f} | chain {statistics.median(chain):.0f}/s | "
        f"round trip {statistics.median(trips) * 1e3:.2f} ms | 6-task bursts "
        f"{statistics.median(small) * 1e3:.2f} ms"
    )


if __name__ == "__main__":
    main()
