"""Node-wide accounting of Ray resources (CPU, GPU, custom) on the embedded cluster.

Ray schedules by logical resources per node, and releases a task's CPU while the task
is blocked in ``ray.get``/``ray.wait``, so recursive task trees never deadlock. Dask's
own resources cannot do both: they are per worker process (a ``num_cpus=2`` task cannot
span two one-thread workers) and a seceded task keeps its resources (measured deadlock,
see shared/docs/ray-on-dask.md section 3.3).

So the embedded cluster runs one worker process per CPU with one thread each (a Dask
slot is a Ray CPU for the default ``num_cpus=1`` task), and every task's wrapper takes
its request from this ledger before the user's code starts, gives the CPU back while it
blocks, and takes it back (even over the limit, as Ray does) when it resumes. The ledger
is a small file of float64 counters under an ``flock``: one host, any number of worker
processes, no server. Clusters raycompat only connects to have no ledger (see README).

An ``flock`` excludes other processes only: threads of one process share its open file,
so each process also takes a thread lock. Without it, two fractional-CPU tasks of one
worker (each in its own seceded thread) could both read the counters and both write
them back, losing one update: the CPU leaked for the cluster's life, and the next task
that needed it waited in ``acquire`` forever (1 run in about 12 of ``test_resources``).
"""

from __future__ import annotations

import fcntl
import json
import os
import struct
import threading
import time

ENV_VAR = "RAYCOMPAT_LEDGER"
_EPS = 1e-9


class Ledger:
    """Counters of available resources shared by every process of one embedded cluster."""

    def __init__(self, path: str):
        self.path = path
        with open(path + ".json") as f:
            meta = json.load(f)
        self.names: list[str] = meta["names"]
        self.totals: dict[str, float] = meta["totals"]
        self._index = {n: i for i, n in enumerate(self.names)}
        self._fmt = f"{len(self.names)}d"
        self._fd = os.open(path, os.O_RDWR)
        self._dir = os.path.dirname(path)
        #: What this process holds, mirrored in ``held-<pid>`` so that the holdings of
        #: a worker process that dies mid-task (os._exit, OOM kill) are reclaimed.
        self._held = [0.0] * len(self.names)
        self._held_fd: "int | None" = None
        self._thread_lock = threading.Lock()

    @classmethod
    def create(cls, directory: str, totals: dict[str, float]) -> "Ledger":
        path = os.path.join(directory, "ledger")
        names = sorted(totals)
        with open(path + ".json", "w") as f:
            json.dump({"names": names, "totals": totals}, f)
        with open(path, "wb") as f:
            f.write(struct.pack(f"{len(names)}d", *(float(totals[n]) for n in names)))
        return cls(path)

    def feasible(self, request: dict[str, float]) -> bool:
        return all(q <= self.totals.get(n, 0.0) + _EPS for n, q in request.items() if q > 0)

    def _read(self) -> list:
        return list(struct.unpack(self._fmt, os.pread(self._fd, 8 * len(self.names), 0)))

    def _fits(self, values, request) -> bool:
        for n, q in request.items():
            i = self._index.get(n)
            if (i is None and q > 0) or (i is not None and values[i] + _EPS < q):
                return False
        return True

    def _update(self, request: dict[str, float], sign: float, force: bool) -> bool:
        with self._thread_lock:
            return self._update_locked(request, sign, force)

    def _update_locked(self, request: dict[str, float], sign: float, force: bool) -> bool:
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        try:
            values = self._read()
            if sign < 0 and not force and not self._fits(values, request):
                if not self._reclaim_dead(values) or not self._fits(values, request):
                    return False
            for n, q in request.items():
                i = self._index.get(n)
                if i is not None:
                    values[i] += sign * q
                    self._held[i] -= sign * q
            os.pwrite(self._fd, struct.pack(self._fmt, *values), 0)
            self._write_held()
            return True
        finally:
            fcntl.flock(self._fd, fcntl.LOCK_UN)

    def _held_path(self, pid: int) -> str:
        return os.path.join(self._dir, f"held-{pid}")

    def _write_held(self) -> None:
        # One small file per process, opened once and rewritten in place: a pwrite per
        # change, no file creation or JSON on the hot path.
        if self._held_fd is None or self._held_pid != os.getpid():
            self._held_fd = os.open(self._held_path(os.getpid()), os.O_RDWR | os.O_CREAT, 0o600)
            self._held_pid = os.getpid()
        os.pwrite(self._held_fd, struct.pack(self._fmt, *self._held), 0)

    def _reclaim_dead(self, values: list) -> bool:
        """Give back what dead processes held (caller holds the lock); True if any."""
        reclaimed = False
        for name in os.listdir(self._dir):
            if not name.startswith("held-"):
                continue
            pid = int(name[5:])
            if pid == os.getpid() or _alive(pid):
                continue
            path = os.path.join(self._dir, name)
            try:
                with open(path, "rb") as f:
                    held = struct.unpack(self._fmt, f.read(8 * len(self.names)))
                os.unlink(path)
            except (OSError, struct.error):
                continue
            for i, h in enumerate(held):
                values[i] += h
            reclaimed = True
        return reclaimed

    def acquire(self, request: dict[str, float], force: bool = False, give_up=None) -> bool:
        """Take ``request``, waiting until it fits (``force`` takes it even over the limit);
        False, without taking it, once ``give_up()`` is true (a task cancelled meanwhile)."""
        delay = 0.0005
        while not self._update(request, -1.0, force):
            if give_up is not None and give_up():
                return False
            time.sleep(delay)
            delay = min(delay * 2, 0.02)
        return True

    def stop_updates(self) -> None:
        """Before this process exits at once: wait for an update in flight, allow no more
        (the counters and this process's ``held`` file must agree for the reclaim)."""
        self._thread_lock.acquire()

    def release(self, request: dict[str, float]) -> None:
        self._update(request, +1.0, True)

    def available(self) -> dict[str, float]:
        """The counters, after taking back what dead processes held: a worker killed
        mid-task (``ray.cancel(force=True)``, OOM) is otherwise reclaimed only when a
        task needs its share, and ``available_resources()`` would report it held."""
        # The thread lock here too: another thread's flock on the shared file would turn
        # an update's exclusive lock into a shared one, and its unlock would drop it.
        with self._thread_lock:
            fcntl.flock(self._fd, fcntl.LOCK_EX)
            try:
                values = self._read()
                if self._reclaim_dead(values):
                    os.pwrite(self._fd, struct.pack(self._fmt, *values), 0)
            finally:
                fcntl.flock(self._fd, fcntl.LOCK_UN)
        return dict(zip(self.names, values))

    def close(self) -> None:
        try:
            os.close(self._fd)
        except OSError:
            pass


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


_process_ledger: "Ledger | None | bool" = False


def process_ledger() -> "Ledger | None":
    """The ledger of the embedded cluster this worker process belongs to, if any."""
    global _process_ledger
    if _process_ledger is False:
        path = os.environ.get(ENV_VAR)
        _process_ledger = Ledger(path) if path and os.path.exists(path) else None
    return _process_ledger
