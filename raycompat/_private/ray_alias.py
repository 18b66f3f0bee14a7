"""``import ray`` giving raycompat: what lets an unmodified Ray program run.

``raycompat run script.py`` (and ``python -m raycompat script.py``) install
``RayAliasFinder`` first on ``sys.meta_path``: ``ray`` and every ``ray.X`` import resolve
to the very module objects of ``raycompat`` and ``raycompat.X`` (``ray.util is
raycompat.util``), so ``isinstance`` checks and ``except ray.exceptions.RayTaskError``
behave as with raycompat imported by its own name. A Ray module raycompat does not
provide raises ``ModuleNotFoundError`` naming it (an ``except ImportError`` fallback in the
program still works), never a half-working stub.

Workers need the alias too: a function a task runs may come from a module of the user's
that does ``import ray``, or do it at call time. A driver with the alias installed
registers ``RayAliasPlugin`` with its cluster, which installs the finder in every worker,
present and future (on a joined cluster the plugin stays with the scheduler's plugins, so
later drivers' workers keep it; it changes nothing for programs that never import ``ray``).
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys

from distributed.diagnostics.plugin import WorkerPlugin

PLUGIN_NAME = "raycompat-ray-alias"


def _ray_name(raycompat_name: str) -> str:
    return "ray" + raycompat_name[len("raycompat"):]


class _ExistingModuleLoader(importlib.abc.Loader):
    """Loads ``ray.X`` as the already-imported ``raycompat.X`` (same object)."""

    def __init__(self, module):
        self.module = module

    def create_module(self, spec):
        return self.module

    def exec_module(self, module):
        pass


class RayAliasFinder(importlib.abc.MetaPathFinder):
    """Resolves ``ray`` and ``ray.*`` to ``raycompat`` and ``raycompat.*``."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname != "ray" and not fullname.startswith("ray."):
            return None
        target_name = "raycompat" + fullname[len("ray"):]
        try:
            module = importlib.import_module(target_name)
        except ModuleNotFoundError as e:
            missing = e.name or ""
            if missing != target_name and not target_name.startswith(missing + "."):
                raise  # a module raycompat itself imports is missing: not an alias matter
            ray_module = _ray_name(missing)
            raise ModuleNotFoundError(
                f"No module named '{ray_module}': this program runs on raycompat (Ray's API "
                f"on Dask), which does not provide Ray's '{ray_module}'. Run it on Ray for "
                "that module; the raycompat README lists what raycompat provides.",
                name=fullname,
            ) from None
        return importlib.machinery.ModuleSpec(fullname, _ExistingModuleLoader(module), is_package=hasattr(module, "__path__"))


def install() -> None:
    """Put the finder first on ``sys.meta_path`` (once per process)."""
    if not installed():
        sys.meta_path.insert(0, RayAliasFinder())


def installed() -> bool:
    return any(isinstance(f, RayAliasFinder) for f in sys.meta_path)


class RayAliasPlugin(WorkerPlugin):
    """Installs the ``ray`` alias in each worker process."""

    name = PLUGIN_NAME
    idempotent = True

    def setup(self, worker):
        install()


def register_with(client) -> None:
    """Give every worker of ``client``'s cluster the alias, if this driver has it."""
    if installed():
        client.register_plugin(RayAliasPlugin(), name=PLUGIN_NAME)
