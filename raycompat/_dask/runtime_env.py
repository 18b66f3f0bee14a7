"""``runtime_env`` ``working_dir``, ``py_modules`` and ``pip`` on Dask workers.

What Ray 2.60 does: at ``ray.init`` the driver zips a local ``working_dir`` and each local
``py_modules`` entry (honouring ``.gitignore``/``.rayignore`` files, the ``excludes`` list
and, for ``working_dir``, the default excludes ``.git,.venv,venv,__pycache__``), names each
zip by a hash of its contents (``gcs://_ray_pkg_<hash>.zip``) and uploads it to the GCS
(512 MiB at most). Every node unpacks a package once into its runtime-resources cache.
Workers of the job run with the working directory as their current directory, and with
the ``py_modules`` directories and the working directory first on ``PYTHONPATH``. ``pip``
builds a virtualenv per distinct requirement list (inheriting the node's packages) and
runs the workers in it. A task or actor may name its own ``working_dir``/``py_modules``
(URIs only: ``local://``, ``file://``, ``https://``, or the job's ``gcs://`` packages) and
``pip``; the rest is inherited from the job or the parent task, key by key.

How raycompat maps it:

- **Shipping**: ``ray.init`` packs the same files the same way and registers one
  ``RuntimeEnvPlugin`` (a Dask ``WorkerPlugin``, named after the job) holding the packed
  bytes. The scheduler keeps it and runs its ``setup`` on every worker, including workers
  that join later, which unpacks each package into a cache directory named by its hash
  (``<worker local directory>/../raycompat-runtime-env``: shared by the workers of a host,
  content-addressed, so two workers or two jobs never unpack the same package twice).
  A job-level ``pip`` is installed there too, at ``init`` (Ray's ``eager_install``).
  ``ray.shutdown()`` removes the plugin from a cluster raycompat joined. Task-level
  ``local://`` directories are used in place; ``file://``/``http(s)://`` archives are
  fetched by the first call that needs them (Ray: ``s3://``, ``gs://``... too).
- **Applying**: the task wrapper and the actor shell enter the environment around each
  call (``enter``): ``chdir`` into the working directory, the ``py_modules`` directories,
  the working directory and the ``pip`` site directory first on ``sys.path`` and
  ``PYTHONPATH``; all restored after the call. Job-level and task-level environments are
  applied the same way, per call: a worker of a cluster shared by several drivers never
  keeps one job's directory as its current directory. Child tasks and actors inherit the
  environment of the task that submits them.
- **pip**: Ray's per-environment virtualenv, adapted to a worker process that cannot
  switch interpreters: ``python -m venv --without-pip`` per distinct requirement list (and
  worker interpreter), made to see the worker's own packages through a ``.pth`` file, then
  the worker's pip installs into it (``pip --python <venv> install -r requirements.txt``,
  Ray's default options ``--disable-pip-version-check --no-cache-dir``). As in Ray,
  requirements the worker already satisfies are not reinstalled, other versions shadow the
  worker's own only inside the environment, and nothing is installed into the worker's
  environment. We did not use distributed's ``PipInstall`` plugin: it installs into the
  worker's own environment, for every job and task on the cluster, and may restart
  workers, which is what a Dask operator would not expect from one Ray task's option.
  Nor ``pip install --target``: pip then ignores what is installed already and would
  reinstall (download) every dependency the worker has.
  A failed install raises Ray's ``RuntimeEnvSetupError`` from ``ray.get``, naming the
  requirements, pip's ``ERROR`` lines and the tail of its output.

Differences (process-global state; Ray runs each environment in worker processes of its
own): the current directory, ``sys.path`` and ``PYTHONPATH`` belong to the worker process.
The embedded cluster runs one task at a time per worker process, so a task sees exactly
its environment; calls that overlap in one process (several Dask threads per worker, a
task blocked in ``ray.get`` or holding ``num_cpus < 1`` while another starts, concurrent
actors of different environments on one worker) see each other's directories. Modules a
call imported from its environment stay imported while that environment's calls (or its
actors) live; the first call of another environment drops them from ``sys.modules``.
Nothing is garbage-collected: the embedded cluster's cache goes with its session
directory at ``shutdown``; a joined cluster's stays in its workers' scratch space.
"""

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
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import threading
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional
from urllib.parse import urlparse

