"""``ray.experimental.tqdm_ray``: bars made in tasks and actors are drawn by the driver.

Pinned on Ray 2.60 (``RAYCOMPAT_TEST_ENGINE=ray``, tqdm installed in the driver's venv):
the bar state lines a worker prints (JSON with ``__ray_tqdm_magic_token__``) never appear
as text in the driver; the driver draws each remote bar as a real tqdm bar on its stderr,
its ``desc`` prefixed with ``\\x1b[2m\\x1b[36m(pid=<worker pid>) \\x1b[0m`` and
``unit_scale`` on (``work: 100%|##########| 5.00/5.00 [...]``); the state sent on
``close`` carries the last count and description; iterating a bar sends its first state
only (later ones wait for a flush interval that never comes, and iteration does not
close the bar); a bar made in the driver has no prefix; once a bar is shown,
``builtins.print`` is ``safe_print``; the task's ordinary prints keep their
``(work pid=N)`` prefix. Without tqdm in the driver, Ray warns "tqdm is not installed.
Progress bars will be disabled." and draws nothing: raycompat prints plain lines instead.
"""

from __future__ import annotations

import re

import pytest

from conftest import ENGINE, ON_RAY, init_kwargs, run_script

PROGRAM = """
import builtins, os, sys, time
{hide_tqdm}
import {engine} as ray
from {engine}.experimental.tqdm_ray import safe_print, tqdm

ray.init(**{init})

@ray.remote
def work(n):
    bar = tqdm(total=n, desc="work")
    for _ in range(n):
        bar.update(1)
    bar.set_description("work done")
    bar.close()
    print("done in task")
    return os.getpid()

@ray.remote
class Walker:
    def walk(self, n):
        for _ in tqdm(range(n), desc="walking"):
            pass
        return os.getpid()

print("TASKPID", ray.get(work.remote(5)))
print("ACTORPID", ray.get(Walker.remote().walk.remote(3)))
time.sleep({settle})
local = tqdm(total=2, desc="in driver")
local.update(2)
local.close()
print("PATCHED", builtins.print is safe_print)
probe = tqdm(range(3))
print("PROBE", probe.total, probe.n)
try:
    iter(tqdm()).__next__()
except ValueError as e:
    print("NOITER", e)
ray.shutdown()
"""


def _run(hide_tqdm: bool = False):
    # Ray's log monitor polls worker log files: give it time to draw before the driver ends.
    settle = 2.0 if ON_RAY else 0.0
    hide = 'sys.modules["tqdm"] = sys.modules["tqdm.auto"] = None' if hide_tqdm else ""
    source = PROGRAM.format(engine=ENGINE, init=init_kwargs(), settle=settle, hide_tqdm=hide)
    proc = run_script(source)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def _pid(out, tag):
    return int(re.search(rf"^{tag} (\d+)$", out, re.M).group(1))


def test_task_and_actor_bars_are_drawn_in_the_driver():
    proc = _run()
    out, err = proc.stdout, proc.stderr
    task_pid, actor_pid = _pid(out, "TASKPID"), _pid(out, "ACTORPID")
    assert "__ray_tqdm_magic_token__" not in out + err
    prefix = "\x1b[2m\x1b[36m(pid={}) \x1b[0m"
    # The close state brought the last count and description.
    assert re.search(re.escape(prefix.format(task_pid)) + r"work done: 100%\|[^|]*\| 5\.00/5\.00 ", err), err
    assert re.search(re.escape(prefix.format(actor_pid)) + r"walking: +\d+%\|[^|]*\| [01]\.00/3\.00 ", err), err
    assert not re.search(r"walking: 100%", err)  # iteration never sent its last state
    assert "\x1b[36m(work pid=%d)\x1b[0m done in task\n" % task_pid in out
    assert re.search(r"[\r\n]in driver: 100%\|[^|]*\| 2\.00/2\.00 ", err), err
    assert "PATCHED True" in out
    assert "PROBE 3 0" in out
    assert "NOITER No iterable provided" in out


@pytest.mark.differs_from_ray
def test_without_tqdm_in_the_driver():
    err = _run(hide_tqdm=True).stderr
    assert "__ray_tqdm_magic_token__" not in err
    if ON_RAY:
        assert "tqdm is not installed. Progress bars will be disabled." in err
        assert "work done" not in err
    else:
        # raycompat: one plain line per state the driver receives.
        assert re.search(r"\(pid=\d+\) \x1b\[0mwork: 1/5 it\n", err), err
        assert re.search(r"\(pid=\d+\) \x1b\[0mwork done: 5/5 it \[done\]\n", err), err
        assert "in driver: 2/2 it [done]\n" in err


def test_ray_experimental_tqdm_ray_is_there_after_import():
    proc = run_script(
        f"import {ENGINE} as ray\n"
        "m = ray.experimental.tqdm_ray\n"
        "print(sorted(n for n in ('tqdm', 'safe_print', 'instance', 'RAY_TQDM_MAGIC') if hasattr(m, n)))\n"
        "print(m.RAY_TQDM_MAGIC)\n"
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.split("\n")[:2] == [
        "['RAY_TQDM_MAGIC', 'instance', 'safe_print', 'tqdm']", "__ray_tqdm_magic_token__"
    ]
