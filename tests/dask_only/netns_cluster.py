"""A Dask cluster spread over real (network-namespace) hosts, for multi-host tests.

Each *host* is a Linux network namespace with its own ``lo`` and one veth link, ``eth0``,
whose other end is a port of a bridge that lives in a namespace of its own; every host
has its own address in a private test subnet (``10.213.77.0/24``) and a default route on
``eth0`` (so ``distributed.utils.get_ip()`` finds the host's address, as on a real
machine). Nothing is configured in the root namespace. The hosts:

* ``sched``: ``dask scheduler --host 10.213.77.10``;
* ``w0``, ``w1``, ...: one ``dask worker --host 10.213.77.1N --nthreads 1 --no-nanny`` each
  (no nanny, so a host whose worker is killed stays without one, as a dead machine);
* ``drv``: the driver, ``ip netns exec <drv> python -c <script>`` (``run_driver`` /
  ``start_driver``); it is not a Dask worker, so not a Ray node.

The filesystem is shared, so every host runs this venv's python with the test process's
``sys.path`` as ``PYTHONPATH`` (as ``CLICluster`` does).

A silent host (its link down, its processes gone without a word) is noticed by Dask
either when a TCP connection to it times out (``distributed.comm.timeouts.tcp``, 30 s:
Dask sets keepalive and ``TCP_USER_TIMEOUT`` on every comm) or when the scheduler misses
its heartbeats for ``distributed.scheduler.worker-ttl`` (default 5 minutes, checked every
ttl). The scheduler here runs with ``DASK_DISTRIBUTED__SCHEDULER__WORKER_TTL=5s`` (the
smallest Dask honours for a small cluster is 10 heartbeats, 5 s), which is what an
operator would set to have a vanished machine's work rescheduled within ~5-10 s
(``worker_ttl`` below changes it). Drivers keep Dask's defaults.

Names are unique per run (``rcmh<pid>x<n>-<role>``); ``stop()`` stops every process it
started, by pid (workers, then the scheduler), then deletes the namespaces, which removes
their links and the bridge. ``NetnsUnavailable`` says why namespaces cannot be made
(not root, no ``ip``, ``ip netns add`` refused).
"""

from __future__ import annotations

import itertools
import os
import selectors
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Optional

SUBNET = "10.213.77"
SCHEDULER_PORT = 8786
_counter = itertools.count()


class NetnsUnavailable(RuntimeError):
    """Network namespaces cannot be made here (the text says why)."""


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    if check and proc.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {proc.stderr.strip() or proc.returncode}")
    return proc


def netns_unavailable_reason() -> Optional[str]:
    """Why this machine cannot run the harness, or None."""
    if not sys.platform.startswith("linux"):
        return "network namespaces need Linux"
    if os.geteuid() != 0:
        return "network namespaces need root (ip netns add)"
    if shutil.which("ip") is None:
        return "the ip command (iproute2) is not installed"
    return None


def _dask_cmd() -> list:
    exe = Path(sys.executable).parent / "dask"
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "dask"]


class Host:
    def __init__(self, role: str, netns: str, ip: str):
        self.role = role
        self.netns = netns
        self.ip = ip
        self.procs: list[subprocess.Popen] = []
        self.cut = False

    def __repr__(self):
        return f"Host({self.role}, {self.ip}, {self.netns})"


