"""Dask's own tools take ObjectRefs as they take futures.

``ObjectRef`` speaks Dask's collection protocol (``__dask_graph__`` holds its future), so
``distributed.progress(refs)`` tracks the tasks and actor calls behind the refs,
``distributed.wait`` waits for them and ``dask.compute``/``dask.delayed`` see a ref as its
value; the driver's client is Dask's default client unless the user has one, so these
find the cluster by themselves. Ray semantics stay: raycompat's tasks still get nested refs
as refs (``tests/test_tasks.py`` pins that on both engines; checked here once more).
"""

from __future__ import annotations

import asyncio
import io
import re
import sys
import threading

import dask
import distributed
import pytest
from distributed import progress
from distributed.client import futures_of

from conftest import run_script

pytestmark = pytest.mark.dask_only


class _Screen(io.StringIO):
    """The console ``progress`` draws on; ``drawn`` is set once it shows a bar at 0%."""

    def __init__(self):
        super().__init__()
        self.drawn = threading.Event()

    def write(self, s):
        n = super().write(s)
        if re.search(r"\] \| 0% Completed", s):
            self.drawn.set()
        return n


def _gate(ray):
    @ray.remote
    class Gate:
        def __init__(self):
            self.event = asyncio.Event()

        async def wait(self):
            await self.event.wait()

        async def open(self):
            self.event.set()

    return Gate.remote()


def _progress_until_drawn(ray, refs, gate, monkeypatch):
    """Run ``progress(refs)`` (console: it returns when they are done); open the gate
    the refs wait on only once the bar shows them all not done. Returns what it drew."""
    screen = _Screen()
    monkeypatch.setattr(sys, "stdout", screen)

    def opener():
        if screen.drawn.wait(timeout=120):
            ray.get(gate.open.remote())

    t = threading.Thread(target=opener, daemon=True)
    t.start()
    try:
        progress(refs)
        many = refs if isinstance(refs, list) else [refs]
        ready, _ = ray.wait(many, num_returns=len(many), timeout=0)
        return screen.getvalue(), len(ready)
    finally:
        screen.drawn.set()  # release the opener if progress returned without drawing
        ray.get(gate.open.remote())  # a progress that returned early must not leave them waiting
        t.join(timeout=120)
        monkeypatch.undo()


def test_progress_tracks_task_refs(ray, monkeypatch):
    gate = _gate(ray)

    @ray.remote
    def step(gate, i):
        ray.get(gate.wait.remote())
        return i

    refs = [step.remote(gate, i) for i in range(3)]
    drawn, ready = _progress_until_drawn(ray, refs, gate, monkeypatch)
    # The bar showed the tasks pending and returned only when all three were done.
    assert re.search(r"\] \| 0% Completed", drawn), drawn
    assert "] | 100% Completed" in drawn
    assert ready == 3
    assert ray.get(refs) == [0, 1, 2]


def test_progress_tracks_actor_call_refs_and_a_single_ref(ray, monkeypatch):
    gate = _gate(ray)

    @ray.remote
    class Stepper:
        def step(self, gate, i):
            ray.get(gate.wait.remote())
            return i

    s = Stepper.remote()
    refs = [s.step.remote(gate, i) for i in range(2)]
    drawn, ready = _progress_until_drawn(ray, refs, gate, monkeypatch)
    assert re.search(r"\] \| 0% Completed", drawn), drawn
    assert ready == 2
    assert ray.get(refs) == [0, 1]

    gate = _gate(ray)
    one = s.step.remote(gate, 7)
    drawn, ready = _progress_until_drawn(ray, one, gate, monkeypatch)
    assert re.search(r"\] \| 0% Completed", drawn), drawn
    assert ready == 1


def test_dask_collects_futures_of_refs_in_containers(ray):
    @ray.remote
    def f(x):
        return x

    @ray.remote
    class A:
        def g(self):
            return 1

    a, b, c = f.remote(1), f.remote(2), A.remote().g.remote()
    found = futures_of([a, {"k": (b, c)}])
    assert sorted(fut.key for fut in found) == sorted(r._key for r in (a, b, c))
    assert all(isinstance(fut, distributed.Future) for fut in found)
    done, not_done = distributed.wait([a, b, c])
    assert len(done) == 3 and not not_done


def test_dask_compute_and_delayed_see_a_refs_value(ray):
    @ray.remote
    def f(x):
        return {"v": x}

    @ray.remote(num_returns=2)
    def pair():
        return "left", "right"

    @ray.remote
    class A:
        def g(self, x):
            return x * 3

    x, y = pair.remote()
    call = A.remote().g.remote(5)
    assert dask.compute(f.remote(1), x, y, call) == ({"v": 1}, "left", "right", 15)
    assert dask.delayed(lambda d: d["v"] + 1)(f.remote(41)).compute() == 42


def test_tasks_still_get_nested_refs_as_refs(ray):
    @ray.remote
    def describe(a, b):
        return type(a).__name__, type(b[0]).__name__, type(b[1]["k"]).__name__

    r = ray.put(7)
    assert dask.is_dask_collection(r)
    assert ray.get(describe.remote(r, [r, {"k": r}])) == ("int", "ObjectRef", "ObjectRef")


def test_a_users_own_default_client_keeps_its_place():
    proc = run_script(
        """
        import distributed
        import raycompat as ray

        if __name__ == "__main__":
            cluster = distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=False,
                                               dashboard_address="127.0.0.1:0")
            mine = distributed.Client(cluster)
            ray.init(num_cpus=1, dashboard_port=0)
            print("MINE", distributed.default_client() is mine)
            ray.shutdown()
            mine.close()
            cluster.close()
            ray.init(num_cpus=1, dashboard_port=0)
            from raycompat._dask import driver
            print("RAYS", distributed.default_client() is driver.client())
            ray.shutdown()
            try:
                distributed.default_client()
                print("AFTER", "still one")
            except ValueError:
                print("AFTER", "none")
        """
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "MINE True" in proc.stdout
    assert "RAYS True" in proc.stdout
    assert "AFTER none" in proc.stdout
