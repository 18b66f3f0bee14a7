"""``runtime_env`` validation: which keys raycompat honours, and Ray's errors for the rest.

Ray 2.60 checks a ``runtime_env`` at two moments, with different rules:

- **job level** (``ray.init(runtime_env=...)``): ``working_dir`` may be a local directory
  or a local archive (``.zip``, ``.tar.gz``, ``.tgz``, ``.tar.xz``) and ``py_modules``
  entries local directories, ``.py`` files, ``.whl`` files or imported modules; Ray uploads
  them, so a missing one fails ``ray.init`` with ``ValueError``;
- **task or actor level** (``@ray.remote(runtime_env=...)``, ``.options(runtime_env=...)``):
  ``working_dir`` and ``py_modules`` must be URIs (``local://`` directories present on
  every node, ``file://``/``https://`` archives, or the ``gcs://`` package URIs a job-level
  upload produced); a local path raises ``ValueError`` at decoration or ``.options()``
  time ("... only supported at the job level").

Both levels accept ``env_vars``, ``pip`` (a list of requirements, a requirements file, or
``{"packages": ..., "pip_check": ..., "pip_install_options": ..., "pip_version": ...}``),
``excludes`` and ``config``. Messages are Ray's, word for word. Other keys (``conda``,
``container``, ``image_uri``, ``uv``, plugins) raise ``RuntimeEnvSetupError`` naming them:
Ray accepts them here and fails when the environment is built; raycompat cannot build them
on a Dask worker, so it says so at once.

No Dask here: the mechanism is ``raycompat/_dask/runtime_env.py``.
"""

from __future__ import annotations

import os
import re
from collections import OrderedDict
from pathlib import Path
from types import ModuleType
from typing import Optional
from urllib.parse import urlparse
from raycompat.exceptions import RuntimeEnvSetupError

SUPPORTED = ("env_vars", "config", "working_dir", "py_modules", "pip", "excludes")

WORKING_DIR_EXTENSIONS = (".zip", ".tar.gz", ".tgz", ".tar.xz")
PY_MODULES_EXTENSIONS = (".zip", ".whl", ".tar.gz", ".tgz", ".tar.xz")
#: Ray's ``Protocol`` members, in Ray's order (its "Supported protocols" message lists them).
PROTOCOLS = ("gcs", "conda", "pip", "uv", "http", "https", "s3", "gs", "azure", "abfss", "file", "local")
REMOTE_PROTOCOLS = ("http", "https", "s3", "gs", "azure", "abfss", "file")

_JOB_LEVEL_ONLY = (
    "{} is not a valid URI. Passing directories or modules to be dynamically uploaded is "
    "only supported at the job level (i.e., passed to `ray.init`)."
)
_WINDOWS_DRIVE_PATH = re.compile(r"^[a-zA-Z]:[\\/]")


def validate_runtime_env(runtime_env, job_level: bool = False) -> None:
    """Raise Ray's error for a ``runtime_env`` raycompat cannot honour.

    ``job_level`` is True for ``ray.init(runtime_env=...)``, where local paths are allowed.
    """
    if runtime_env is None:
        return
    if not isinstance(runtime_env, dict):
        raise TypeError(f"runtime_env must be a dict, got {type(runtime_env)}")
    unsupported = sorted(set(runtime_env) - set(SUPPORTED))
    if unsupported:
        raise RuntimeEnvSetupError(
            f"raycompat supports only the runtime_env keys {list(SUPPORTED)}; got "
            f"unsupported key(s) {unsupported}. A Dask worker cannot switch to another "
            "interpreter or container per task: use 'pip' for Python packages (also instead "
            "of 'uv'), or install the dependencies on the workers (their image, or "
            "distributed's PipInstall/CondaInstall plugins)."
        )
    env_vars = runtime_env.get("env_vars") or {}
    if not isinstance(env_vars, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in env_vars.items()
    ):
        raise TypeError("runtime_env['env_vars'] must be a dict of str to str.")
    excludes = runtime_env.get("excludes")
    if excludes is not None and not (
        isinstance(excludes, list) and all(isinstance(p, str) for p in excludes)
    ):
        raise TypeError(f"runtime_env['excludes'] must be of type List[str], got {type(excludes)}")
    if runtime_env.get("working_dir") is not None:
        if job_level:
            job_working_dir(runtime_env["working_dir"])
        else:
            _task_working_dir(runtime_env["working_dir"])
    if runtime_env.get("py_modules") is not None:
        if job_level:
            job_py_modules(runtime_env["py_modules"])
        else:
            _task_py_modules(runtime_env["py_modules"])
    if runtime_env.get("pip") is not None:
        parse_pip(runtime_env["pip"])


