"""Shorter batching intervals on raycompat's own connections.

Dask batches the small messages of its long-lived connections (``BatchedSend``) with
intervals fixed in code: a client's messages to the scheduler wait up to 10 ms, the
scheduler's to a worker 5 ms and to a client 2 ms, a worker's to the scheduler 2 ms.
A Ray task's round trip crosses four of them. Measured on the embedded cluster (2
workers, medians): a task round trip 10.6 ms with Dask's intervals, 5.6 ms with only
the client's at zero, 4.5-4.7 ms with all of them at zero; a chain of dependent tasks
160 -> 370-430 tasks/s. Throughput does not drop: a burst still leaves as one write,
since messages queue while the previous write is in flight.

Only connections raycompat owns are changed, never Dask's defaults for the process:
the clients raycompat uses (the driver's, and a worker's own client when a task submits
tasks), and, on the embedded cluster that ``init()`` starts, its scheduler's streams and
its workers' streams. A cluster raycompat only joins keeps its operator's settings.
``RAYCOMPAT_BATCHED_SEND_INTERVAL`` (seconds, default 0) sets the interval.
"""

from __future__ import annotations

import os

from distributed.diagnostics.plugin import SchedulerPlugin

INTERVAL = float(os.environ.get("RAYCOMPAT_BATCHED_SEND_INTERVAL", "0"))


def tune_client(client) -> None:
    """The client's messages to the scheduler leave without waiting (once per client)."""
    comm = getattr(client, "scheduler_comm", None)
    if INTERVAL < 0:
        return
    if comm is not None and comm.interval != INTERVAL:
        comm.interval = INTERVAL


def tune_worker(worker) -> None:
    """A worker's messages to the scheduler (the preload's ``dask_setup`` calls this)."""
    if INTERVAL >= 0:
        worker.batched_stream.interval = INTERVAL


class StreamIntervalPlugin(SchedulerPlugin):
    """On the embedded cluster's scheduler: its streams to workers and clients."""

    name = "raycompat-stream-intervals"

    def start(self, scheduler) -> None:
        self.scheduler = scheduler
        if INTERVAL < 0:
            return
        for comm in list(scheduler.stream_comms.values()) + list(scheduler.client_comms.values()):
            comm.interval = INTERVAL

    def add_worker(self, scheduler, worker: str) -> None:
        if INTERVAL < 0:
            return
        comm = scheduler.stream_comms.get(worker)
        if comm is not None:
            comm.interval = INTERVAL

    def add_client(self, scheduler, client: str) -> None:
        if INTERVAL < 0:
            return
        # Called just before the client's stream exists: set it on the next loop turn.
        def later():
            comm = scheduler.client_comms.get(client)
            if comm is not None:
                comm.interval = INTERVAL

        scheduler.loop.add_callback(later)
