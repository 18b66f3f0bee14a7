"""The dashboard, as a real browser shows it while a Ray program runs.

A driver (its own process, an embedded cluster) keeps running tasks named
``browser_probe_task`` and ``Probe.ping`` actor calls until told to stop. Headless
Chromium, driven over the DevTools protocol (``headless_chromium.py``), opens the
dashboard's ``/status``: the task stream draws on a canvas, so the test reads what the
browser received instead: the data sources of the live BokehJS document in the page,
which the dashboard server pushes over its websocket. It must hold the tasks' function
names, and more of them later (the page keeps updating while tasks run). Then
``/raycompat/actors`` must list the actor's calls as ``Probe.ping`` with a count that
grows between two loads. The test stops Chromium and the driver (whose shutdown stops its
cluster) by pid.

``RAYCOMPAT_DASHBOARD_SCREENSHOT=docs/dashboard.png`` also saves the browser's screenshot
of ``/status`` taken during the run (the README's picture).
"""

from __future__ import annotations

import asyncio
import os
import select
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from dask_only import headless_chromium

pytestmark = pytest.mark.dask_only

CHROMIUM = headless_chromium.find()

DRIVER = textwrap.dedent(
    """
    import sys, threading, time
    import raycompat as ray

    ctx = ray.init(num_cpus=2, dashboard_port=0)
    print("DASHBOARD", ctx.dashboard_url, flush=True)

    @ray.remote
    def browser_probe_task(i):
        time.sleep(0.05)
        return i

    @ray.remote
    class Probe:
        def ping(self, i):
            time.sleep(0.02)
            return i

    stop = threading.Event()
    threading.Thread(target=lambda: (sys.stdin.readline(), stop.set()), daemon=True).start()
    probe = Probe.remote()
    i = 0
    while not stop.is_set():
        ray.get([browser_probe_task.remote(i + k) for k in range(4)] + [probe.ping.remote(i)])
        i += 1
    ray.shutdown()
    print("STOPPED", flush=True)
    """
)

#: The names in the page's task stream data (the BokehJS source with start/duration).
TASK_STREAM_NAMES = """(() => {
  const names = [];
  for (const doc of (window.Bokeh && Bokeh.documents) || []) {
    for (const m of doc.all_models) {
      const d = m.data;
      if (!d || typeof d !== 'object') continue;
      const get = (k) => d instanceof Map ? d.get(k) : d[k];
      if (get('duration') && get('start') && get('name')) names.push(...Array.from(get('name')));
    }
  }
  return names;
})()"""

#: The actor page's table rows, cell texts.
TABLE_ROWS = "Array.from(document.querySelectorAll('tr')).map(r => Array.from(r.cells).map(c => c.innerText))"


def _dashboard_url(proc: subprocess.Popen, timeout: float = 120.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stdout], [], [], 1.0)
        if ready:
            line = proc.stdout.readline()
            if line.startswith("DASHBOARD "):
                return line.split()[1]
            if not line and proc.poll() is not None:
                break
    raise RuntimeError("the driver did not report its dashboard")


def _stop_driver(proc: subprocess.Popen) -> None:
    """Ask the driver to shut down (it stops its cluster); by pid if it does not."""
    try:
        proc.stdin.write("\n")
        proc.stdin.flush()
    except (BrokenPipeError, ValueError):
        pass
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=20)
    # The cluster's nanny and worker processes are in the driver's process group.
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


async def _check_dashboard(ws_url: str, status_url: str, actors_url: str) -> dict:
    seen: dict = {}
    async with headless_chromium.Page(ws_url) as page:
        await page.navigate(status_url)
        names = await page.wait_for(f"(() => {{ const n = {TASK_STREAM_NAMES}; "
                                    "return n.includes('browser_probe_task') ? n : null; })()")
        seen["first_names"] = names or []
        # Later, the same page (no reload) holds more of them (two more rounds of the
        # driver's loop): the browser keeps receiving while tasks run.
        first = seen["first_names"].count("browser_probe_task")
        more = await page.wait_for(
            f"(() => {{ const n = {TASK_STREAM_NAMES}.filter(x => x === 'browser_probe_task').length; "
            f"return n >= {first + 8} ? n : 0; }})()"
        )
        seen["more_probe_tasks"] = more or 0
        seen["first_probe_tasks"] = first
        seen["screenshot"] = await page.screenshot()

        await page.navigate(actors_url)
        seen["actor_rows_1"] = await page.evaluate(TABLE_ROWS)
        seen["actor_title"] = await page.evaluate("document.title")
        await asyncio.sleep(1.0)  # lets more calls happen before the second load
        await page.navigate(actors_url + "?again=1")
        seen["actor_rows_2"] = await page.evaluate(TABLE_ROWS)
    return seen


def _calls(rows, name):
    for cells in rows or []:
        if cells and cells[0] == name:
            return int(cells[1])
    return None


@pytest.mark.skipif(
    CHROMIUM is None,
    reason="chromium is not installed (apt-get install -y chromium; .ci/run installs it)",
)
def test_dashboard_in_a_headless_browser(tmp_path):
    driver = subprocess.Popen(
        [sys.executable, "-c", DRIVER], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        start_new_session=True,
    )
    browser = None
    try:
        url = _dashboard_url(driver)
        assert url.startswith("http://127.0.0.1:")  # the dashboard listens on loopback
        root = url.rsplit("/status", 1)[0]
        browser = headless_chromium.Chromium(CHROMIUM, tmp_path)
        seen = asyncio.run(_check_dashboard(browser.page_ws_url(), f"{root}/status", f"{root}/raycompat/actors"))
    finally:
        if browser is not None:
            browser.stop()
        _stop_driver(driver)

    assert "browser_probe_task" in seen["first_names"], seen["first_names"][:20]
    assert seen["more_probe_tasks"] >= seen["first_probe_tasks"] + 8 > 8
    assert seen["actor_title"] == "Ray actor calls"
    first, second = _calls(seen["actor_rows_1"], "Probe.ping"), _calls(seen["actor_rows_2"], "Probe.ping")
    assert first is not None and first >= 1, seen["actor_rows_1"]
    assert second is not None and second > first, seen["actor_rows_2"]

    png = seen["screenshot"]
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    target = os.environ.get("RAYCOMPAT_DASHBOARD_SCREENSHOT")
    if target:
        Path(target).write_bytes(png)
