"""The worker side of ``runtime_env``: the per-worker cache of unpacked packages and pip
environments (``RuntimeEnvPlugin`` hands a job's packages to every worker). See
``runtime_env.py``."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import importlib
import io
import json
import logging
import os
import platform
import shutil
import subprocess
import sys
import tarfile
import tempfile
import threading
import zipfile
from pathlib import Path
from typing import Callable, Optional

from distributed.diagnostics.plugin import WorkerPlugin

from raycompat import exceptions as rex
from raycompat._dask.runtime_env_records import BASE_PTH, DEFAULT_PIP_OPTIONS, DEFAULT_SETUP_TIMEOUT
from raycompat._dask.runtime_env_records import PipSpec, PreparedEnv, Source

logger = logging.getLogger("raycompat")


# ============================================================================ worker side


#: The worker's own import path, captured before any environment is entered: a pip
#: environment's virtualenv sees the worker's packages through it.
_BASE_PATHS = [p for p in sys.path if p and os.path.isabs(p) and os.path.isdir(p)]
#: Why a plugin could not prepare something on this worker, by package hash or pip key.
setup_errors: dict = {}
_materialize_lock = threading.RLock()
_root: Optional[str] = None


class RuntimeEnvPlugin(WorkerPlugin):
    """Ships one job's packages to every worker, present and future, and prepares them.

    ``setup`` runs on each worker when the plugin is registered and on each worker that
    joins later; it never raises (a raising plugin would stop a joining worker from
    starting): what fails is recorded, and the calls that need it raise
    ``RuntimeEnvSetupError``."""

    def __init__(self, packages: dict, env: PreparedEnv):
        self.packages = packages  # content hash -> (format, bytes)
        self.env = env

    async def setup(self, worker):
        # Unpacking and pip run in a thread: the worker's event loop keeps its heartbeats.
        await asyncio.get_running_loop().run_in_executor(None, self._prepare, worker)

    def _prepare(self, worker):
        root = cache_root(worker)
        sources = {s.key: s for s in self.env.sources()}
        for digest, (fmt, data) in self.packages.items():
            try:
                package_dir(root, sources[digest], data)
            except Exception as e:  # noqa: BLE001 - recorded for the calls that need it
                setup_errors[digest] = getattr(e, "error_message", None) or (
                    f"Failed to unpack runtime_env package {sources[digest].uri}: {e}"
                )
        # The files are on disk now: do not keep a copy in every worker's memory.
        self.packages = {}
        if self.env.pip is not None:
            try:
                install_pip(root, self.env.pip)
            except Exception as e:  # noqa: BLE001 - recorded for the calls that need it
                setup_errors[_pip_key(self.env.pip)] = getattr(e, "error_message", None) or (
                    f"Failed to install the pip requirements {list(self.env.pip.packages)}: {e}"
                )


def cache_root(worker=None) -> str:
    """Where this host's workers keep unpacked packages and pip environments."""
    global _root
    if _root is None:
        if worker is None:
            from distributed import get_worker

            try:
                worker = get_worker()
            except ValueError:
                worker = None
        base = os.path.dirname(worker.local_directory) if worker is not None else tempfile.gettempdir()
        _root = os.path.join(base, "raycompat-runtime-env")
    return _root


@contextlib.contextmanager
def _locked(dst: str):
    """Exclusive use of ``dst`` across the threads and processes of this host."""
    os.makedirs(os.path.dirname(dst), exist_ok=True)
    with _materialize_lock, open(dst + ".lock", "a") as f:
        try:
            import fcntl
        except ImportError:  # Windows: threads of this process only
            fcntl = None
        if fcntl is not None:
            fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            if fcntl is not None:
                fcntl.flock(f, fcntl.LOCK_UN)


def _materialize(dst: str, build: Callable[[str], None]) -> str:
    """Build ``dst`` once per host: ``dst.ready`` marks a complete build."""
    if os.path.exists(dst + ".ready"):
        return dst
    with _locked(dst):
        if not os.path.exists(dst + ".ready"):
            shutil.rmtree(dst, ignore_errors=True)
            os.makedirs(dst)
            build(dst)
            open(dst + ".ready", "w").close()
            importlib.invalidate_caches()
    return dst


def package_dir(root: str, src: Source, data: Optional[bytes] = None) -> str:
    """The directory a package or remote archive is unpacked (or a wheel installed) in."""
    sub = "remote" if src.kind == "remote" else "pkg"
    dst = os.path.join(root, sub, src.key)

    def build(target: str):
        payload = data
        if payload is None:
            payload = _fetch(src) if src.kind == "remote" else _plugin_bytes(src)
        if src.fmt == ".whl":
            _install_wheel(payload, src, target)
        else:
            _unpack(payload, src.fmt, target, strip_top=src.kind == "remote")

    return _materialize(dst, build)


def _plugin_bytes(src: Source) -> bytes:
    from distributed import get_worker

    try:
        plugins = get_worker().plugins.values()
    except ValueError:
        plugins = ()
    for plugin in plugins:
        if isinstance(plugin, RuntimeEnvPlugin) and src.key in plugin.packages:
            return plugin.packages[src.key][1]
    raise rex.RuntimeEnvSetupError(
        f"Failed to download runtime_env file package {src.uri}: this worker has no such "
        "package. raycompat ships the packages of a running job's ray.init(runtime_env=...)."
    )


def _fetch(src: Source) -> bytes:
    import urllib.request

    try:
        with urllib.request.urlopen(src.uri, timeout=DEFAULT_SETUP_TIMEOUT) as r:
            return r.read()
    except Exception as e:  # noqa: BLE001 - any I/O failure is a setup failure
        raise rex.RuntimeEnvSetupError(f"Failed to download runtime_env package {src.uri}: {e}") from e


