"""The embedded cluster's node ledger (``raycompat._dask.ledger``) under concurrency."""

import struct
import subprocess
import sys
import threading

from raycompat._dask.ledger import Ledger


def test_threads_of_one_process_never_lose_an_update(tmp_path):
    # Fractional-CPU tasks run in seceded threads of one worker process, so the ledger is
    # updated by several threads at once. Before the thread lock, ``flock`` (which only
    # excludes other processes) let two threads read the same counters and write both
    # back: a CPU leaked, and the next 2-CPU task waited in ``acquire`` forever.
    ledger = Ledger.create(str(tmp_path), {"CPU": 2.0})
    start = threading.Barrier(8)

    def churn():
        start.wait()
        for _ in range(1500):
            ledger.acquire({"CPU": 0.25})
            ledger.release({"CPU": 0.25})

    threads = [threading.Thread(target=churn) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads)
    assert ledger.available() == {"CPU": 2.0}
    assert ledger._held == [0.0]
    ledger.close()


def test_available_takes_back_what_a_dead_process_held(tmp_path):
    # A worker killed mid-task (ray.cancel(force=True), an OOM kill) never releases;
    # available_resources() must not report its CPU as held for the cluster's life.
    ledger = Ledger.create(str(tmp_path), {"CPU": 2.0})
    code = (
        "import os, sys; from raycompat._dask.ledger import Ledger; "
        "Ledger(sys.argv[1]).acquire({'CPU': 1.0}); os._exit(0)"
    )
    subprocess.run([sys.executable, "-c", code, ledger.path], check=True, timeout=60)
    assert struct.unpack("d", open(ledger.path, "rb").read())[0] == 1.0  # still counted as held
    assert ledger.available() == {"CPU": 2.0}
    ledger.close()