from distributed.diagnostics.plugin import WorkerPlugin

from raycompat import exceptions as rex
from raycompat._dask import context as _context
from raycompat._dask import process_env
from raycompat._private import runtime_env as _validation

logger = logging.getLogger("raycompat")

#: Ray's upload limit (its gRPC message size), and its per-file warning.
MAX_PACKAGE_SIZE = int(os.environ.get("RAY_max_grpc_message_size", 512 * 1024 * 1024))
FILE_SIZE_WARNING = 10 * 1024 * 1024
DEFAULT_EXCLUDES = ".git,.venv,venv,__pycache__"
DEFAULT_PIP_OPTIONS = ("--disable-pip-version-check", "--no-cache-dir")
DEFAULT_SETUP_TIMEOUT = 600.0
_FETCHABLE = ("http", "https", "file")
_BASE_PTH = "_raycompat_base.pth"


@dataclass(frozen=True)
class Source:
    """One ``working_dir`` or ``py_modules`` entry, as a worker finds it."""

    kind: str  # "pkg": shipped by a job's plugin; "local": a directory on every node; "remote": an archive URL
    uri: str  # what Ray shows: gcs://_ray_pkg_<hash>.zip, local:///path, https://host/x.zip
    key: str  # pkg: content hash; local: the path; remote: a hash of the URI
    fmt: str = ".zip"  # archive format (".whl": a wheel, installed with pip --target)


@dataclass(frozen=True)
class PipSpec:
    packages: tuple
    pip_check: bool = False
    options: Optional[tuple] = None
    pip_version: Optional[str] = None
    timeout: Optional[float] = DEFAULT_SETUP_TIMEOUT


@dataclass(frozen=True)
class PreparedEnv:
    """The part of a ``runtime_env`` applied around a call (``env_vars`` travel apart)."""

    working_dir: Optional[Source] = None
    py_modules: tuple = ()
    pip: Optional[PipSpec] = None

    def sources(self):
        return ((self.working_dir,) if self.working_dir else ()) + self.py_modules


# ============================================================================ driver side


def setup_job(session) -> None:
    """``ray.init(runtime_env=...)``: pack the job's files and register the plugin that
    ships them (and installs its ``pip`` requirements) on every worker."""
    env = session.runtime_env or {}
    if all(env.get(k) is None for k in ("working_dir", "py_modules", "pip")):
        return
    packages: dict = {}
    include_gitignore = os.environ.get("RAY_RUNTIME_ENV_IGNORE_GITIGNORE", "0") != "1"
    user_excludes = list(env.get("excludes") or [])
    rewritten = {k: v for k, v in env.items() if k != "excludes"}
    py_modules: tuple = ()
    if env.get("py_modules") is not None:
        py_modules = tuple(
            _job_source(entry, "py_modules", user_excludes, include_gitignore, packages)
            for entry in _validation.job_py_modules(env["py_modules"])
        )
        rewritten["py_modules"] = [s.uri for s in py_modules]
    working_dir = None
    if env.get("working_dir") is not None:
        defaults = os.environ.get("RAY_OVERRIDE_RUNTIME_ENV_DEFAULT_EXCLUDES", DEFAULT_EXCLUDES)
        excludes = [x.strip() for x in defaults.split(",") if x.strip()] + user_excludes
        working_dir = _job_source(
            _validation.job_working_dir(env["working_dir"]), "working_dir", excludes, include_gitignore, packages
        )
        rewritten["working_dir"] = working_dir.uri
    prepared = PreparedEnv(working_dir, py_modules, _pip_spec(env))
    name = f"raycompat-runtime-env-{session.job_id}"
    session.client.register_plugin(RuntimeEnvPlugin(packages, prepared), name=name)
    session.prepared_runtime_env = prepared
    session.runtime_env_plugin = name
    session.runtime_env = rewritten


