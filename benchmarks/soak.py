"""Soak: does a long-running driver's cluster stay flat while refs travel inside data?

    python benchmarks/soak.py [--iterations 10000] [--engines raycompat,dask,ray]

Each iteration, on raycompat and on real Ray (one code path):
- a task returns a ref nested in a list (``[ray.put(100 KB)]``): a ref escaping into data;
- the driver puts that ref inside another object (``ray.put([inner])``): refs inside refs;
- an actor keeps the nested list, dropping the one it kept ten calls ago: refs kept by an
  actor, then let go;
- a task reads the value through the outer object's nested ref;
- the driver drops everything.
Raw dask.distributed does the same work the way a Dask user writes it (futures passed to
tasks, the value handed to an actor that keeps the last ten), since Dask has no nested
references. Nothing is retained across iterations but the actor's last ten, so a flat
cluster is the right answer; each leaked iteration would cost at least 100 KB (1 GB over
10,000). The cluster's memory is the RSS of the driver and every process it started,
after a warm-up of a tenth of the run, then at the end. Each engine runs in its own
fresh interpreter, one after the other; prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from measure import tree_rss_mb

HERE = Path(__file__).resolve().parent
NCPU = 2
VALUE_FLOATS = 12_500  # 100 KB


# ---------------------------------------------------------------- one engine, in a child


class Keeper:
    def __init__(self):
        self.kept = []

    def keep(self, item):
        self.kept.append(item)
        del self.kept[:-10]
        return len(self.kept)


def ray_like(name: str, iterations: int) -> dict:
    if name == "ray":
        os.environ.setdefault("RAY_ADDRESS", "local")
        import ray
    else:
        import raycompat as ray
    ray.init(num_cpus=NCPU, include_dashboard=False, logging_level="ERROR")

    @ray.remote
    def make():
        import numpy

        return [ray.put(numpy.ones(VALUE_FLOATS))]

    @ray.remote
    def use(outer):
        return float(ray.get(ray.get(outer[0])[0])[0])

    keeper = ray.remote(Keeper).remote()

    def one():
        box = ray.get(make.remote())
        outer = ray.put([box[0]])
        keeper.keep.remote(box)
        assert ray.get(use.remote([outer])) == 1.0

    result = _soak(one, iterations)
    ray.shutdown()
    return result


def raw_dask(iterations: int) -> dict:
    import distributed

    cluster = distributed.LocalCluster(n_workers=NCPU, threads_per_worker=1, processes=True,
                                       dashboard_address=None, host="127.0.0.1")
    client = distributed.Client(cluster)
    keeper = client.submit(Keeper, actor=True).result()

    def make():
        import numpy

        return numpy.ones(VALUE_FLOATS)

    def use(a):
        return float(a[0])

    def one():
        fut = client.submit(make, pure=False)
        keeper.keep(fut.result()).result()
        assert client.submit(use, fut).result() == 1.0

    result = _soak(one, iterations)
    client.close()
    cluster.close()
    return result


def _soak(one, iterations: int) -> dict:
    warm = max(1, iterations // 10)
    t = time.perf_counter()
    for _ in range(warm):
        one()
    time.sleep(1.0)
    before = tree_rss_mb()
    for _ in range(iterations - warm):
        one()
    time.sleep(2.0)
    after = tree_rss_mb()
    return {"iterations": iterations, "seconds": time.perf_counter() - t, "rss_after_warmup_mb": before,
            "rss_end_mb": after, "growth_mb": after - before}


# ---------------------------------------------------------------- the table


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--iterations", type=int, default=10_000)
    ap.add_argument("--engines", default="raycompat,dask,ray")
    ap.add_argument("--ray-python", default=str(HERE.parent / ".venv-ray" / "bin" / "python"))
    ap.add_argument("--child", default=None)
    args = ap.parse_args()
    if args.child:
        out = raw_dask(args.iterations) if args.child == "dask" else ray_like(args.child, args.iterations)
        print("SOAK " + json.dumps(out), flush=True)
        os._exit(0)
    rows = []
    for engine in args.engines.split(","):
        python = args.ray_python if engine == "ray" else sys.executable
        if not Path(python).exists():
            print(f"{engine}: skipped ({python} not found)", file=sys.stderr)
            continue
        env = dict(os.environ, RAY_ADDRESS="local") if engine == "ray" else dict(os.environ)
        proc = subprocess.run([python, __file__, "--child", engine, "--iterations", str(args.iterations)],
                              capture_output=True, text=True, env=env, timeout=3600)
        line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("SOAK ")), None)
        res = json.loads(line[5:]) if line else {"error": (proc.stderr or proc.stdout)[-400:]}
        print(f"{engine:10s} {res}", file=sys.stderr, flush=True)
        rows.append((engine, res))
    print(f"\n{'engine':10s} {'iterations':>10s} {'seconds':>8s} {'RSS after warm-up MB':>21s} "
          f"{'RSS at end MB':>14s} {'growth MB':>10s}")
    for engine, r in rows:
        if "error" in r:
            print(f"{engine:10s} error: {r['error']}")
            continue
        print(f"{engine:10s} {r['iterations']:>10d} {r['seconds']:>8.1f} {r['rss_after_warmup_mb']:>21.0f} "
              f"{r['rss_end_mb']:>14.0f} {r['growth_mb']:>+10.0f}")


if __name__ == "__main__":
    main()
