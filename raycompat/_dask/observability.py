"""Seeing Ray work on Dask: actor calls on the dashboard, and ``ray.timeline()``.

Tasks are Dask tasks and show in Dask's own task stream under their names. Actor calls
are not Dask tasks (they run inside the actor's shell, see ``actor_shell.py``), so each shell
reports the calls it ran as one Dask event per batch (topic ``raycompat-actor-calls``,
through the worker's existing stream to the scheduler). A page of ours,
``/raycompat/actors`` on the Dask dashboard's own HTTP server, lists them by
``Class.method``; ``ray.timeline()`` merges them with the tasks ``task_events.py`` records
into Chrome-trace events, as Ray's timeline does.
"""

from __future__ import annotations

import html
import json
import time
from collections import defaultdict

from distributed.diagnostics.plugin import SchedulerPlugin

from raycompat._dask import task_events

TOPIC = "raycompat-actor-calls"
PAGE = "/raycompat/actors"


def actor_call_summary(events) -> list[dict]:
    """Per ``Class.method``: calls, total and mean seconds, last call (from the events)."""
    by_name: dict = defaultdict(lambda: {"calls": 0, "seconds": 0.0, "last": 0.0, "workers": set()})
    for _, msg in events:
        for name, start, stop, _tid in msg.get("calls", ()):
            row = by_name[name]
            row["calls"] += 1
            row["seconds"] += stop - start
            row["last"] = max(row["last"], stop)
            row["workers"].add(msg.get("worker", "?"))
    return [
        {"name": n, "calls": r["calls"], "seconds": r["seconds"],
         "mean_ms": 1e3 * r["seconds"] / r["calls"], "last": r["last"], "workers": sorted(r["workers"])}
        for n, r in sorted(by_name.items())
    ]


class ActorCallsPagePlugin(SchedulerPlugin):
    """Adds ``/raycompat/actors`` to the scheduler's dashboard server."""

    name = "raycompat-actor-page"

    def start(self, scheduler):
        from tornado import web

        app = getattr(scheduler, "http_application", None)
        if app is None:
            return

        class Page(web.RequestHandler):
            def get(self):
                rows = actor_call_summary(scheduler.get_events(TOPIC))
                if self.get_argument("format", "") == "json":
                    self.set_header("Content-Type", "application/json")
                    self.write(json.dumps(rows))
                    return
                body = "".join(
                    f"<tr><td>{html.escape(r['name'])}</td><td>{r['calls']}</td>"
                    f"<td>{r['seconds']:.3f}</td><td>{r['mean_ms']:.2f}</td>"
                    f"<td>{time.strftime('%H:%M:%S', time.localtime(r['last']))}</td>"
                    f"<td>{html.escape(', '.join(r['workers']))}</td></tr>"
                    for r in rows
                )
                self.write(
                    "<html><head><title>Ray actor calls</title></head><body>"
                    "<h2>Ray actor calls (raycompat)</h2><table border=1 cellpadding=4>"
                    "<tr><th>Class.method</th><th>calls</th><th>total s</th><th>mean ms</th>"
                    f"<th>last</th><th>workers</th></tr>{body}</table></body></html>"
                )

        app.add_application(web.Application([(PAGE, Page)]))


def install(scheduler) -> None:
    """Add the page to ``scheduler``'s dashboard (once; a running scheduler does not
    start a plugin added late, so this starts it)."""
    if ActorCallsPagePlugin.name not in scheduler.plugins:
        page = ActorCallsPagePlugin()
        scheduler.add_plugin(page)
        page.start(scheduler)


def install_remote(dask_scheduler) -> bool:
    install(dask_scheduler)
    return True


def _task_records(client, since: float) -> list:
    """``(key, worker, thread, start, stop, status)`` of the tasks that ended after
    ``since``: raycompat's record on the scheduler, or, on a joined cluster whose
    scheduler cannot run raycompat, Dask's own task stream (from its first request on)."""
    try:
        records = client.run_on_scheduler(task_events.collect_remote, since=since)
    except Exception:  # noqa: BLE001 - raycompat not importable on the scheduler
        records = None
    if records is not None:
        return records
    return [
        (t["key"], t.get("worker"), t.get("thread"), ss["start"], ss["stop"], t.get("status"))
        for t in client.get_task_stream(start=since)
        for ss in t.get("startstops", ())
        if ss.get("action") == "compute"
    ]


def timeline(client, since: float = 0.0) -> list[dict]:
    """Chrome-trace events ("X" phase, microseconds) for tasks and actor calls."""
    from dask.utils import key_split

    events = []
    for key, worker, thread, start, stop, status in _task_records(client, since):
        events.append(
            {
                "cat": "task",
                "name": key_split(key),
                "pid": worker or "",
                "tid": thread or 0,
                "ts": start * 1e6,
                "dur": (stop - start) * 1e6,
                "ph": "X",
                "cname": "generic_work",
                "args": {"key": str(key), "status": status},
            }
        )
    for _, msg in client.get_events(TOPIC):
        for name, start, stop, tid in msg.get("calls", ()):
            if stop < since:
                continue
            events.append(
                {
                    "cat": "actor_task",
                    "name": name,
                    "pid": msg.get("worker", ""),
                    "tid": tid,
                    "ts": start * 1e6,
                    "dur": (stop - start) * 1e6,
                    "ph": "X",
                    "cname": "rail_response",
                    "args": {"actor_id": msg.get("actor_id")},
                }
            )
    events.sort(key=lambda e: e["ts"])
    return events
