"""What a job's ``runtime_env`` becomes once the driver has prepared it (``Source``,
``PipSpec``, ``PreparedEnv``), and Ray's limits. See ``runtime_env.py``."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Optional




#: Ray's upload limit (its gRPC message size), and its per-file warning.
MAX_PACKAGE_SIZE = int(os.environ.get("RAY_max_grpc_message_size", 512 * 1024 * 1024))
FILE_SIZE_WARNING = 10 * 1024 * 1024
DEFAULT_EXCLUDES = ".git,.venv,venv,__pycache__"
DEFAULT_PIP_OPTIONS = ("--disable-pip-version-check", "--no-cache-dir")
DEFAULT_SETUP_TIMEOUT = 600.0
FETCHABLE = ("http", "https", "file")
BASE_PTH = "_raycompat_base.pth"


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

def mib(n: float) -> str:
    return f"{n / 1024**2:.2f}MiB"
