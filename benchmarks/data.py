"""raycompat.data against Ray Data and plain dask.dataframe (issue 14).

    python benchmarks/data.py                 # all engines, 3 repeats
    python benchmarks/data.py --repeats 1 --rows 200000

Workloads (each run in a fresh interpreter with 2 worker processes, timed after start-up):
  groupby_sum   1M rows, 100 keys: groupby("k").sum("v")
  map_batches   2M rows through a numpy map_batches, then sum (rows/s)
  pipeline      read_parquet -> map_batches -> write_parquet of 1M rows (time, and the
                peak RSS of the driver and all its child processes, sampled every 50 ms)
Ray Data runs from ``.venv-ray/bin/python`` when it exists (``--ray-python``).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

_COMMON = r'''
import json, os, sys, threading, time
import numpy as np, pandas as pd, pyarrow as pa, pyarrow.parquet as pq, psutil
ENGINE, ROWS, TMP = sys.argv[1], int(sys.argv[2]), sys.argv[3]

peak = [0]
def sample():
    me = psutil.Process()
    while True:
        total = 0
        for p in [me] + me.children(recursive=True):
            try:
                total += p.memory_info().rss
            except psutil.Error:
                pass
        peak[0] = max(peak[0], total)
        time.sleep(0.05)
threading.Thread(target=sample, daemon=True).start()

def double(b):
    return {"k": b["k"], "v": b["v"] * 2}

src = os.path.join(TMP, "src")
if not os.path.exists(src):
    os.makedirs(src)
    for i in range(4):
        n = ROWS // 4
        ids = np.arange(i * n, (i + 1) * n)
        pq.write_table(pa.table({"k": ids % 100, "v": ids}), os.path.join(src, f"part{i}.parquet"))

results = {}
if ENGINE in ("raycompat", "ray"):
    if ENGINE == "ray":
        import ray
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
        ray.data.DataContext.get_current().enable_progress_bars = False
    else:
        import raycompat as ray
        ray.init(num_cpus=2, dashboard_port=0)
    rd = ray.data
    rd.range(1000).map_batches(lambda b: b).sum("id")  # warm-up
    base = rd.range(ROWS).map_batches(lambda b: {"k": b["id"] % 100, "v": b["id"]}).materialize()
    t = time.perf_counter(); rows = base.groupby("k").sum("v").take_all(); results["groupby_sum"] = time.perf_counter() - t
    assert len(rows) == 100
    t = time.perf_counter(); rd.range(2 * ROWS).map_batches(lambda b: {"id": b["id"] * 2}).sum("id")
    results["map_batches"] = 2 * ROWS / (time.perf_counter() - t)
    peak[0] = 0
    t = time.perf_counter()
    rd.read_parquet(src).map_batches(double).write_parquet(os.path.join(TMP, f"out-{ENGINE}"))
    results["pipeline"] = time.perf_counter() - t
    results["pipeline_peak_mb"] = peak[0] / 2**20
    ray.shutdown()
else:
    import dask, dask.dataframe as dd, distributed
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=None)
    client = distributed.Client(cluster)
    df = pd.DataFrame({"id": np.arange(ROWS)})
    base = dd.from_pandas(df, npartitions=4)
    base = base.assign(k=base["id"] % 100, v=base["id"]).persist()
    distributed.wait(base)
    t = time.perf_counter(); out = base.groupby("k")["v"].sum().compute(); results["groupby_sum"] = time.perf_counter() - t
    assert len(out) == 100
    big = dd.from_pandas(pd.DataFrame({"id": np.arange(2 * ROWS)}), npartitions=4).persist()
    distributed.wait(big)
    t = time.perf_counter(); big.map_partitions(lambda p: p * 2, meta=big._meta)["id"].sum().compute()
    results["map_batches"] = 2 * ROWS / (time.perf_counter() - t)
    peak[0] = 0
    t = time.perf_counter()
    dd.read_parquet(src).map_partitions(lambda p: p.assign(v=p["v"] * 2)).to_parquet(os.path.join(TMP, "out-dask"))
    results["pipeline"] = time.perf_counter() - t
    results["pipeline_peak_mb"] = peak[0] / 2**20
    client.close(); cluster.close()
print("RESULT " + json.dumps(results))
'''


def run(python: str, engine: str, rows: int, tmp: str) -> dict:
    proc = subprocess.run(
        [python, "-c", textwrap.dedent(_COMMON), engine, str(rows), tmp],
        capture_output=True, text=True, timeout=900, cwd=ROOT,
    )
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT "):])
    raise RuntimeError(f"{engine} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--ray-python", default=os.path.join(ROOT, ".venv-ray", "bin", "python"))
    args = ap.parse_args()
    engines = [("raycompat", sys.executable), ("dask", sys.executable)]
    if os.path.exists(args.ray_python):
        engines.append(("ray", args.ray_python))
    results: dict = {name: [] for name, _ in engines}
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.repeats):
            for name, python in engines:  # interleaved: A B C A B C
                results[name].append(run(python, name, args.rows, tmp))
    keys = [("groupby_sum", "groupby-sum s"), ("map_batches", "map_batches rows/s"),
            ("pipeline", "parquet pipeline s"), ("pipeline_peak_mb", "pipeline peak RSS MiB")]
    print(f"| workload ({args.rows:,} rows, median of {args.repeats}) | " + " | ".join(n for n, _ in engines) + " |")
    print("|---|" + "---:|" * len(engines))
    for key, label in keys:
        cells = []
        for name, _ in engines:
            value = statistics.median(r[key] for r in results[name])
            cells.append(f"{value:,.0f}" if value >= 100 else f"{value:.2f}")
        print(f"| {label} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