# ---------------------------------------------------------------------------- URIs


def is_path(path_or_uri: str) -> bool:
    """Ray's ``is_path``: no URI scheme (a Windows drive letter is a path)."""
    scheme = urlparse(path_or_uri).scheme
    if os.name == "nt":
        return not scheme or bool(_WINDOWS_DRIVE_PATH.match(path_or_uri))
    return not scheme


def parse_uri(uri: str) -> tuple[str, str]:
    """Ray's ``parse_uri``: ``(protocol, path)``; ``ValueError`` with Ray's messages."""
    if is_path(uri):
        raise ValueError(f"Expected URI but received path {uri}")
    scheme = urlparse(uri).scheme
    if scheme not in PROTOCOLS:
        raise ValueError(
            f'Invalid protocol for runtime_env URI "{uri}". Supported protocols: '
            f"{[p.upper() for p in PROTOCOLS]}. Original error: '{scheme}' is not a valid Protocol"
        )
    if scheme == "local":
        prefix = "local://"
        if uri[: len(prefix)].lower() != prefix:
            raise ValueError(
                f'Invalid "local://" runtime_env URI "{uri}": a local URI must start with '
                "local://. Write local:///path/in/image, or local://C:/path/in/image on Windows."
            )
        path = uri[len(prefix):]
        if path.startswith("/") and _WINDOWS_DRIVE_PATH.match(path[1:]):
            path = path[1:]
        if not (path.startswith("/") or _WINDOWS_DRIVE_PATH.match(path)):
            raise ValueError(
                f'Invalid "local://" runtime_env URI "{uri}": the path must be absolute. '
                "Write local:///path/in/image, or local://C:/path/in/image on Windows."
            )
        ext = package_extension(path, WORKING_DIR_EXTENSIONS + (".whl", ".tar.bz2", ".jar"))
        if ext is not None:
            raise ValueError(
                f'Invalid "local://" runtime_env URI "{uri}": the path must be a directory, '
                f"not a {ext} archive. A local:// directory is used in place and is never unpacked."
            )
        return scheme, path
    return scheme, urlparse(uri).path


def package_extension(path: str, extensions) -> Optional[str]:
    for ext in sorted(extensions, key=len, reverse=True):
        if path.endswith(ext):
            return ext
    return None


def _check_extension(uri: str, field: str) -> None:
    extensions = WORKING_DIR_EXTENSIONS if field == "working_dir" else PY_MODULES_EXTENSIONS
    path = uri.split("?", 1)[0]
    if package_extension(path, extensions) is None:
        raise ValueError(
            f"Only {', '.join(extensions)} files are supported for {field} URIs; got {path}."
        )


def _validate_uri(uri: str, field: str) -> None:
    """Ray's ``validate_uri`` (task/actor level: URIs only)."""
    if urlparse(uri).scheme == "local":
        parse_uri(uri)
        return
    try:
        protocol, _ = parse_uri(uri)
    except ValueError:
        raise ValueError(_JOB_LEVEL_ONLY.format(uri)) from None
    if protocol == "gcs" or protocol in REMOTE_PROTOCOLS:
        _check_extension(uri, field)


def _validate_existing_path(path: str) -> None:
    try:
        Path(path).resolve(strict=True)
    except OSError:
        raise ValueError(f"{Path(path)} is not a valid path.") from None


def _uri_or_none(value: str, field: str) -> Optional[str]:
    """At job level: the value if it is a URI Ray passes through (checked), else None."""
    if urlparse(value).scheme == "local":
        parse_uri(value)
        return value
    try:
        protocol, _ = parse_uri(value)
    except ValueError:
        return None
    if protocol == "gcs" or protocol in REMOTE_PROTOCOLS:
        _check_extension(value, field)
    return value


# ---------------------------------------------------------------------------- working_dir


def _task_working_dir(working_dir) -> None:
    if not isinstance(working_dir, str):
        raise TypeError(f"`working_dir` must be a string, got {type(working_dir)}.")
    if is_path(working_dir):
        _validate_existing_path(working_dir)
    _validate_uri(working_dir, "working_dir")


def job_working_dir(working_dir) -> str:
    """Check a job-level ``working_dir``; returns it as a string (Ray accepts a ``Path``)."""
    if not isinstance(working_dir, (str, Path)):
        raise TypeError(
            "working_dir must be a string or Path (either a local path or remote URI), "
            f"got {type(working_dir)}."
        )
    working_dir = str(working_dir)
    if _uri_or_none(working_dir, "working_dir") is not None:
        return working_dir
    path = Path(working_dir)
    if not path.is_dir() and not (
        path.is_file() and package_extension(path.name, WORKING_DIR_EXTENSIONS) is not None
    ):
        raise ValueError(
            f"directory {path} must be an existing directory or a supported archive "
            f"({', '.join(WORKING_DIR_EXTENSIONS)})"
        )
    return working_dir


