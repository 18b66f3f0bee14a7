"""What a driver leaves on a cluster it only connected to dies with the driver.

Ray ties non-detached actors and the objects a driver owns to that driver: when it
exits, even without ``ray.shutdown()``, they go. On Dask, a driver's own futures are
released when its client disconnects, but two things raycompat keeps on the scheduler
would outlive it: the refs pinned under the job's synthetic client
``raycompat-pins-<job>`` (see ``refs.py``) and the ``distributed.Variable``s naming its
non-detached actors (see ``actor_api.py``). This scheduler plugin, installed by the first
driver that connects, watches clients leave and removes both for the driver that left,
and the events kept under its worker-output and stream topics (the scheduler keeps the
last 1,000 events of every topic for as long as it runs).
Detached actors' names are not registered, so they survive until ``ray.kill``.
(It needs raycompat importable on the scheduler, as workers need it anyway; when it is
not, ``init`` warns and those two things stay until someone deletes them.)
"""

from __future__ import annotations

import asyncio

from distributed.diagnostics.plugin import SchedulerPlugin

from raycompat._dask import output, restarts, stream_publish

from raycompat._dask.reference_plugin import release_holder
from raycompat._dask.references import JOB_PIN_PREFIX


def release_client_remote(dask_scheduler, name: str) -> None:
    """``release_holder`` for ``Client.run_on_scheduler``."""
    release_holder(dask_scheduler, name)


class DriverLifetimePlugin(SchedulerPlugin):
    name = "raycompat-driver-lifetime"

    #: How many departed drivers' topics are remembered, to drop late events.
    MAX_LEFT_TOPICS = 10_000

    def __init__(self, scheduler):
        self.scheduler = scheduler
        #: client id -> {"job": job id, "names": [Variable names to delete]}
        self.drivers: dict = {}
        #: Topics of drivers that left (insertion-ordered, capped): an event published
        #: there later (a detached actor of the job printing) would bring it back.
        self.left_topics: dict = {}

    def remove_client(self, scheduler, client: str) -> None:
        driver = self.drivers.pop(client, None)
        if driver is None:
            return
        release_holder(scheduler, JOB_PIN_PREFIX + driver["job"])
        restarts.forget_job(scheduler, driver["job"])
        topics = [output.TOPIC_PREFIX + driver["job"], stream_publish.TOPIC_PREFIX + client]
        forget_topics(scheduler, topics)
        for topic in topics:
            self.left_topics[topic] = None
        while len(self.left_topics) > self.MAX_LEFT_TOPICS:
            del self.left_topics[next(iter(self.left_topics))]
        variables = scheduler.extensions.get("variables")
        if variables is not None:
            for name in driver["names"]:
                asyncio.ensure_future(variables.delete(name=name))

    def log_event(self, topic, msg) -> None:
        if topic in self.left_topics:
            forget_topics(self.scheduler, [topic])


def forget_topics(scheduler, topics) -> None:
    """Drop what the scheduler keeps of these event topics: their last events and
    subscribers. Dask has no public call for it (it truncates a client's own topic when
    the client leaves, through the same broker)."""
    kept = getattr(getattr(scheduler, "_broker", None), "_topics", None)
    if kept is not None:
        for topic in topics:
            kept.pop(topic, None)


def register_driver(dask_scheduler, client_id: str, job: str) -> None:
    plugin = dask_scheduler.plugins.get(DriverLifetimePlugin.name)
    if plugin is None:
        plugin = DriverLifetimePlugin(dask_scheduler)
        dask_scheduler.add_plugin(plugin)
    plugin.drivers.setdefault(client_id, {"job": job, "names": []})


def register_names(dask_scheduler, client_id: str, names: list) -> None:
    plugin = dask_scheduler.plugins.get(DriverLifetimePlugin.name)
    if plugin is not None and client_id in plugin.drivers:
        plugin.drivers[client_id]["names"].extend(names)
