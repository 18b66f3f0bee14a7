"""TLS end to end on real ``dask scheduler --protocol tls`` / ``dask worker`` processes
(reliability plan SC-4, SC-5, SC-6).

The test makes its own certificate authority and certificates with the ``openssl`` CLI
(every file mode 0600, in a private tmp dir): the scheduler, the workers and the driver
each have a certificate signed by the CA; a second CA signs a "rogue" certificate.
Dask's TLS is mutual, so the certificate is also the only authentication a Dask
cluster has.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
import time
from pathlib import Path

import pytest

from conftest import run_script
from dask_only.conftest import CLICluster

OPENSSL = shutil.which("openssl")
pytestmark = pytest.mark.skipif(OPENSSL is None, reason="needs the openssl CLI to make certificates")


def _openssl(cwd: Path, *args: str) -> None:
    # umask 077: the keys are never readable by others, not even for a moment.
    subprocess.run([OPENSSL, *args], cwd=cwd, check=True, capture_output=True, timeout=60,
                   preexec_fn=lambda: os.umask(0o077))


def _make_ca(d: Path, name: str) -> None:
    _openssl(d, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.pem",
             "-days", "2", "-subj", f"/CN=raycompat-test-{name}",
             "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign")


def _make_cert(d: Path, name: str, ca: str) -> None:
    _openssl(d, "req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr",
             "-subj", f"/CN=raycompat-test-{name}")
    ext = d / f"{name}.ext"
    ext.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n"
                   "keyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth,clientAuth\n")
    ext.chmod(0o600)
    _openssl(d, "x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}.key",
             "-CAcreateserial", "-out", f"{name}.pem", "-days", "2", "-extfile", f"{name}.ext")


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    d = tmp_path_factory.mktemp("certs")
    d.chmod(0o700)
    _make_ca(d, "ca")
    _make_ca(d, "other-ca")
    for name in ("scheduler", "worker", "client"):
        _make_cert(d, name, "ca")
    _make_cert(d, "rogue", "other-ca")
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in d.iterdir()}
    assert set(modes.values()) == {0o600}, modes
    return d


class TLSCluster(CLICluster):
    """``dask scheduler --protocol tls`` and two ``dask worker`` processes with the CA's
    certificates (CLICluster's process handling, TLS command lines)."""

    def __init__(self, tmp: Path, certs: Path, n_workers: int = 2):
        from distributed import Client
        from distributed.security import Security

        self.procs = []
        self.logs = tmp
        sched_file = tmp / "scheduler.json"

        def tls(role):
            return ["--tls-ca-file", str(certs / "ca.pem"), "--tls-cert", str(certs / f"{role}.pem"),
                    "--tls-key", str(certs / f"{role}.key")]

        self.procs.append(self._start(
            ["scheduler", "--protocol", "tls", "--host", "127.0.0.1", "--port", "0",
             "--dashboard-address", "127.0.0.1:0", "--scheduler-file", str(sched_file)] + tls("scheduler"),
            "scheduler"))
        deadline = time.monotonic() + 60
        while not sched_file.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        self.address = json.loads(sched_file.read_text())["address"]
        for i in range(n_workers):
            self.procs.append(self._start(
                ["worker", self.address, "--host", "127.0.0.1", "--dashboard-address", "127.0.0.1:0",
                 "--nthreads", "1", "--no-nanny", "--name", f"w{i}"] + tls("worker"), f"worker{i}"))
        self.security = Security(tls_ca_file=str(certs / "ca.pem"), tls_client_cert=str(certs / "client.pem"),
                                 tls_client_key=str(certs / "client.key"), require_encryption=True)
        with Client(self.address, security=self.security, timeout=60, set_as_default=False) as c:
            c.wait_for_workers(n_workers, timeout=60)
            self.worker_addresses = list(c.scheduler_info(n_workers=-1)["workers"])


@pytest.fixture(scope="module")
def tls_cluster(tmp_path_factory, certs):
    cluster = TLSCluster(tmp_path_factory.mktemp("tls-cluster"), certs)
    yield cluster
    cluster.stop()


def _security_src(certs: Path, ca: str = "ca", cert: str = "client") -> str:
    return (f"Security(tls_ca_file={str(certs / f'{ca}.pem')!r}, tls_client_cert={str(certs / f'{cert}.pem')!r}, "
            f"tls_client_key={str(certs / f'{cert}.key')!r}, require_encryption=True)")


def test_tls_end_to_end(tls_cluster, certs):
    """Tasks (also one submitted by a task), an actor, a 50 MiB put/get and a 50 MiB
    result, and worker output, all over mutual TLS; the scheduler and both workers
    listen on tls:// only. Measured: the 50 MiB put + get takes 0.5-0.8 s."""
    assert tls_cluster.address.startswith("tls://127.0.0.1:")
    assert len(tls_cluster.worker_addresses) == 2
    assert all(a.startswith("tls://127.0.0.1:") for a in tls_cluster.worker_addresses), tls_cluster.worker_addresses
    proc = run_script(
        f"""
        import os, time
        import numpy as np
        import raycompat as ray
        from distributed.security import Security

        ctx = ray.init("{tls_cluster.address}", security={_security_src(certs)})
        assert ctx.address_info["address"] == "{tls_cluster.address}", ctx.address_info

        @ray.remote
        def square(x):
            return x * x

        assert ray.get([square.remote(i) for i in range(20)]) == [i * i for i in range(20)]

        @ray.remote
        def outer():  # a task's own client: the worker's TLS settings
            return ray.get(square.remote(7))

        assert ray.get(outer.remote()) == 49

        @ray.remote
        class Counter:
            def __init__(self):
                self.n = 0
            def incr(self):
                self.n += 1
                return self.n

        c = Counter.remote()
        assert ray.get([c.incr.remote() for _ in range(5)]) == [1, 2, 3, 4, 5]

        big = np.arange(50 * 2**20 // 8, dtype=np.int64)  # 50 MiB
        t = time.monotonic()
        ref = ray.put(big)
        back = ray.get(ref)
        put_get = time.monotonic() - t
        assert back.nbytes == 50 * 2**20 and np.array_equal(back, big)

        @ray.remote
        def total(a):
            return int(a.sum()), a.nbytes

        assert ray.get(total.remote(ref)) == (int(big.sum()), big.nbytes)

        @ray.remote
        def ones(n):
            return np.ones(n, dtype=np.uint8)

        assert int(ray.get(ones.remote(50 * 2**20)).sum()) == 50 * 2**20

        @ray.remote
        def shout():
            print("hello over TLS")
            return os.getpid()

        pid = ray.get(shout.remote())
        ray.shutdown()
        print(f"PID {{pid}} PUTGET {{put_get:.2f}}")
        """,
        env={"RAY_COLOR_PREFIX": "0"},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    pid, put_get = re.search(r"^PID (\d+) PUTGET ([\d.]+)$", proc.stdout, re.M).groups()
    print(f"50 MiB put + get over TLS: {put_get} s")
    assert int(pid) in {p.pid for p in tls_cluster.procs[1:]}
    assert f"(shout pid={pid}) hello over TLS\n" in proc.stdout


def test_rays_tls_environment_variables(tls_cluster, certs):
    """Ray's ``RAY_USE_TLS=1`` with ``RAY_TLS_CA_CERT``/``RAY_TLS_SERVER_CERT``/
    ``RAY_TLS_SERVER_KEY`` (Ray's one certificate serves as the client's too): a Ray-style
    ``host:port`` address (here from ``RAY_ADDRESS``) connects over TLS. Without one of
    the files, Ray's own RuntimeError."""
    host_port = tls_cluster.address[len("tls://"):]
    env = {"RAY_USE_TLS": "1", "RAY_TLS_CA_CERT": str(certs / "ca.pem"),
           "RAY_TLS_SERVER_CERT": str(certs / "client.pem"), "RAY_TLS_SERVER_KEY": str(certs / "client.key"),
           "RAY_ADDRESS": host_port}
    proc = run_script(
        """
        import raycompat as ray
        ray.init()
        print("GCS", ray.get_runtime_context().gcs_address)

        @ray.remote
        def f(x):
            return x + 1

        assert ray.get(f.remote(1)) == 2
        ray.shutdown()
        print("OK")
        """,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"GCS {tls_cluster.address}\n" in proc.stdout and "OK" in proc.stdout

    partial = {k: v for k, v in env.items() if k != "RAY_TLS_SERVER_KEY"}
    proc = run_script(
        """
        import os, raycompat as ray
        os.environ.pop("RAY_TLS_SERVER_KEY", None)
        try:
            ray.init()
        except RuntimeError as e:
            print("ERR", e)
        """,
        env=partial,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert ("ERR If the environment variable RAY_USE_TLS is set to true then RAY_TLS_SERVER_CERT, "
            "RAY_TLS_SERVER_KEY and RAY_TLS_CA_CERT must also be set.") in proc.stdout


def test_tls_refusals_are_quick_and_clear(tls_cluster, certs):
    """A driver without the cluster's certificates gets a ConnectionError naming the
    address and what to fix, at once, and its process exits promptly (Dask alone raises
    a TypeError for a client without TLS and then stalls the interpreter's exit for 20 s
    or more). Measured: 0.00-0.02 s per case (asserted: < 2 s, SC-5), 0.5-1 s for the
    whole script with its imports (asserted: < 20 s)."""
    addr = tls_cluster.address
    tcp = "tcp://" + addr[len("tls://"):]

    def files(ca, cert):
        return {"tls_ca_file": str(certs / f"{ca}.pem"), "tls_client_cert": str(certs / f"{cert}.pem"),
                "tls_client_key": str(certs / f"{cert}.key"), "require_encryption": True}

    cases = {
        # name: (address, Security(**kwargs) or no security, words the message must have)
        "no security": (addr, None, ["is a TLS address", "security="]),
        "CA without a client certificate": (addr, {"tls_ca_file": str(certs / "ca.pem"), "require_encryption": True},
                                            ["is a TLS address", "security="]),
        "another CA": (addr, files("other-ca", "rogue"), ["TLS handshake", "certificate", "security="]),
        "certificate the scheduler does not trust": (addr, files("ca", "rogue"),
                                                     ["TLS handshake", "certificate", "security="]),
        "tcp:// to the TLS port": (tcp, None, ["closed the connection", "tls://", "security="]),
    }
    spec = json.dumps([[name, a, sec] for name, (a, sec, _) in cases.items()])
    started = time.monotonic()
    proc = run_script(
        f"""
        import json, time
        import raycompat as ray
        from distributed.security import Security

        for name, address, security in json.loads({spec!r}):
            t = time.monotonic()
            try:
                ray.init(address, security=None if security is None else Security(**security), _connect_timeout=10)
                out = ["connected", time.monotonic() - t, ""]
                ray.shutdown()
            except Exception as e:
                out = [type(e).__name__, time.monotonic() - t, str(e)]
            print("CASE " + json.dumps([name] + out), flush=True)
        """,
        timeout=120,
    )
    whole = time.monotonic() - started
    assert proc.returncode == 0, proc.stderr[-3000:]
    seen = {}
    for line in proc.stdout.splitlines():
        if line.startswith("CASE "):
            name, kind, seconds, message = json.loads(line[len("CASE "):])
            seen[name] = round(seconds, 3)
            words = cases[name][2]
            assert kind == "ConnectionError", (name, kind, message)
            assert cases[name][0] in message and all(w in message for w in words), (name, message)
            assert seconds < 2.0, (name, seconds)
    print("seconds to each refusal:", seen, f"whole script: {whole:.1f} s")
    assert set(seen) == set(cases)
    assert whole < 20.0
