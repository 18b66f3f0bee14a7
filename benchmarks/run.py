"""Run the benchmark suite: each workload on each engine in its own fresh interpreter,
interleaved (A B C A B C ...), several repeats; prints medians and ratios, writes JSON.

    python benchmarks/run.py [--quick] [--repeats N] [--ray-python .venv-ray/bin/python]
                             [--only workload,workload]

Without ``--ray-python`` (and without ``.venv-ray/bin/python`` present), real Ray is skipped.
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

#: workload -> (metric, better: "low"|"high")
WORKLOADS = {
    "startup": ("seconds", "low"),
    "empty_tasks": ("tasks_per_s", "high"),
    "round_trip": ("ms", "low"),
    "chain": ("tasks_per_s", "high"),
    "large_put_read": ("seconds", "low"),
    "large_result": ("gb_per_s", "high"),
    "sum_10m_value": ("seconds", "low"),
    "sum_10m_put": ("seconds", "low"),
    "sum_100m_value": ("seconds", "low"),
    "cpu_speedup": ("speedup", "high"),
    "nested": ("seconds", "low"),
    "actor_calls": ("calls_per_s", "high"),
    "actor_round_trip": ("ms", "low"),
    "actor_create": ("ms", "low"),
    "generator": ("first_item_ms", "low"),
}
EXTRA = {
    "startup": ["idle_rss_mb"],
    "large_put_read": ["peak_rss_mb"],
    "sum_100m_value": ["peak_rss_mb", "workers_alive"],
    "generator": ["rest_overhead_ms"],
}


#: One run's wall-clock bound: raw Dask's scatter of a 10-million-element list alone takes
#: many minutes (it serializes element by element), so it is reported as a timeout.
RUN_TIMEOUT = 240


def compile_raycompat() -> None:
    """pip compiles an installed package's bytecode (Dask's and Ray's are); an editable
    install caches it at first import, unless PYTHONDONTWRITEBYTECODE is set (it is on
    our CI machine), and then every process compiled raycompat again: +23 ms per import."""
    compileall.compile_dir(str(HERE.parent / "raycompat"), quiet=1)


def run_one(python, engine, workload, quick):
    cmd = [python, str(HERE / "workloads.py"), engine, workload] + (["--quick"] if quick else [])
    env = dict(os.environ)
    if engine == "ray":
        env["RAY_ADDRESS"] = "local"
    # Its own process group, so a timed-out run is stopped with all its worker processes.
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=RUN_TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        return {"error": f"timeout after {RUN_TIMEOUT} s"}
    for line in out.splitlines():
        if line.startswith("BENCH "):
            return json.loads(line[6:])
    return {"error": (err or out)[-500:]}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--repeats", type=int, default=None)
    ap.add_argument("--ray-python", default=None)
    ap.add_argument("--only", default=None)
    ap.add_argument("--out", default=str(HERE / "results" / "latest.json"))
    args = ap.parse_args()
    compile_raycompat()
    repeats = args.repeats or (1 if args.quick else 3)
    ray_python = args.ray_python
    default_ray = HERE.parent / ".venv-ray" / "bin" / "python"
    if ray_python is None and default_ray.exists():
        ray_python = str(default_ray)
    engines = [("raycompat", sys.executable), ("dask", sys.executable)]
    if ray_python:
        engines.append(("ray", ray_python))
    workloads = args.only.split(",") if args.only else list(WORKLOADS)
    raw: dict = {w: {e: [] for e, _ in engines} for w in workloads}
    for w in workloads:
        for _ in range(repeats):
            for e, py in engines:  # interleaved: A B C A B C
                if any("timeout" in str(r.get("error", "")) for r in raw[w][e]):
                    continue  # one timeout is the answer; do not spend the limit again
                res = run_one(py, e, w, args.quick)
                raw[w][e].append(res)
                print(f"{w:16s} {e:10s} {res}", file=sys.stderr, flush=True)
    table = []
    for w in workloads:
        metric, better = WORKLOADS[w]
        med = {}
        for e, _ in engines:
            vals = [r[metric] for r in raw[w][e] if metric in r]
            med[e] = statistics.median(vals) if vals else None
        row = {"workload": w, "metric": metric, "better": better, **{e: med[e] for e in med}}
        for extra in EXTRA.get(w, []):
            for e, _ in engines:
                vals = [r[extra] for r in raw[w][e] if extra in r]
                row[f"{e}_{extra}"] = statistics.median(vals) if vals else None
        table.append(row)
    _print(table, [e for e, _ in engines])
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"time": time.time(), "repeats": repeats, "quick": args.quick,
                               "table": table, "raw": raw}, indent=1))
    print(f"\nwrote {out}")


def _ratio(a, b):
    return f"{a / b:.2f}x" if a is not None and b else "-"


def _print(table, engines):
    head = f"{'workload':16s} {'metric':12s} " + " ".join(f"{e:>10s}" for e in engines)
    head += f" {'rc/dask':>8s}" + (f" {'rc/ray':>8s}" if "ray" in engines else "")
    print(head)
    print("-" * len(head))
    for row in table:
        cells = " ".join(f"{row[e]:10.3f}" if row.get(e) is not None else f"{'>limit':>10s}" for e in engines)
        line = f"{row['workload']:16s} {row['metric']:12s} {cells} {_ratio(row['raycompat'], row['dask']):>8s}"
        if "ray" in engines:
            line += f" {_ratio(row['raycompat'], row['ray']):>8s}"
        print(line)
        for extra in EXTRA.get(row["workload"], []):
            cells = " ".join(
                f"{row[f'{e}_{extra}']:10.1f}" if row.get(f"{e}_{extra}") is not None else f"{'-':>10s}"
                for e in engines
            )
            print(f"{'':16s} {extra:12s} {cells}")


if __name__ == "__main__":
    main()
