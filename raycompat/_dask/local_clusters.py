"""The clusters ``raycompat start`` runs on this machine: their processes and address.

Ray's ``ray start`` writes the cluster's address to ``/tmp/ray/ray_current_cluster``,
which ``ray.init()``, ``ray.init("auto")`` and the CLI read, and ``ray stop`` stops
every Ray process of the machine, found by name. raycompat records what ``raycompat
start`` started, one file per process under ``<temp>/raycompat-<uid>/started/`` (its
pid, its start time from ``/proc``, its role and the scheduler's address), and the
latest address in ``current_cluster``. ``raycompat stop`` stops exactly those processes,
by pid, after checking that each pid still belongs to the process it started (a pid the
system has since given to another process is left alone). ``<temp>`` is
``$RAY_TMPDIR`` if set (Ray's variable for its temporary root), else the system's
temporary directory; ``--temp-dir`` overrides both.
"""

from __future__ import annotations

import json
import os
import signal
import tempfile
import time
from typing import Optional

ADDRESS_FILE = "current_cluster"


def state_dir(temp_dir: Optional[str] = None) -> str:
    base = temp_dir or os.environ.get("RAY_TMPDIR") or tempfile.gettempdir()
    return os.path.join(base, f"raycompat-{os.getuid()}")


def _started_dir(temp_dir=None) -> str:
    return os.path.join(state_dir(temp_dir), "started")


def log_dir(temp_dir=None) -> str:
    path = os.path.join(state_dir(temp_dir), "logs")
    os.makedirs(path, mode=0o700, exist_ok=True)
    return path


# ---------------------------------------------------------------------------- processes


