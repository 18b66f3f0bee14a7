"""Engine selection for the behaviour suite.

``RAYCOMPAT_TEST_ENGINE=raycompat`` (the default, and CI) runs every test on raycompat;
``RAYCOMPAT_TEST_ENGINE=ray`` runs the same tests on real Ray (from the ``.venv-ray``
venv, see README), so no test pins a behaviour Ray does not have. Tests that only make
sense on Dask live in ``tests/dask_only/`` and are skipped on Ray.
"""

from __future__ import annotations

import importlib
import inspect
import os
import subprocess
import sys
import textwrap
import time

import pytest

ENGINE = os.environ.get("RAYCOMPAT_TEST_ENGINE", "raycompat")
if ENGINE not in ("raycompat", "ray"):
    raise RuntimeError(f"RAYCOMPAT_TEST_ENGINE must be 'raycompat' or 'ray', not {ENGINE!r}")

ON_RAY = ENGINE == "ray"


def engine_module():
    return importlib.import_module(ENGINE)


#: Set when the suite runs against a cluster it joins (``RAY_ADDRESS=tcp://...``, see
#: ``tests/joined_cluster.py``) instead of one ``init`` starts: 2 CPUs there too.
JOINED = os.environ.get("RAY_ADDRESS", "local") not in ("", "local")


def init_kwargs(**extra):
    kw = {} if JOINED else {"num_cpus": 2}
    if ON_RAY:
        os.environ.setdefault("RAY_ADDRESS", "local")
        kw["include_dashboard"] = False
    else:
        kw["dashboard_port"] = 0
    kw.update(extra)
    return kw


def pickle_by_value(module):
    """Test functions travel by value, so workers need not import the test modules."""
    if ON_RAY:
        import ray.cloudpickle as cp
    else:
        import cloudpickle as cp
    cp.register_pickle_by_value(module)


@pytest.fixture(scope="session")
def ray():
    """The engine, initialised once for the session with 2 CPUs."""
    mod = engine_module()
    mod.init(**init_kwargs())
    yield mod
    mod.shutdown()


@pytest.fixture(autouse=True)
def _test_module_by_value(request):
    pickle_by_value(request.module)


def wait_until(predicate, timeout: float = 10.0) -> bool:
    """Poll ``predicate`` until it holds (True) or ``timeout`` seconds pass (False)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def run_script(source: str, timeout: float = 120, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run ``source`` in a fresh interpreter (for tests that start and stop clusters)."""
    full_env = dict(os.environ)
    if ON_RAY or JOINED:
        # A script starts (and stops) its own cluster, also when the suite joins one.
        full_env["RAY_ADDRESS"] = "local"
    full_env["RAYCOMPAT_TEST_ENGINE"] = ENGINE
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(source)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=full_env,
    )


def pytest_collection_modifyitems(config, items):
    # A shared test that branches on the engine pins a deliberate difference: say so.
    for item in items:
        fn = getattr(item, "function", None)
        if fn is None or "dask_only" in str(item.fspath):
            continue
        if "ON_RAY" in inspect.getsource(fn) and item.get_closest_marker("differs_from_ray") is None:
            raise pytest.UsageError(
                f"{item.nodeid} branches on ON_RAY: mark it @pytest.mark.differs_from_ray"
            )
    if JOINED and not ON_RAY:
        skip = pytest.mark.skip(
            reason="a cluster raycompat joins runs actors in its task workers' processes (README, "
            "Differences from Ray); only the embedded cluster gives each actor a process of its own"
        )
        for item in items:
            if item.get_closest_marker("own_actor_processes") is not None:
                item.add_marker(skip)
    if ON_RAY:
        skip = pytest.mark.skip(reason="Dask-only test: needs the raycompat engine")
        for item in items:
            if "dask_only" in str(item.fspath):
                item.add_marker(skip)
