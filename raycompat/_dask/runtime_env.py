"""``runtime_env`` ``working_dir``, ``py_modules`` and ``pip`` on Dask workers: the driver
side (preparing a job's and a call's environment). The records are in
``runtime_env_records.py``, packing in ``runtime_env_packing.py``, the workers' cache and
pip environments in ``runtime_env_cache.py``, applying one around a call in
``runtime_env_apply.py``.

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

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Optional
from urllib.parse import urlparse


from raycompat import exceptions as rex
from raycompat._private import runtime_env as _validation
from raycompat._dask.runtime_env_apply import current
from raycompat._dask.runtime_env_cache import RuntimeEnvPlugin
from raycompat._dask.runtime_env_packing import pack_directory
from raycompat._dask.runtime_env_records import DEFAULT_EXCLUDES, DEFAULT_SETUP_TIMEOUT, FETCHABLE
from raycompat._dask.runtime_env_records import MAX_PACKAGE_SIZE, PipSpec, PreparedEnv, Source, mib

logger = logging.getLogger("raycompat")


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
    if scheme not in FETCHABLE:
        raise rex.RuntimeEnvSetupError(
            f"raycompat fetches runtime_env packages over {', '.join(s + '://' for s in FETCHABLE)} "
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
                f"Package size ({mib(len(data))}) exceeds the maximum size of "
                f"{mib(MAX_PACKAGE_SIZE)}. To exclude large files, add them to '.gitignore' or "
                "'.rayignore' files, or use the 'excludes' option in the runtime_env, or provide "
                "a URI of a remote zip file."
            )
    except (OSError, ValueError) as e:
        raise rex.RuntimeEnvSetupError(f"Failed to upload {what} to the Ray cluster: {e}") from e
    packages[digest] = (fmt, data)
    return Source("pkg", uri, digest, fmt)


