"""Node-wide accounting of Ray resources: one ledger per host, shared by its workers.

Ray schedules by logical resources per node, and releases a task's CPU while the task
is blocked in ``ray.get``/``ray.wait``, so recursive task trees never deadlock. Dask's
own resources cannot do both: they are per worker process (a ``num_cpus=2`` task cannot
span two one-thread workers) and a seceded task keeps its resources (measured deadlock,
see shared/docs/ray-on-dask.md section 3.3).

So every task's wrapper takes its request from this ledger before the user's code
starts, gives the CPU back while it blocks, and takes it back (even over the limit, as
Ray does) when it resumes. The ledger is a small file of float64 counters under an
``flock``: one host, any number of worker processes, no server. Two ways to make one:

- the embedded cluster (``create``): one worker process per CPU with one thread each (a
  Dask slot is a Ray CPU for the default ``num_cpus=1`` task); the driver writes the
  node's totals (CPU, GPU, custom) once and the workers find the file through
  ``RAYCOMPAT_LEDGER``;
- a cluster raycompat joins (``join_host``, from ``host_ledger.HostLedgerPlugin``):
  every worker process of a host adds its threads to the host's CPU total when it
  starts and takes them away when it leaves or dies (its ``member-<pid>`` file), so a
  host's CPUs are its workers' threads, as ``ray.nodes()`` reports them. GPUs and custom
  resources stay Dask worker resources there (``placement.dask_resources``): the ledger
  counts CPUs only and lets other names through.

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
import shutil
import struct
import threading
import time

ENV_VAR = "RAYCOMPAT_LEDGER"
_EPS = 1e-9


class Ledger:
    """Counters of available resources shared by every process of one host."""

    def __init__(self, path: str):
        self.path = path
        with open(path + ".json") as f:
            meta = json.load(f)
        self.names: list[str] = meta["names"]
        self.totals: dict[str, float] = meta["totals"]
        #: A host ledger counts CPUs only: requests of other names pass (Dask places them).
        self._only_tracked = bool(meta.get("only_tracked"))
        self._index = {n: i for i, n in enumerate(self.names)}
        self._fmt = f"{len(self.names)}d"
        self._fd = os.open(path, os.O_RDWR)
        self._dir = os.path.dirname(path)
        #: What this process holds, mirrored in ``held-<pid>`` so that the holdings of
        #: a worker process that dies mid-task (os._exit, OOM kill) are reclaimed.
        self._held = [0.0] * len(self.names)
        self._held_fd: "int | None" = None
        self._thread_lock = threading.Lock()
        #: What this process adds to the host's totals (a joined cluster's worker).
        self._member: "list | None" = None
        self._left = False

    @classmethod
    def create(cls, directory: str, totals: dict[str, float]) -> "Ledger":
        """The embedded cluster's ledger: fixed totals, written once by the driver."""
        path = os.path.join(directory, "ledger")
        names = sorted(totals)
        with open(path + ".json", "w") as f:
            json.dump({"names": names, "totals": totals}, f)
        values = [float(totals[n]) for n in names]
        with open(path, "wb") as f:
            f.write(struct.pack(f"{2 * len(names)}d", *values, *values))
        return cls(path)

    @classmethod
    def join_host(cls, directory: str, cpus: float) -> "Ledger":
        """Open (or make) the ledger of this host in ``directory`` and add this process's
        ``cpus`` to it, until ``leave()`` or this process's death."""
        os.makedirs(os.path.dirname(directory), mode=0o700, exist_ok=True)
        _remove_abandoned(os.path.dirname(directory))
        path = os.path.join(directory, "ledger")
        # The directory's lock file orders making the ledger, joining it, and removing
        # it when its last member leaves.
        while True:
            os.makedirs(directory, mode=0o700, exist_ok=True)
            try:
                lock_fd = os.open(os.path.join(directory, "create.lock"), os.O_RDWR | os.O_CREAT, 0o600)
            except FileNotFoundError:  # removed by a last member leaving just now
                continue
            fcntl.flock(lock_fd, fcntl.LOCK_EX)
            if os.path.isdir(directory):
                break
            os.close(lock_fd)
        try:
            if not os.path.exists(path + ".json"):
                with open(path, "wb") as f:
                    f.write(struct.pack("2d", 0.0, 0.0))
                with open(path + ".json", "w") as f:
                    json.dump({"names": ["CPU"], "totals": {}, "only_tracked": True}, f)
            ledger = cls(path)
            ledger._join([float(cpus)])
        finally:
            os.close(lock_fd)
        return ledger

    def _member_path(self, pid: int) -> str:
        return os.path.join(self._dir, f"member-{pid}")

    @property
    def joined(self) -> bool:
        """Whether this process counts in a host ledger's totals now."""
        return self._member is not None

    def add_member(self, cpus: float) -> None:
        """Another worker of this process (several in-process workers) adds its CPUs."""
        self._join([float(cpus)])

    def _join(self, contribution: list) -> None:
        with self._thread_lock:
            fcntl.flock(self._fd, fcntl.LOCK_EX)
            try:
                values, totals = self._read_all()
                self._reclaim_dead(values, totals)
                member = [a + b for a, b in zip(self._member or [0.0] * len(contribution), contribution)]
                for i, q in enumerate(contribution):
                    values[i] += q
                    totals[i] += q
                with open(self._member_path(os.getpid()), "wb") as f:
                    f.write(struct.pack(self._fmt, *member))
                self._write_all(values, totals)
                self._member = member
            finally:
                fcntl.flock(self._fd, fcntl.LOCK_UN)

    def leave(self, cpus: "float | None" = None) -> None:
        """Take ``cpus`` of this process out of the host's totals (one of its workers
        closing); once none are left (or ``cpus`` is None), this process leaves, and the
        last member to leave removes the host's directory."""
        with self._thread_lock:
            if self._member is None:
                return
            if cpus is not None and self._member[0] - cpus > _EPS:
                fcntl.flock(self._fd, fcntl.LOCK_EX)
                try:
                    values, totals = self._read_all()
                    values[0] -= cpus
                    totals[0] -= cpus
                    self._member[0] -= cpus
                    with open(self._member_path(os.getpid()), "wb") as f:
                        f.write(struct.pack(self._fmt, *self._member))
                    self._write_all(values, totals)
                finally:
                    fcntl.flock(self._fd, fcntl.LOCK_UN)
                return
            lock_fd = os.open(os.path.join(self._dir, "create.lock"), os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(lock_fd, fcntl.LOCK_EX)
                fcntl.flock(self._fd, fcntl.LOCK_EX)
                try:
                    values, totals = self._read_all()
                    self._reclaim_dead(values, totals)
                    for i, q in enumerate(self._member):
                        values[i] += self._held[i] - q  # what its tasks hold goes too
                        totals[i] -= q
                    self._write_all(values, totals)
                    self._member = None
                    self._left = True  # a task still running here changes nothing more
                    for name in (f"member-{os.getpid()}", f"held-{os.getpid()}"):
                        try:
                            os.unlink(os.path.join(self._dir, name))
                        except OSError:
                            pass
                    last = not any(n.startswith(("member-", "held-")) for n in os.listdir(self._dir))
                finally:
                    fcntl.flock(self._fd, fcntl.LOCK_UN)
                if last:
                    shutil.rmtree(self._dir, ignore_errors=True)
            finally:
                os.close(lock_fd)

    def beyond_totals(self, request: dict[str, float]) -> bool:
        """Whether ``request`` is more than this host has in all (its members now). No
        file read on the hot path: the embedded ledger's totals are fixed, and every
        member of a host ledger brings at least one CPU."""
        if not self._only_tracked:
            return not self.feasible(request)
        if request.get("CPU", 0.0) <= 1.0:
            return False
        return not self._fits(self._read_all()[1], request)

    def feasible(self, request: dict[str, float]) -> bool:
        return all(q <= self.totals.get(n, 0.0) + _EPS for n, q in request.items() if q > 0)

    def _read(self) -> list:
        return list(struct.unpack(self._fmt, os.pread(self._fd, 8 * len(self.names), 0)))

    def _read_all(self) -> tuple:
        n = len(self.names)
        both = struct.unpack(f"{2 * n}d", os.pread(self._fd, 16 * n, 0))
        return list(both[:n]), list(both[n:])

    def _write_all(self, values, totals) -> None:
        os.pwrite(self._fd, struct.pack(f"{2 * len(self.names)}d", *values, *totals), 0)

    def _fits(self, values, request) -> bool:
        for n, q in request.items():
            i = self._index.get(n)
            if i is None:
                if q > 0 and not self._only_tracked:
                    return False
            elif values[i] + _EPS < q:
                return False
        return True

    def _update(self, request: dict[str, float], sign: float, force: bool) -> bool:
        with self._thread_lock:
            return self._update_locked(request, sign, force)

    def _update_locked(self, request: dict[str, float], sign: float, force: bool) -> bool:
        if self._left:
            return True
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        try:
            values = self._read()
            if sign < 0 and not force and not self._fits(values, request):
                values, totals = self._read_all()
                if not self._reclaim_dead(values, totals) or not self._fits(values, request):
                    return False
                self._write_all(values, totals)
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

    def _reclaim_dead(self, values: list, totals: list) -> bool:
        """Give back what dead processes held, and take a dead member's CPUs out of the
        totals (caller holds the lock); True if anything changed."""
        reclaimed = False
        for name in os.listdir(self._dir):
            kind, _, pid_text = name.partition("-")
            if kind not in ("held", "member") or not pid_text.isdigit():
                continue
            pid = int(pid_text)
            if pid == os.getpid() or _alive(pid):
                continue
            path = os.path.join(self._dir, name)
            try:
                with open(path, "rb") as f:
                    amounts = struct.unpack(self._fmt, f.read(8 * len(self.names)))
                os.unlink(path)
            except (OSError, struct.error):
                continue
            sign = 1.0 if kind == "held" else -1.0
            for i, q in enumerate(amounts):
                values[i] += sign * q
                if kind == "member":
                    totals[i] -= q
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
        return dict(zip(self.names, self._reclaimed()[0]))

    def host_totals(self) -> dict[str, float]:
        """The host's totals as the file has them now (its live members' CPUs)."""
        return dict(zip(self.names, self._reclaimed()[1]))

    def _reclaimed(self) -> tuple:
        # The thread lock here too: another thread's flock on the shared file would turn
        # an update's exclusive lock into a shared one, and its unlock would drop it.
        with self._thread_lock:
            fcntl.flock(self._fd, fcntl.LOCK_EX)
            try:
                values, totals = self._read_all()
                if self._reclaim_dead(values, totals):
                    self._write_all(values, totals)
            finally:
                fcntl.flock(self._fd, fcntl.LOCK_UN)
        return values, totals

    def close(self) -> None:
        for fd in (getattr(self, "_fd", None), getattr(self, "_held_fd", None)):
            if fd is not None:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self._fd = self._held_fd = None

    def __del__(self):
        # A placement group's bundle ledger is dropped when the group goes, while a task
        # may still hold it: its files close with the last reference.
        self.close()


def _remove_abandoned(parent: str) -> None:
    """Remove the host ledgers whose every member died (a cluster killed, not closed)."""
    for name in os.listdir(parent):
        directory = os.path.join(parent, name)
        try:
            lock_fd = os.open(os.path.join(directory, "create.lock"), os.O_RDWR)
        except OSError:
            continue
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            pids = [int(n.partition("-")[2]) for n in os.listdir(directory)
                    if n.startswith(("member-", "held-")) and n.partition("-")[2].isdigit()]
            if not any(_alive(pid) for pid in pids):
                shutil.rmtree(directory, ignore_errors=True)
        except OSError:  # busy (a member joining or leaving): not abandoned
            pass
        finally:
            os.close(lock_fd)


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
    """The ledger of the host this worker process accounts on, if any: the embedded
    cluster's (``RAYCOMPAT_LEDGER``) or the one ``HostLedgerPlugin`` joined."""
    global _process_ledger
    if _process_ledger is False:
        path = os.environ.get(ENV_VAR)
        _process_ledger = Ledger(path) if path and os.path.exists(path) else None
    return _process_ledger


def set_process_ledger(ledger: "Ledger | None") -> None:
    global _process_ledger
    _process_ledger = ledger


def on_embedded_cluster() -> bool:
    """Whether this process is a worker of the embedded cluster."""
    return bool(os.environ.get(ENV_VAR))
