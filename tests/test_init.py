"""``ray.init``/``shutdown`` life cycle. Each test runs in a fresh interpreter, since it
starts and stops clusters of its own."""

import json

from conftest import run_script

PRELUDE = """
import json, os, sys
engine = os.environ["RAYCOMPAT_TEST_ENGINE"]
ray = __import__(engine)
kw = {"num_cpus": 1}
kw.update({"include_dashboard": False} if engine == "ray" else {"dashboard_port": 0})
out = {}
"""


def _run(body: str) -> dict:
    proc = run_script(PRELUDE + body + "\nprint('RESULT' + json.dumps(out))\n", timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = [l for l in proc.stdout.splitlines() if l.startswith("RESULT")][-1]
    return json.loads(line[len("RESULT"):])


def test_init_twice_and_reinit_and_shutdown():
    out = _run(
        """
out["before"] = ray.is_initialized()
ctx = ray.init(**kw)
out["after"] = ray.is_initialized()
out["has_dashboard_url"] = hasattr(ctx, "dashboard_url")
out["has_address_info"] = isinstance(ctx.address_info, dict)
try:
    ray.init(**kw)
except RuntimeError as e:
    out["twice"] = str(e)
ctx2 = ray.init(ignore_reinit_error=True)
out["reinit_ok"] = ctx2 is not None
try:
    ray.shutdown(); ray.init(bogus_kw=1)
except RuntimeError as e:
    out["unknown"] = str(e)
ray.shutdown()
ray.shutdown()
out["final"] = ray.is_initialized()
"""
    )
    assert out["before"] is False and out["after"] is True
    assert out["has_dashboard_url"] and out["has_address_info"]
    assert out["twice"].startswith("Maybe you called ray.init twice by accident?")
    assert out["reinit_ok"]
    assert out["unknown"] == "Unknown keyword argument(s): bogus_kw"
    assert out["final"] is False


def test_auto_init_on_first_remote_and_context_manager():
    out = _run(
        """
@ray.remote
def f():
    return 5
out["value"] = ray.get(f.remote())
out["auto"] = ray.is_initialized()
ray.shutdown()
with ray.init(**kw) as ctx:
    out["inside"] = ray.is_initialized()
out["outside"] = ray.is_initialized()
"""
    )
    assert out == {"value": 5, "auto": True, "inside": True, "outside": False}


def test_shutdown_then_init_again_works():
    out = _run(
        """
ray.init(**kw)
@ray.remote
def f(x):
    return x
out["first"] = ray.get(f.remote(1))
ray.shutdown()
ray.init(**kw)
out["second"] = ray.get(f.remote(2))
ray.shutdown()
"""
    )
    assert out == {"first": 1, "second": 2}


def test_no_dashboard_no_link():
    # Ray 2.60: include_dashboard=False logs "Started a local Ray instance." with no link,
    # and the context's dashboard_url is "".
    proc = run_script(
        """
import os
ray = __import__(os.environ["RAYCOMPAT_TEST_ENGINE"])
ctx = ray.init(num_cpus=1, include_dashboard=False)
print("URL=" + repr(ctx.dashboard_url))
ray.shutdown()
""",
        timeout=240,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "URL=''" in proc.stdout
    assert "Started a local Ray instance." in proc.stderr
    assert "View the dashboard" not in proc.stderr
