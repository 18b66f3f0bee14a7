"""The node ledgers (``raycompat._dask.ledger``): the embedded cluster's under concurrency,
and a joined cluster's host ledger that worker processes join and leave."""

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
    assert struct.unpack("d", open(ledger.path, "rb").read(8))[0] == 1.0  # still counted as held
    assert ledger.available() == {"CPU": 2.0}
    ledger.close()


JOIN = (
    "import os, sys, time; from raycompat._dask.ledger import Ledger; "
    "l = Ledger.join_host(sys.argv[1], float(sys.argv[2])); "
    "l.acquire({'CPU': 1.0, 'GPU': 1.0}); print('joined', flush=True); "
    "sys.stdin.readline(); "
    "os._exit(0) if sys.argv[3] == 'die' else l.leave()"
)


def _member(directory, cpus, how):
    proc = subprocess.Popen([sys.executable, "-c", JOIN, str(directory), str(cpus), how],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "joined"
    return proc


def _finish(proc):
    proc.stdin.write("\n")
    proc.stdin.flush()
    assert proc.wait(timeout=60) == 0


def test_a_host_ledger_is_its_members_threads(tmp_path):
    """Each worker process adds its threads; one that leaves takes them (and what its
    tasks held) out; one that dies is taken out by the next to look; the last to leave
    removes the directory. Names it does not count (GPU: a Dask resource there) pass."""
    directory = tmp_path / "hosts" / "host-a"
    a = _member(directory, 2, "leave")  # holds 1 of its 2
    b = _member(directory, 1, "die")  # holds 1 of its 1
    me = Ledger.join_host(str(directory), 1.0)
    assert me.host_totals() == {"CPU": 4.0}
    assert me.available() == {"CPU": 2.0}
    assert me.beyond_totals({"CPU": 5.0}) and not me.beyond_totals({"CPU": 4.0, "GPU": 8.0})
    _finish(b)  # dies holding 1 CPU: its CPU and its hold both go
    assert me.host_totals() == {"CPU": 3.0} and me.available() == {"CPU": 2.0}
    _finish(a)  # leaves holding 1 CPU: its 2 CPUs go, its hold with them
    assert me.host_totals() == {"CPU": 1.0} and me.available() == {"CPU": 1.0}
    me.leave()
    assert not directory.exists()
    me.close()


def test_several_workers_of_one_process_join_and_leave_one_by_one(tmp_path):
    directory = tmp_path / "hosts" / "host-a"
    ledger = Ledger.join_host(str(directory), 1.0)
    ledger.add_member(2.0)
    assert ledger.host_totals() == {"CPU": 3.0}
    ledger.leave(2.0)
    assert ledger.host_totals() == {"CPU": 1.0} and ledger.joined
    ledger.leave(1.0)
    assert not ledger.joined and not directory.exists()
    ledger.close()


def test_a_host_ledger_whose_members_all_died_is_removed(tmp_path):
    parent = tmp_path / "hosts"
    _finish(_member(parent / "host-a", 1, "die"))
    assert (parent / "host-a").exists()
    other = Ledger.join_host(str(parent / "host-b"), 1.0)  # joining sweeps abandoned hosts
    assert not (parent / "host-a").exists()
    other.leave()
    other.close()