def teardown_job(session) -> None:
    """``ray.shutdown()``: workers of a cluster we only joined stop shipping our files."""
    name = session.runtime_env_plugin
    if name is None or session.owned:
        return
    try:
        session.client.run_on_scheduler(_forget_plugin, name=name)
    except Exception as e:  # noqa: BLE001 - best effort: the scheduler may be gone
        logger.debug("could not unregister %s: %s", name, e)


def _forget_plugin(dask_scheduler, name: str) -> None:
    # Not Client.unregister_worker_plugin: it waits for every worker's teardown (ours has
    # nothing to do), up to a connect timeout for a worker that is going away.
    dask_scheduler.worker_plugins.pop(name, None)


_for_call_cache: dict = {}


def for_call(session, runtime_env: Optional[dict]) -> Optional[PreparedEnv]:
    """The environment a task or actor created now runs in: its own ``working_dir``,
    ``py_modules`` and ``pip`` over the job's (driver) or its parent's (inside a task)."""
    base = session.prepared_runtime_env if session is not None else current()
    if not runtime_env:
        return base
    wd, mods, pip = (runtime_env.get(k) for k in ("working_dir", "py_modules", "pip"))
    if wd is None and mods is None and pip is None:
        return base
    key = (base, json.dumps([wd, mods, pip, runtime_env.get("config")], sort_keys=True, default=str))
    hit = _for_call_cache.get(key)
    if hit is not None:
        return hit
    known = {s.uri: s for s in (base.sources() if base is not None else ())}
    merged = PreparedEnv(
        _uri_source(wd, "working_dir", known) if wd is not None else (base.working_dir if base else None),
        tuple(_uri_source(m, "py_modules", known) for m in mods) if mods is not None else (base.py_modules if base else ()),
        _pip_spec(runtime_env) if pip is not None else (base.pip if base else None),
    )
    if len(_for_call_cache) > 256:
        _for_call_cache.clear()
    _for_call_cache[key] = merged
    return merged


def current() -> Optional[PreparedEnv]:
    """The environment of the task or actor call running in this thread, if any."""
    ctx = _context.current_task()
    if ctx is None:
        return None
    env = ctx.runtime_env
    actor = ctx.actor
    if env is None and actor is not None:
        env = actor.meta.get("runtime_env")
    return env


def _pip_spec(runtime_env: dict) -> Optional[PipSpec]:
    if runtime_env.get("pip") is None:
        return None
    parsed = _validation.parse_pip(runtime_env["pip"])
    if parsed is None:
        return None
    config = runtime_env.get("config") or {}
    timeout = (
        config.get("setup_timeout_seconds", DEFAULT_SETUP_TIMEOUT)
        if isinstance(config, dict)
        else getattr(config, "setup_timeout_seconds", DEFAULT_SETUP_TIMEOUT)
    )
    options = parsed.get("pip_install_options")
    return PipSpec(
        tuple(parsed["packages"]),
        bool(parsed.get("pip_check")),
        tuple(options) if options is not None else None,
        parsed.get("pip_version"),
        None if timeout is None or timeout < 0 else float(timeout),
    )


def _uri_source(uri: str, field: str, known: dict) -> Source:
    """A task/actor-level entry (already validated: a URI)."""
    scheme = urlparse(uri).scheme
    if scheme == "local":
        return Source("local", uri, _validation.parse_uri(uri)[1])
    if scheme == "gcs":
        if uri in known:
            return known[uri]
        raise rex.RuntimeEnvSetupError(
            f"Failed to fetch runtime_env package {uri}: raycompat knows only the packages "
            "this job uploaded (see ray.get_runtime_context().runtime_env)."
        )
    if scheme not in _FETCHABLE:
        raise rex.RuntimeEnvSetupError(
            f"raycompat fetches runtime_env packages over {', '.join(s + '://' for s in _FETCHABLE)} "
            f"only; got {uri}. Serve the archive over HTTP(S) or from a filesystem every worker mounts."
        )
    fmt = ".whl" if uri.endswith(".whl") else (
        _validation.package_extension(uri.split("?", 1)[0], _validation.PY_MODULES_EXTENSIONS) or ".zip"
    )
    return Source("remote", uri, hashlib.sha1(uri.encode()).hexdigest(), fmt)


