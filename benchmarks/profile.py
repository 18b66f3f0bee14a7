"""Profile one workload on one engine with py-spy (driver and worker processes).

    python benchmarks/profile.py ENGINE WORKLOAD [--quick] [--out DIR]

Runs ``workloads.py ENGINE WORKLOAD`` under ``py-spy record --subprocesses`` (``pip
install py-spy``) and writes ``DIR/ENGINE-WORKLOAD.txt``: per process and thread, the
busiest functions by own samples and by inclusive samples. Compare the same workload on
``raycompat`` and ``dask`` to see what the facade adds.
"""

from __future__ import annotations

import argparse
import collections
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent


def summarize(raw: Path, top: int = 25) -> str:
    own: collections.Counter = collections.Counter()
    inclusive: collections.Counter = collections.Counter()
    per_thread: collections.Counter = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        if not line.strip():
            continue
        stack, n = line.rsplit(" ", 1)
        n = int(n)
        frames = stack.split(";")
        # py-spy --subprocesses: "process <pid>:<cmd>;thread (<tid>): <name>;frame;..."
        procs = [f for f in frames if f.startswith("process")]
        thread = next((f for f in frames if f.startswith("thread")), "")
        where = f"{procs[-1][:70] if procs else ''} {thread[:40]}"
        calls = [f for f in frames if not f.startswith(("process", "thread"))]
        total += n
        per_thread[where] += n
        if calls:
            own[calls[-1][:120]] += n
        for f in set(calls):
            inclusive[f.split(" (")[0]] += n
    out = [f"{total} samples", "", "samples per process/thread:"]
    out += [f"{n:7d}  {w}" for w, n in per_thread.most_common(10)]
    out += ["", "own samples (where the time is spent):"]
    out += [f"{n:7d}  {f}" for f, n in own.most_common(top)]
    out += ["", "inclusive samples (what the time is spent for):"]
    out += [f"{n:7d}  {f}" for f, n in inclusive.most_common(top * 2)]
    return "\n".join(out) + "\n"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("engine")
    ap.add_argument("workload")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out", default=str(HERE / "profiles"))
    ap.add_argument("--rate", type=int, default=200)
    args = ap.parse_args()
    from run import compile_raycompat

    compile_raycompat()
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "raw.txt"
        cmd = [py_spy, "record", "--subprocesses", "--threads", "-r", str(args.rate), "-f", "raw",
               "-o", str(raw), "--", sys.executable, str(HERE / "workloads.py"), args.engine, args.workload]
        if args.quick:
            cmd.append("--quick")
        subprocess.run(cmd, check=True, capture_output=True, timeout=600)
        text = summarize(raw)
    target = out_dir / f"{args.engine}-{args.workload}.txt"
    target.write_text(f"py-spy: {args.engine} {args.workload}{' --quick' if args.quick else ''}\n\n{text}")
    print(f"wrote {target}")


if __name__ == "__main__":
    main()