def _stat(pid: int):
    """``(state, start time in clock ticks)`` of a process from ``/proc``, or None."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return fields[0], int(fields[19])


def _alive(pid: int, ticks) -> bool:
    """Is ``pid`` still the process recorded with ``ticks`` (and not a zombie)?"""
    if os.path.isdir("/proc"):
        st = _stat(pid)
        return st is not None and st[0] != "Z" and (ticks is None or st[1] == ticks)
    try:  # no /proc (not Linux): the pid alone
        os.kill(pid, 0)
        return True
    except OSError:
        return False


def record(pid: int, role: str, address: str, temp_dir=None, **extra) -> dict:
    """Remember a process ``raycompat start`` started (``role``: scheduler or worker)."""
    st = _stat(pid)
    rec = {"pid": pid, "ticks": st[1] if st else None, "role": role, "address": address,
           "started": time.time(), **extra}
    path = _started_dir(temp_dir)
    os.makedirs(path, mode=0o700, exist_ok=True)
    tmp = os.path.join(path, f".{pid}.json")
    with open(tmp, "w") as f:
        json.dump(rec, f)
    os.replace(tmp, os.path.join(path, f"{pid}.json"))
    return rec


def records(temp_dir=None) -> list:
    """The recorded processes, oldest first (stale records included: see ``alive``)."""
    path = _started_dir(temp_dir)
    out = []
    for name in os.listdir(path) if os.path.isdir(path) else ():
        if name.endswith(".json") and not name.startswith("."):
            try:
                with open(os.path.join(path, name)) as f:
                    out.append(json.load(f))
            except (OSError, ValueError):
                continue
    return sorted(out, key=lambda r: r.get("started", 0))


def alive(rec: dict) -> bool:
    return _alive(rec["pid"], rec.get("ticks"))


def forget(rec: dict, temp_dir=None) -> None:
    try:
        os.remove(os.path.join(_started_dir(temp_dir), f"{rec['pid']}.json"))
    except OSError:
        pass


def _kill_group(rec: dict) -> None:
    """SIGKILL a started process's group (each is started as its group's leader, so its
    nanny's worker processes are in it). The group id is the leader's pid, which the
    system does not reuse while the group has members."""
    try:
        os.killpg(rec["pid"], signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _group_alive(pgid: int) -> bool:
    """Does a process of group ``pgid`` still run? (Zombies do not count: an orphan's
    is reaped by init whenever init gets to it.)"""
    if not os.path.isdir("/proc"):
        try:
            os.killpg(pgid, 0)
            return True
        except (ProcessLookupError, PermissionError):
            return False
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            if int(fields[2]) == pgid and fields[0] != "Z":
                return True
    return False


def _gone(rec: dict) -> bool:
    """The process and every member of its group have exited."""
    if alive(rec):
        return False
    try:  # our own child (``start --block``): reap it
        os.waitpid(rec["pid"], os.WNOHANG)
    except ChildProcessError:
        pass
    return not _group_alive(rec["pid"])


def _wait(recs: list, seconds: float) -> list:
    deadline = time.monotonic() + seconds
    pending = [r for r in recs if not _gone(r)]
    while pending and time.monotonic() < deadline:
        time.sleep(0.05)
        pending = [r for r in pending if not _gone(r)]
    return pending


#: Seconds a ``dask worker`` command gets to close its worker processes before they get
#: SIGTERM too (a worker running a task waits for it, up to 8 s, before its nanny kills
#: it; Ray's ``ray stop`` does not wait for running tasks either).
WORKER_CLOSE = 1.0


def stop(recs: list, grace: float = 16.0, force: bool = False, temp_dir=None) -> tuple:
    """Stop recorded processes, workers before schedulers: SIGTERM to each (a ``dask``
    command then closes its worker processes itself; those still running a task after
    ``WORKER_CLOSE`` seconds get SIGTERM as well), SIGKILL to the group of those still
    there after ``grace`` seconds, or at once with ``force``. Returns ``(found, stopped
    within the grace period)``; every record given is forgotten."""
    live = [r for r in recs if alive(r)]
    found, graceful = len(live), 0
    for group in ([r for r in live if r["role"] != "scheduler"], [r for r in live if r["role"] == "scheduler"]):
        for r in group:
            if force:
                _kill_group(r)
            else:
                try:
                    os.kill(r["pid"], signal.SIGTERM)
                except ProcessLookupError:
                    pass
        pending = _wait(group, 0 if force else min(grace, WORKER_CLOSE))
        if pending and not force:
            for r in pending:  # the leader is closing: its worker processes may go now
                try:
                    os.killpg(r["pid"], signal.SIGTERM)
                except (ProcessLookupError, PermissionError):
                    pass
            pending = _wait(pending, max(0.0, grace - WORKER_CLOSE))
        graceful += len(group) - len(pending)
        for r in pending:
            _kill_group(r)
        _wait(pending, 5)
    for r in recs:
        forget(r, temp_dir)
    return found, found if force else graceful


# ---------------------------------------------------------------------------- address


def write_address(address: str, temp_dir=None) -> None:
    path = state_dir(temp_dir)
    os.makedirs(path, mode=0o700, exist_ok=True)
    tmp = os.path.join(path, f".{ADDRESS_FILE}.{os.getpid()}")
    with open(tmp, "w") as f:
        f.write(address)
    os.replace(tmp, os.path.join(path, ADDRESS_FILE))


def clear_address(temp_dir=None) -> None:
    try:
        os.remove(os.path.join(state_dir(temp_dir), ADDRESS_FILE))
    except OSError:
        pass


def current_address(temp_dir=None) -> Optional[str]:
    """The address of the latest cluster started (or joined) with ``raycompat start``
    on this machine, while one of the processes it started there still runs; None
    otherwise (a record left by a cluster that is gone is ignored)."""
    try:
        with open(os.path.join(state_dir(temp_dir), ADDRESS_FILE)) as f:
            address = f.read().strip()
    except OSError:
        return None
    if address and any(r.get("address") == address and alive(r) for r in records(temp_dir)):
        return address
    return None


NO_CLUSTER = (
    "Could not find any running Ray instance. Please specify the one to connect to by "
    "setting `--address` flag or `RAY_ADDRESS` environment variable."
)


def find_address(address: Optional[str] = None, temp_dir=None) -> str:
    """The scheduler a CLI command or the state API (without a session) talks to, as Ray
    finds it: ``address``, else ``RAY_ADDRESS``, else ``DASK_SCHEDULER_ADDRESS``, else the
    cluster recorded here; ``tcp://`` is added to a bare ``host:port``."""
    for candidate in (address, os.environ.get("RAY_ADDRESS"), os.environ.get("DASK_SCHEDULER_ADDRESS")):
        if candidate and candidate not in ("auto", "local"):
            address = candidate
            break
    else:
        address = current_address(temp_dir)
    if not address:
        raise ConnectionError(NO_CLUSTER)
    return address if "://" in address else "tcp://" + address
