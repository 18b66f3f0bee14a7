"""``raycompat run`` / ``python -m raycompat``: unmodified Ray programs (``import ray``)
run on raycompat, in the driver and in the workers, as ``python script.py`` runs them."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
RAYCOMPAT = Path(sys.executable).parent / "raycompat"


def _as_ray_program(name: str, tmp_path: Path) -> Path:
    """The example as its Ray original: the import line swapped back."""
    source = (EXAMPLES / name).read_text()
    assert "import raycompat as ray\n" in source
    path = tmp_path / name
    path.write_text(source.replace("import raycompat as ray\n", "import ray\n"))
    return path


def _run(cmd, cwd, **env):
    full_env = {**os.environ, "RAYCOMPAT_SUM_LIST_SIZE": "100000", **env}
    full_env.pop("RAY_ADDRESS", None)
    return subprocess.run(cmd, capture_output=True, text=True, timeout=240, env=full_env, cwd=cwd)


@pytest.mark.parametrize(
    "name, last_line",
    [
        ("hello_world.py", "Hello, world!"),
        ("counter_actor.py", "1"),
        ("sum_list_remote.py", None),
        ("queue_producer_consumer.py", None),
        ("actor_pool.py", None),
    ],
)
def test_examples_with_import_ray(tmp_path, name, last_line):
    script = _as_ray_program(name, tmp_path)
    proc = _run([str(RAYCOMPAT), "run", str(script)], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.strip().splitlines()
    if last_line is not None:
        assert lines[-1] == last_line
    if name == "sum_list_remote.py":
        assert lines[0] == str(100_000 * 99_999 // 2)


def test_python_dash_m_raycompat(tmp_path):
    script = _as_ray_program("hello_world.py", tmp_path)
    proc = _run([sys.executable, "-m", "raycompat", script.name], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().splitlines()[-1] == "Hello, world!"


PROGRAM = '''
import sys
import ray
import ray.util.queue
from ray.util import ActorPool
from ray.exceptions import RayTaskError
import helper_module                      # does `import ray` at its top: by reference in workers

print("main", __name__, sys.argv[1:], ray.__name__, ray.util.queue.Queue.__module__)
ray.init(num_cpus=2)

@ray.remote
def imports_ray_in_worker():
    import ray
    import ray.util.queue
    from ray.exceptions import RayTaskError as E
    return ray.__name__, E is RayTaskError

@ray.remote
def fails():
    raise KeyError("nope")

print("worker", ray.get(imports_ray_in_worker.remote()))
print("module", ray.get(ray.remote(helper_module.runtime_module).remote()))
try:
    ray.get(fails.remote())
except RayTaskError as e:
    print("caught", isinstance(e, KeyError))
try:
    import ray.tune
except ImportError as e:
    print("missing", type(e).__name__, e.name, "|", e)
sys.exit(int(sys.argv[1]))
'''


def test_ray_modules_resolve_in_driver_and_workers(tmp_path):
    (tmp_path / "prog.py").write_text(textwrap.dedent(PROGRAM))
    lib = tmp_path / "lib"
    lib.mkdir()
    (lib / "helper_module.py").write_text(
        "import ray\n\ndef runtime_module():\n    return ray.get_runtime_context().__class__.__module__\n"
    )
    proc = _run([str(RAYCOMPAT), "run", "prog.py", "7", "--flag"], tmp_path, PYTHONPATH=str(lib))
    assert proc.returncode == 7, proc.stderr[-3000:]
    out = proc.stdout.splitlines()
    assert "main __main__ ['7', '--flag'] raycompat raycompat.util.queue" in out
    assert "worker ('raycompat', True)" in out
    assert "module raycompat.runtime_context" in out
    assert "caught True" in out
    missing = next(line for line in out if line.startswith("missing"))
    assert missing.startswith("missing ModuleNotFoundError ray.tune | No module named 'ray.tune': ")
    assert "does not provide Ray's 'ray.tune'" in missing


def test_uncaught_exception_shows_the_scripts_traceback(tmp_path):
    script = tmp_path / "crash.py"
    script.write_text("def main():\n    raise KeyError('nope')\n\nmain()\n")
    ours = _run([str(RAYCOMPAT), "run", "crash.py"], tmp_path)
    python = _run([sys.executable, "crash.py"], tmp_path)
    assert ours.returncode == python.returncode == 1
    assert ours.stderr == python.stderr  # no runner frames
    assert ours.stderr.splitlines()[1] == f'  File "{script}", line 4, in <module>'


def test_exit_codes_and_dash_m_module(tmp_path):
    (tmp_path / "quits.py").write_text("import sys\nsys.exit('bad input')\n")
    proc = _run([str(RAYCOMPAT), "run", "quits.py"], tmp_path)
    assert (proc.returncode, proc.stderr.strip()) == (1, "bad input")
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "__init__.py").write_text("")
    (tmp_path / "pkg" / "tool.py").write_text(
        "import sys, ray\nprint(__name__, ray.__name__, sys.argv[1:])\nsys.exit(4)\n"
    )
    proc = _run([str(RAYCOMPAT), "run", "-m", "pkg.tool", "a", "-b"], tmp_path)
    assert proc.returncode == 4, proc.stderr[-2000:]
    assert proc.stdout.strip() == "__main__ raycompat ['a', '-b']"
    proc = _run([str(RAYCOMPAT), "run", "absent.py"], tmp_path)
    assert proc.returncode == 2 and "absent.py" in proc.stderr
