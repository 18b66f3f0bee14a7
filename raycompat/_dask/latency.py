"""Shorter batching intervals on raycompat's own connections.

Dask batches the small messages of its long-lived connections (``BatchedSend``) with
intervals fixed in code: a client's messages to the scheduler wait up to 10 ms, the
scheduler's to a worker 5 ms and to a client 2 ms, a worker's to the scheduler 2 ms.
A Ray task's round trip crosses four of them. raycompat's clients send at once (zero),
and the embedded cluster's scheduler<->worker streams wait 0.5 ms: zero everywhere would
send each task's messages one by one and cost burst throughput; Dask's intervals double
the round trip. The measurements behind this choice are in ``benchmarks/README.md``
("Batched-send intervals").

Only connections raycompat owns are changed, never Dask's defaults for the process:
the clients raycompat uses (the driver's, and a worker's own client when a task submits
tasks), and, on the embedded cluster that ``init()`` starts, its scheduler's streams and
its workers' streams. A cluster raycompat only joins keeps its operator's settings.
``RAYCOMPAT_BATCHED_SEND_INTERVAL`` (clients' streams, seconds, default 0) and
``RAYCOMPAT_WORKER_STREAM_INTERVAL`` (default 0.0005) override; a negative value keeps
Dask's. A worker's own stream adapts to its load (``AdaptiveStreamPlugin``).
"""

from __future__ import annotations

import os

from distributed.diagnostics.plugin import SchedulerPlugin, WorkerPlugin

#: Clients' streams (both ends): a message leaves at once.
INTERVAL = float(os.environ.get("RAYCOMPAT_BATCHED_SEND_INTERVAL", "0"))
#: The embedded cluster's scheduler<->worker streams: at zero, every task's messages go
#: one by one and a burst of tiny tasks runs 15% slower; 0.5 ms keeps the latency gains.
STREAM_INTERVAL = float(os.environ.get("RAYCOMPAT_WORKER_STREAM_INTERVAL", "0.0005"))


def _set(comm, interval: float) -> None:
    if comm is not None and interval >= 0:  # negative: keep Dask's
        comm.interval = interval


def tune_client(client) -> None:
    """The client's messages to the scheduler leave without waiting."""
    _set(getattr(client, "scheduler_comm", None), INTERVAL)


#: A busy worker's messages to the scheduler (Dask's scheduler uses 5 ms towards workers).
BUSY_STREAM_INTERVAL = float(os.environ.get("RAYCOMPAT_BUSY_WORKER_STREAM_INTERVAL", "0.005"))


class AdaptiveStreamPlugin(WorkerPlugin):
    """A worker's stream to the scheduler: no wait when idle, batched when busy.

    Dask's ``BatchedSend`` sends a message at once when the stream has been quiet, and
    then at most once per ``interval``. A worker with more tasks ready to run will send
    another "task-finished" soon, so batching costs nothing there; a worker that has
    nothing left to run (the next task of a chain waits for this one's result) should
    not wait. The interval is chosen at each task's end, before its message is queued.
    Measured on the embedded cluster (2,000 empty tasks, 3 interleaved runs each), CPU
    microseconds per task in the driver / in the workers, and tasks per second:

    - 0.5 ms always (before): 350-372 / 600-608, 1,740-1,810/s; a chain of dependent
      tasks 481-551/s; round trip 4.2 ms;
    - 2 ms always: 290-320 / 465-530, 1,850-1,990/s, but the chain 365-395/s;
    - 0.5 ms idle, 2 ms busy: 278-310 / 473-505, 1,940-2,135/s, chain 477-546/s;
    - 0.5 ms idle, 5 ms busy (the default): 237-250 / 418-433, 2,200-2,270/s, chain
      486-522/s, round trip 4.0-4.1 ms; a fib(12) tree with ``get`` in tasks 0.87-0.89 s
      against 0.92-0.97 s before.

    Going idle also moves the send time the last busy write fixed: without that, bursts
    of 6 tasks in a loop took 13.4 ms each (9.8 ms with the plugin off); with it,
    9.1-9.9 ms (and 1,977-2,148 against 1,541-1,585 empty tasks/s with the plugin off,
    in a later, noisier set of runs).

    ``RAYCOMPAT_BUSY_WORKER_STREAM_INTERVAL`` (seconds) overrides; negative turns it off."""

    name = "raycompat-adaptive-stream"

    def setup(self, worker) -> None:
        self.stream = worker.batched_stream
        self.state = worker.state

    def transition(self, key, start, finish, **kwargs) -> None:
        # A task ends: executing (or seceded, "long-running", as a task blocked in
        # ``get`` is) to anything but long-running. The worker has already started its
        # next task, so "busy" counts the executing ones too.
        if start not in ("executing", "long-running") or finish == "long-running":
            return
        state = self.state
        if state.executing or state.ready or state.constrained:
            _set(self.stream, BUSY_STREAM_INTERVAL)
        elif self.stream.interval != STREAM_INTERVAL:
            _set(self.stream, STREAM_INTERVAL)
            _shorten_pending_wait(self.stream, BUSY_STREAM_INTERVAL - STREAM_INTERVAL)


def _shorten_pending_wait(stream, by: float) -> None:
    """A ``BatchedSend`` fixes its next send time when it writes (last write + interval);
    an idle worker's report must not wait out the busy interval of the last write."""
    deadline = getattr(stream, "next_deadline", None)
    waker = getattr(stream, "waker", None)
    if deadline is not None and waker is not None and by > 0:
        stream.next_deadline = deadline - by
        waker.set()  # the sender sleeps until the old deadline: let it look again


async def tune_worker(worker) -> None:
    """A worker's messages to the scheduler (the preload's ``dask_setup`` calls this)."""
    _set(worker.batched_stream, STREAM_INTERVAL)
    if BUSY_STREAM_INTERVAL >= 0 and STREAM_INTERVAL >= 0:
        await worker.plugin_add(AdaptiveStreamPlugin())


class StreamIntervalPlugin(SchedulerPlugin):
    """On the embedded cluster's scheduler: its streams to workers and clients."""

    name = "raycompat-stream-intervals"

    def start(self, scheduler) -> None:
        for comm in scheduler.stream_comms.values():
            _set(comm, STREAM_INTERVAL)
        for comm in scheduler.client_comms.values():
            _set(comm, INTERVAL)

    def add_worker(self, scheduler, worker: str) -> None:
        _set(scheduler.stream_comms.get(worker), STREAM_INTERVAL)

    def add_client(self, scheduler, client: str) -> None:
        # Called just before the client's stream exists: set it on the next loop turn.
        scheduler.loop.add_callback(lambda: _set(scheduler.client_comms.get(client), INTERVAL))