def _job_source(entry: str, field: str, excludes, include_gitignore: bool, packages: dict) -> Source:
    """A job-level entry: a URI as at task level, or a local path packed for upload."""
    if not _validation.is_path(entry) and urlparse(entry).scheme in _validation.PROTOCOLS:
        return _uri_source(entry, field, {})
    path = Path(entry)
    what = f"working_dir {entry}" if field == "working_dir" else f"module {entry}"
    try:
        if path.is_dir():
            data, digest = pack_directory(path, excludes, include_gitignore, field == "py_modules")
            fmt, uri = ".zip", f"gcs://_ray_pkg_{digest}.zip"
        elif path.suffix == ".py":
            data, digest = pack_directory(path, [], False, False)
            fmt, uri = ".zip", f"gcs://_ray_pkg_{digest}.zip"
        else:  # a .whl module, or a working_dir archive (validated)
            data = path.read_bytes()
            digest = hashlib.sha1(data).hexdigest()
            fmt = ".whl" if path.suffix == ".whl" else _validation.package_extension(
                path.name, _validation.WORKING_DIR_EXTENSIONS
            )
            uri = f"gcs://{path.name}" if fmt == ".whl" else f"gcs://_ray_pkg_{digest}{fmt}"
        if len(data) >= MAX_PACKAGE_SIZE:
            raise ValueError(
                f"Package size ({_mib(len(data))}) exceeds the maximum size of "
                f"{_mib(MAX_PACKAGE_SIZE)}. To exclude large files, add them to '.gitignore' or "
                "'.rayignore' files, or use the 'excludes' option in the runtime_env, or provide "
                "a URI of a remote zip file."
            )
    except (OSError, ValueError) as e:
        raise rex.RuntimeEnvSetupError(f"Failed to upload {what} to the Ray cluster: {e}") from e
    packages[digest] = (fmt, data)
    return Source("pkg", uri, digest, fmt)


def _mib(n: float) -> str:
    return f"{n / 1024**2:.2f}MiB"


# ---------------------------------------------------------------------------- packing


def _glob_regex(pattern: str):
    """One ``.gitignore`` line as ``(regex, negate)`` (gitwildmatch, as Ray's pathspec)."""
    line = pattern.rstrip("\n")
    if not line.strip() or line.startswith("#"):
        return None
    line = line.rstrip()
    negate = line.startswith("!")
    if negate:
        line = line[1:]
    if line.startswith("\\"):
        line = line[1:]
    dir_only = line.endswith("/")
    anchored = "/" in line.rstrip("/")
    parts = [p for p in line.strip("/").split("/") if p]
    if not parts:
        return None
    rx = "^" + ("" if anchored else "(?:.+/)?")
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        if part == "**":
            rx += ".*" if last else "(?:.+/)?"
            continue
        j, out = 0, ""
        while j < len(part):
            c = part[j]
            if c == "*":
                out += "[^/]*"
            elif c == "?":
                out += "[^/]"
            elif c == "[" and "]" in part[j + 1:]:
                end = part.index("]", j + 1)
                body = part[j + 1:end]
                out += "[" + ("^" + body[1:] if body.startswith("!") else body) + "]"
                j = end
            else:
                out += re.escape(c)
            j += 1
        rx += out + ("" if last else "/")
    if parts[-1] != "**":
        rx += "/.*" if dir_only else "(?:/.*)?"
    return re.compile(rx + "$"), negate


def _rules(lines) -> list:
    return [r for r in map(_glob_regex, lines) if r is not None]


def _excluded(rules, rel: str, is_dir: bool) -> bool:
    target = rel + "/" if is_dir else rel
    hit = False
    for rx, negate in rules:
        if rx.match(target):
            hit = not negate
    return hit