# ---------------------------------------------------------------------------- py_modules


def _task_py_modules(py_modules) -> None:
    if not isinstance(py_modules, list):
        raise TypeError(f"`py_modules` must be a list of strings, got {type(py_modules)}.")
    for module in py_modules:
        if not isinstance(module, str):
            raise TypeError(f"`py_module` must be a string, got {type(module)}.")
        if is_path(module):
            _validate_existing_path(module)
        _validate_uri(module, "py_modules")


def job_py_modules(py_modules) -> list[str]:
    """Check job-level ``py_modules``; returns the entries as path or URI strings."""
    if not isinstance(py_modules, list):
        raise TypeError(
            "py_modules must be a List of local paths, imported modules, or URIs, "
            f"got {type(py_modules)}."
        )
    out = []
    for module in py_modules:
        if isinstance(module, str):
            module_path = module
        elif isinstance(module, Path):
            module_path = str(module)
        elif isinstance(module, ModuleType):
            if not hasattr(module, "__path__"):
                module_path = module.__file__
            else:
                if len(module.__path__) > 1:
                    raise ValueError(
                        "py_modules only supports modules whose __path__ has length 1 or "
                        "those who are single-file."
                    )
                [module_path] = module.__path__
        else:
            raise TypeError(
                f"py_modules must be a list of file paths, URIs, or imported modules, got {type(module)}."
            )
        if _uri_or_none(module_path, "py_modules") is None:
            path = Path(module_path)
            if path.suffix == ".py" and not path.is_file():
                raise ValueError(f"File {path.absolute()} must be an existing file")
            if not (path.is_dir() or path.suffix in (".py", ".whl")):
                raise ValueError(
                    "py_modules entry must be a .py file, a directory, or a .whl file; "
                    f"got {module_path}"
                )
        out.append(module_path)
    return out


# ---------------------------------------------------------------------------- pip


def _requirements_file(path: str) -> list[str]:
    requirements = Path(path)
    if not requirements.is_file():
        raise ValueError(f"{requirements} is not a valid file")
    return requirements.read_text().strip().split("\n")


def parse_pip(pip) -> Optional[dict]:
    """Ray's ``parse_and_validate_pip``: ``{"packages": [...], "pip_check": bool, ...}``
    (duplicates dropped, order kept), or None when there is nothing to install."""
    if isinstance(pip, str):
        result = dict(packages=_requirements_file(pip), pip_check=False)
    elif isinstance(pip, list) and all(isinstance(dep, str) for dep in pip):
        result = dict(packages=pip, pip_check=False)
    elif isinstance(pip, dict):
        if set(pip) - {"packages", "pip_check", "pip_install_options", "pip_version"}:
            raise ValueError(
                "runtime_env['pip'] can only have these fields: packages, pip_check, "
                f"pip_install_options and pip_version, but got: {list(pip.keys())}"
            )
        if "pip_check" in pip and not isinstance(pip["pip_check"], bool):
            raise TypeError(
                f"runtime_env['pip']['pip_check'] must be of type bool, got {type(pip['pip_check'])}"
            )
        if "pip_version" in pip and not isinstance(pip["pip_version"], str):
            raise TypeError(
                f"runtime_env['pip']['pip_version'] must be of type str, got {type(pip['pip_version'])}"
            )
        if "pip_install_options" in pip:
            options = pip["pip_install_options"]
            if not isinstance(options, list):
                raise TypeError(
                    f"runtime_env['pip']['pip_install_options'] must be of type list[str] got {type(options)}"
                )
            for idx, opt in enumerate(options):
                if not isinstance(opt, str):
                    raise TypeError(
                        "runtime_env['pip']['pip_install_options'] must be of type list[str] "
                        f"got {type(opt)} for {idx}-th item."
                    )
        result = dict(pip)
        result["pip_check"] = pip.get("pip_check", False)
        if "packages" not in pip:
            raise ValueError(f"runtime_env['pip'] must include field 'packages', but got {pip}")
        if isinstance(pip["packages"], str):
            result["packages"] = _requirements_file(pip["packages"])
        elif not isinstance(pip["packages"], list):
            raise ValueError(
                f"runtime_env['pip']['packages'] must be of type str of list, got: {type(pip['packages'])}"
            )
    else:
        raise TypeError(f"runtime_env['pip'] must be of type str or List[str], got {type(pip)}")
    result["packages"] = list(OrderedDict.fromkeys(result["packages"]))
    return result if result["packages"] else None