class NetnsCluster:
    def __init__(self, logs: Path, n_workers: int = 3, worker_ttl: str = "5s"):
        self.logs = Path(logs)
        self.tag = f"rcmh{os.getpid()}x{next(_counter)}"
        self.namespaces: list[str] = []
        self.hosts: dict[str, Host] = {}
        self.worker_ttl = worker_ttl
        self.base_env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
        self.base_env.pop("RAY_ADDRESS", None)
        self.base_env.pop("DASK_SCHEDULER_ADDRESS", None)
        self.drivers: list[subprocess.Popen] = []
        try:
            self._make_network(n_workers)
            self._start_processes()
        except BaseException:
            self.stop()  # nothing made so far outlives a failed start
            raise

    # ------------------------------------------------------------------ network

    def _add_netns(self, role: str) -> str:
        name = f"{self.tag}-{role}"
        proc = _ip("netns", "add", name, check=False)
        if proc.returncode != 0:
            raise NetnsUnavailable(f"ip netns add failed: {proc.stderr.strip() or proc.returncode}")
        self.namespaces.append(name)
        _ip("-n", name, "link", "set", "lo", "up")
        return name

    def _make_network(self, n_workers: int) -> None:
        self.bridge_ns = self._add_netns("net")
        try:
            _ip("-n", self.bridge_ns, "link", "add", "br0", "type", "bridge")
            _ip("-n", self.bridge_ns, "link", "set", "br0", "up")
        except RuntimeError as e:
            raise NetnsUnavailable(f"cannot make a bridge in a namespace: {e}") from None
        roles = [("sched", 10)] + [(f"w{i}", 11 + i) for i in range(n_workers)] + [("drv", 30)]
        for i, (role, octet) in enumerate(roles):
            ns = self._add_netns(role)
            port = f"p{i}"
            try:
                _ip("-n", self.bridge_ns, "link", "add", port, "type", "veth", "peer", "name", "eth0",
                    "netns", ns)
            except RuntimeError as e:
                raise NetnsUnavailable(f"cannot make a veth pair between namespaces: {e}") from None
            _ip("-n", self.bridge_ns, "link", "set", port, "master", "br0")
            _ip("-n", self.bridge_ns, "link", "set", port, "up")
            ip = f"{SUBNET}.{octet}"
            _ip("-n", ns, "addr", "add", f"{ip}/24", "dev", "eth0")
            _ip("-n", ns, "link", "set", "eth0", "up")
            _ip("-n", ns, "route", "add", "default", "dev", "eth0")
            self.hosts[role] = Host(role, ns, ip)

    # ------------------------------------------------------------------ processes

    @property
    def scheduler(self) -> Host:
        return self.hosts["sched"]

    @property
    def driver_host(self) -> Host:
        return self.hosts["drv"]

    @property
    def workers(self) -> list[Host]:
        """The worker hosts that have not been cut off."""
        return [h for r, h in self.hosts.items() if r.startswith("w") and not h.cut]

    @property
    def address(self) -> str:
        return f"tcp://{self.scheduler.ip}:{SCHEDULER_PORT}"

    def _popen(self, host: Host, argv: list, log_name: str, env: Optional[dict] = None) -> subprocess.Popen:
        log = open(self.logs / f"{log_name}.log", "w")
        # ip netns exec execs the command: the pid is the dask process itself.
        proc = subprocess.Popen(["ip", "netns", "exec", host.netns, *argv], stdout=log,
                                stderr=subprocess.STDOUT, env={**self.base_env, **(env or {})},
                                start_new_session=True)
        log.close()
        host.procs.append(proc)
        return proc

    def _wait_for_log(self, proc: subprocess.Popen, log_name: str, text: str, timeout: float) -> None:
        path = self.logs / f"{log_name}.log"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in path.read_text(errors="replace"):
                return
            if proc.poll() is not None:
                break
            time.sleep(0.1)
        raise RuntimeError(f"{log_name} did not log {text!r} within {timeout}s; log:\n"
                           + path.read_text(errors="replace")[-3000:])

    def _start_processes(self) -> None:
        s = self.scheduler
        sched = self._popen(
            s,
            _dask_cmd() + ["scheduler", "--host", s.ip, "--port", str(SCHEDULER_PORT),
                           "--dashboard-address", f"{s.ip}:0"],
            "scheduler",
            env={"DASK_DISTRIBUTED__SCHEDULER__WORKER_TTL": self.worker_ttl},
        )
        self._wait_for_log(sched, "scheduler", "Scheduler at:", 90)
        started = []
        for w in self.workers:
            started.append((w, self._popen(
                w,
                _dask_cmd() + ["worker", self.address, "--host", w.ip, "--nthreads", "1", "--nworkers", "1",
                               "--no-nanny", "--no-dashboard", "--name", w.role],
                w.role,
            )))
        for w, proc in started:
            self._wait_for_log(proc, w.role, "Registered to:", 90)

    # ------------------------------------------------------------------ drivers

    def _driver_argv(self, source: str) -> list:
        return ["ip", "netns", "exec", self.driver_host.netns, sys.executable, "-c", textwrap.dedent(source)]

    def _driver_env(self, env: Optional[dict]) -> dict:
        return {**self.base_env, "RAYCOMPAT_TEST_ENGINE": "raycompat", **(env or {})}

    def run_driver(self, source: str, timeout: float = 120, env: Optional[dict] = None) -> subprocess.CompletedProcess:
        """Run ``source`` with the venv's python on the driver's host."""
        return subprocess.run(self._driver_argv(source), capture_output=True, text=True, timeout=timeout,
                              env=self._driver_env(env))

    def start_driver(self, source: str, env: Optional[dict] = None, stderr_path: Optional[Path] = None):
        """Start ``source`` on the driver's host with pipes to its stdin and stdout (for a
        test that acts while the driver runs); ``stop()`` kills it if it still runs."""
        err = open(stderr_path or self.logs / "driver-stderr.log", "w")
        proc = subprocess.Popen(self._driver_argv(source), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=err, text=True, env=self._driver_env(env), start_new_session=True)
        err.close()
        self.drivers.append(proc)
        return proc

    @staticmethod
    def expect_line(proc: subprocess.Popen, prefix: str, timeout: float, seen: Optional[list] = None) -> str:
        """Read ``proc``'s stdout until a line starting with ``prefix`` (returned); every
        line read goes to ``seen``. Raises ``TimeoutError``/``EOFError`` instead of hanging."""
        deadline = time.monotonic() + timeout
        sel = selectors.DefaultSelector()
        sel.register(proc.stdout, selectors.EVENT_READ)
        try:
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"no line starting with {prefix!r} within {timeout}s")
                if not sel.select(timeout=left):
                    continue
                line = proc.stdout.readline()
                if not line:
                    raise EOFError(f"the driver ended (rc={proc.wait()}) before printing {prefix!r}")
                if seen is not None:
                    seen.append(line)
                if line.startswith(prefix):
                    return line.rstrip("\n")
        finally:
            sel.close()

    # ------------------------------------------------------------------ faults

    def cut_off(self, host: Host) -> None:
        """The host leaves the network: its side of the veth goes down (no FIN, no RST
        reaches anyone)."""
        _ip("-n", host.netns, "link", "set", "eth0", "down")
        host.cut = True

    def kill_processes(self, host: Host) -> None:
        """SIGKILL the processes this harness started on ``host`` (by pid)."""
        for p in host.procs:
            if p.poll() is None:
                p.kill()
            p.wait(timeout=30)

    # ------------------------------------------------------------------ teardown

    def stop(self) -> None:
        for p in self.drivers:
            if p.poll() is None:
                p.kill()
                p.wait(timeout=30)
            for f in (p.stdin, p.stdout):
                if f is not None:
                    f.close()
        # Workers first, each gone before the next signal; the scheduler last.
        order = [h for r, h in self.hosts.items() if r != "sched"] + ([self.scheduler] if "sched" in self.hosts else [])
        for host in order:
            for p in host.procs:
                if p.poll() is None:
                    p.send_signal(signal.SIGTERM)
                try:
                    p.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait(timeout=30)
        # Deleting a namespace deletes its links (a veth pair goes with either end) and
        # the bridge with its own namespace.
        for ns in reversed(self.namespaces):
            _ip("netns", "del", ns, check=False)
        self.namespaces.clear()