def pack_directory(path: Path, excludes, include_gitignore: bool, include_parent_dir: bool):
    """Zip a directory (or one file) as Ray does; returns ``(bytes, content hash)``.

    The hash covers each packed path and its contents, so it names the package whatever
    the files' timestamps."""
    path = path.absolute()
    root = path.parent if path.is_file() else path
    digest = hashlib.sha1()
    buf = io.BytesIO()

    def arcname(p: Path) -> str:
        rel = p.relative_to(root).as_posix()
        return f"{root.name}/{rel}" if include_parent_dir else rel

    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        def add_file(p: Path):
            size = p.stat().st_size
            if size >= FILE_SIZE_WARNING:
                logger.warning(
                    "File %s is very large (%s). Consider adding this file to the 'excludes' "
                    "list to skip uploading it: `ray.init(..., runtime_env={'excludes': ['%s']})`",
                    p, _mib(size), p,
                )
            name = arcname(p)
            data = p.read_bytes()
            digest.update(f"{name}\0{len(data)}\0".encode())
            digest.update(data)
            info = zipfile.ZipInfo.from_file(p, name, strict_timestamps=False)
            zf.writestr(info, data, zipfile.ZIP_DEFLATED)

        def visit(d: Path, rules: list):
            rules = list(rules)
            for ignore in ((".gitignore",) if include_gitignore else ()) + (".rayignore",):
                f = d / ignore
                if f.is_file():
                    rules.append((d, _rules(f.read_text().splitlines())))
            entries = sorted(d.iterdir())
            if not entries and d != root:
                name = arcname(d) + "/"
                digest.update(f"{name}\0".encode())
                zf.writestr(name, b"")
            for e in entries:
                is_dir = e.is_dir()
                if any(_excluded(r, e.relative_to(base).as_posix(), is_dir) for base, r in rules):
                    continue
                if is_dir:
                    visit(e, rules)
                else:
                    add_file(e)

        if path.is_file():
            add_file(path)
        else:
            visit(path, [(path, _rules(excludes))])
    return buf.getvalue(), digest.hexdigest()[:32]


# ============================================================================ worker side