def _unpack(data: bytes, fmt: str, target: str, strip_top: bool) -> None:
    if fmt == ".zip":
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            zf.extractall(target)  # drops absolute and ".." components
            for info in zf.infolist():
                mode = info.external_attr >> 16
                if mode and not info.is_dir():
                    os.chmod(os.path.join(target, info.filename), mode & 0o777)
    else:
        with tarfile.open(fileobj=io.BytesIO(data)) as tf:
            if hasattr(tarfile, "data_filter"):
                tf.extractall(target, filter="data")
            else:  # Python without extraction filters: refuse escaping members ourselves
                base = os.path.realpath(target)
                for m in tf.getmembers():
                    dest = os.path.realpath(os.path.join(target, m.name))
                    if not dest.startswith(base + os.sep) or m.issym() or m.islnk():
                        raise ValueError(f"unsafe path in archive: {m.name}")
                tf.extractall(target)
    if strip_top:  # Ray: a remote archive's single top-level directory is dropped
        entries = [e for e in os.listdir(target) if e != "__MACOSX"]
        if len(entries) == 1 and os.path.isdir(os.path.join(target, entries[0])):
            top = os.path.join(target, entries[0])
            moved = top + ".raycompat-top"
            os.rename(top, moved)
            for name in os.listdir(moved):
                os.rename(os.path.join(moved, name), os.path.join(target, name))
            os.rmdir(moved)
            shutil.rmtree(os.path.join(target, "__MACOSX"), ignore_errors=True)


def _run(cmd: list, cwd: str, timeout: Optional[float], what: str) -> str:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    try:
        proc = subprocess.run(
            cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True, timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        raise rex.RuntimeEnvSetupError(
            f"{what}: `{' '.join(cmd)}` did not finish within {timeout:g} s (raise it with "
            "runtime_env={'config': {'setup_timeout_seconds': ...}})."
        ) from None
    if proc.returncode != 0:
        lines = proc.stdout.splitlines()
        errors = [ln.strip() for ln in lines if "ERROR:" in ln]
        raise rex.RuntimeEnvSetupError(
            f"{what}: `{' '.join(cmd)}` exited with status {proc.returncode}.\n"
            + ("".join(e + "\n" for e in errors))
            + "Last 50 lines of its output:\n"
            + "\n".join(lines[-50:])
        )
    return proc.stdout


def _install_wheel(data: bytes, src: Source, target: str) -> None:
    """Ray: ``pip install <wheel> --target=<dir>``."""
    name = src.uri.split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1] or f"{src.key}.whl"
    with tempfile.TemporaryDirectory() as tmp:
        wheel = os.path.join(tmp, name)
        with open(wheel, "wb") as f:
            f.write(data)
        _run(
            [sys.executable, "-m", "pip", "install", wheel, f"--target={target}", *DEFAULT_PIP_OPTIONS],
            tmp, DEFAULT_SETUP_TIMEOUT, f"Failed to install py_modules wheel {src.uri}",
        )


def _pip_key(spec: PipSpec) -> str:
    ident = [list(spec.packages), spec.options, spec.pip_version, spec.pip_check,
             sys.executable, sys.version, _BASE_PATHS]
    return hashlib.sha1(json.dumps(ident).encode()).hexdigest()[:32]


def install_pip(root: str, spec: PipSpec) -> list[str]:
    """The ``sys.path`` entries of the pip environment for ``spec``, built on first use."""
    key = _pip_key(spec)
    if key in setup_errors:
        raise rex.RuntimeEnvSetupError(setup_errors[key])
    what = f"Failed to install the pip requirements {list(spec.packages)} on {platform.node()}"

    def build(dst: str):
        venv = os.path.join(dst, "virtualenv")
        _run([sys.executable, "-m", "venv", "--without-pip", venv], dst, spec.timeout, what)
        python = os.path.join(venv, "Scripts", "python.exe") if os.name == "nt" else os.path.join(venv, "bin", "python")
        sites = json.loads(_run(
            [python, "-c", "import json, sysconfig; print(json.dumps(sorted({sysconfig.get_path('purelib'), sysconfig.get_path('platlib')})))"],
            dst, spec.timeout, what,
        ))
        with open(os.path.join(sites[0], BASE_PTH), "w") as f:
            f.write("".join(p + "\n" for p in _BASE_PATHS))
        requirements = os.path.join(dst, "requirements.txt")
        with open(requirements, "w") as f:
            f.write("".join(p + "\n" for p in spec.packages))
        pip = [sys.executable, "-m", "pip", "--python", python]
        if spec.pip_version:
            _run(pip + ["install", "--disable-pip-version-check", f"pip{spec.pip_version}"], dst, spec.timeout, what)
            pip = [python, "-m", "pip"]
        options = list(spec.options) if spec.options is not None else list(DEFAULT_PIP_OPTIONS)
        _run(pip + ["install", "-r", requirements, *options], dst, spec.timeout, what)
        if spec.pip_check:
            _run(pip + ["check", "--disable-pip-version-check"], dst, spec.timeout, what)
        with open(os.path.join(dst, "sites.json"), "w") as f:
            json.dump(sites, f)

    dst = _materialize(os.path.join(root, "pip", key), build)
    with open(os.path.join(dst, "sites.json")) as f:
        sites = json.load(f)
    paths = list(sites)
    for site in sites:  # what installed .pth files add (not ours, not import lines)
        for pth in sorted(Path(site).glob("*.pth")):
            if pth.name == BASE_PTH:
                continue
            for line in pth.read_text().splitlines():
                line = line.strip()
                if line and not line.startswith(("#", "import ", "import\t")):
                    full = os.path.join(site, line)
                    if os.path.isdir(full) and full not in paths:
                        paths.append(full)
    return paths