#: The worker's own import path, captured before any environment is entered: a pip
#: environment's virtualenv sees the worker's packages through it.
_BASE_PATHS = [p for p in sys.path if p and os.path.isabs(p) and os.path.isdir(p)]
#: Why a plugin could not prepare something on this worker, by package hash or pip key.
_setup_errors: dict = {}
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
                _package_dir(root, sources[digest], data)
            except Exception as e:  # noqa: BLE001 - recorded for the calls that need it
                _setup_errors[digest] = getattr(e, "error_message", None) or (
                    f"Failed to unpack runtime_env package {sources[digest].uri}: {e}"
                )
        # The files are on disk now: do not keep a copy in every worker's memory.
        self.packages = {}
        if self.env.pip is not None:
            try:
                install_pip(root, self.env.pip)
            except Exception as e:  # noqa: BLE001 - recorded for the calls that need it
                _setup_errors[_pip_key(self.env.pip)] = getattr(e, "error_message", None) or (
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


def _package_dir(root: str, src: Source, data: Optional[bytes] = None) -> str:
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
    if key in _setup_errors:
        raise rex.RuntimeEnvSetupError(_setup_errors[key])
    what = f"Failed to install the pip requirements {list(spec.packages)} on {platform.node()}"

    def build(dst: str):
        venv = os.path.join(dst, "virtualenv")
        _run([sys.executable, "-m", "venv", "--without-pip", venv], dst, spec.timeout, what)
        python = os.path.join(venv, "Scripts", "python.exe") if os.name == "nt" else os.path.join(venv, "bin", "python")
        sites = json.loads(_run(
            [python, "-c", "import json, sysconfig; print(json.dumps(sorted({sysconfig.get_path('purelib'), sysconfig.get_path('platlib')})))"],
            dst, spec.timeout, what,
        ))
        with open(os.path.join(sites[0], _BASE_PTH), "w") as f:
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
            if pth.name == _BASE_PTH:
                continue
            for line in pth.read_text().splitlines():
                line = line.strip()
                if line and not line.startswith(("#", "import ", "import\t")):
                    full = os.path.join(site, line)
                    if os.path.isdir(full) and full not in paths:
                        paths.append(full)
    return paths


# ---------------------------------------------------------------------------- applying


_apply_lock = threading.RLock()
_resolved: dict = {}  # PreparedEnv -> (working directory or None, sys.path entries)
_in_use: dict = {}  # directory -> number of calls running with it
_inserted: set = set()  # sys.path entries we put there (and will take away)
_stale: set = set()  # directories of environments no call uses any more
_pinned: dict = {}  # directory -> number of live actors whose environment it belongs to


def _resolve(env: PreparedEnv):
    hit = _resolved.get(env)
    if hit is not None:
        return hit
    root = cache_root()
    paths = [_source_dir(root, s, "py_modules entry") for s in env.py_modules]
    cwd = _source_dir(root, env.working_dir, "working_dir") if env.working_dir is not None else None
    if cwd is not None:
        paths.append(cwd)
    if env.pip is not None:
        paths += install_pip(root, env.pip)
    hit = _resolved[env] = (cwd, list(dict.fromkeys(paths)))
    return hit


def _source_dir(root: str, src: Source, field: str) -> str:
    if src.kind == "local":
        if not os.path.isdir(src.key):
            raise rex.RuntimeEnvSetupError(
                f"{field} {src.uri} points to '{src.key}', which must already exist on every node."
            )
        return src.key
    if src.key in _setup_errors:
        raise rex.RuntimeEnvSetupError(_setup_errors[src.key])
    return _package_dir(root, src)


def _evict(dirs) -> None:
    """Forget the modules imported from ``dirs`` (an environment no call uses now)."""
    prefixes = tuple(d.rstrip(os.sep) + os.sep for d in dirs)
    for name, module in list(sys.modules.items()):
        origin = getattr(module, "__file__", None)
        if origin and origin.startswith(prefixes):
            sys.modules.pop(name, None)


def enter(env: Optional[PreparedEnv]) -> Optional[Callable[[], None]]:
    """Enter ``env`` for one call; returns the function that leaves it (None: nothing to
    leave). Raises ``RuntimeEnvSetupError`` when the environment cannot be prepared."""
    if env is None:
        if _stale:
            with _apply_lock:
                _evict(_stale - set(_pinned))
                _stale.clear()
        return None
    cwd, paths = _resolve(env)
    if not all(os.path.isdir(p) for p in paths):  # removed since we prepared it: again
        _resolved.pop(env, None)
        cwd, paths = _resolve(env)
    with _apply_lock:
        dirs = set(paths)
        if _stale - dirs - set(_pinned):
            _evict(_stale - dirs - set(_pinned))
        _stale.clear()
        fresh = [p for p in paths if _in_use.get(p, 0) == 0 and p not in sys.path]
        sys.path[0:0] = fresh
        _inserted.update(fresh)
        for p in paths:
            _in_use[p] = _in_use.get(p, 0) + 1
        settings = {"PYTHONPATH": list(paths)}  # in front of what PYTHONPATH was
        if cwd is not None:
            settings[process_env.CWD] = cwd
        token = process_env.push(settings)
    ctx = _context.current_task()
    if ctx is not None and ctx.actor is None:
        ctx.runtime_env = env  # what child tasks inherit (actors: the shell's meta)

    def leave():
        with _apply_lock:
            process_env.pop(token)
            for p in paths:
                _in_use[p] -= 1
                if _in_use[p] == 0:
                    del _in_use[p]
                    if p in _inserted:
                        _inserted.discard(p)
                        _stale.add(p)
                        try:
                            sys.path.remove(p)
                        except ValueError:
                            pass

    return leave


def pin(env: Optional[PreparedEnv], owner) -> None:
    """Keep the modules an actor imported from its environment while the actor lives
    (Ray's actor keeps its process): calls of other environments do not evict them."""
    if env is None:
        return
    import weakref

    _, paths = _resolve(env)
    with _apply_lock:
        for p in paths:
            _pinned[p] = _pinned.get(p, 0) + 1
    weakref.finalize(owner, _unpin, paths)


def _unpin(paths) -> None:
    with _apply_lock:
        for p in paths:
            _pinned[p] -= 1
            if _pinned[p] == 0:
                del _pinned[p]
