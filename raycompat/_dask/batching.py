"""The ``.remote()`` calls a program issues in a burst reach the scheduler as one graph.

Ray's ``f.remote()`` returns at once and its raylet takes thousands of submissions a
second. ``client.submit`` sends one ``update-graph`` per call, and the scheduler's fixed
cost per graph (unpacking, ordering, bookkeeping) then bounds throughput: measured here,
a submit loop reaches about half the rate of one ``client.map`` over the same tasks.

So each call gets its Dask future at once (the ObjectRef needs it), and its task joins a
batch that the client's event loop sends when it next runs, as one ``update-graph`` per
run of consecutive calls with the same placement (resources, workers, annotations), in
submission order, so a task never reaches the scheduler before a task it depends on.
Messages that name a queued key by other routes (pinning a ref that escapes into data,
``ray.cancel``) flush the queue first.
``RAYCOMPAT_BATCH_SUBMIT=0`` turns it off (one ``client.submit`` per call).

Every task of a job belongs to one Dask span, ``raycompat-job-<id>`` (unless the user
opens a span of their own with ``distributed.span``). Dask otherwise opens a new
"default" span whenever the previous one has finished, which for a Ray program is every
burst of calls: each span, and the metrics every worker keeps per span, lived for the
cluster's life, so a long-running driver's cluster grew without end.
"""

from __future__ import annotations

import contextvars
import os
import threading
import uuid
import weakref

import dask
from dask._expr import LLGExpr
from dask._task_spec import Task, parse_input
from distributed import Future
from distributed.spans import SpanMetadata
from distributed.worker import thread_state

from raycompat._dask import context

ENABLED = os.environ.get("RAYCOMPAT_BATCH_SUBMIT", "1") != "0"


class SubmitBatcher:
    """One client's pending task submissions."""

    def __init__(self, client):
        self._client = weakref.ref(client)  # the registry below is keyed weakly by it
        self.pending: list = []
        self.lock = threading.Lock()  # guards ``pending``
        self.send_lock = threading.Lock()  # one flush at a time, so graphs leave in order
        self.scheduled = False

    @property
    def client(self):
        return self._client()

    def submit(self, key: str, func, args: tuple, placement: dict) -> Future:
        """Queue ``func(*args)`` under ``key``; returns its future at once."""
        annotations = with_job_span(dask.get_annotations())
        # Inside a task, Dask ranks the subtasks it submits above their parent.
        parent = getattr(thread_state, "key", None)
        fut = Future(key, self.client)
        signature = (repr(sorted(placement.items())), repr(sorted(annotations.items())), parent)
        with self.lock:
            # The queued future keeps the key wanted until the graph is sent.
            self.pending.append((signature, key, func, args, placement, annotations, fut))
            if not self.scheduled:
                self.scheduled = True
                self.client.loop.add_callback(self.flush)
        return fut

    def flush(self) -> None:
        """Send what is queued, one graph per placement run (on the event loop, or from a
        thread about to send the scheduler a message that names a queued key)."""
        with self.send_lock:
            with self.lock:
                pending, self.pending = self.pending, []
                self.scheduled = False
            start = 0
            while start < len(pending):
                end = start + 1
                while end < len(pending) and pending[end][0] == pending[start][0]:
                    end += 1
                run = pending[start:end]
                try:
                    # A fresh context: only the annotations captured at submit time apply,
                    # not whatever the flushing thread (or the loop callback) carries.
                    contextvars.Context().run(self._send, run)
                except Exception as exc:  # noqa: BLE001 - fail these calls, not the burst
                    for *_, fut in run:
                        fut._state.set_error(exc, exc.__traceback__)
                start = end

    def _send(self, run: list) -> None:
        (_, _, parent), _, _, _, placement, annotations, _ = run[0]
        tasks = {key: Task(key, func, *(parse_input(a) for a in args)) for _, key, func, args, *_ in run}
        keys = list(tasks)
        expr = LLGExpr(tasks, _determ_token=uuid.uuid4().hex)
        saved = getattr(thread_state, "key", _UNSET)
        if parent is not None:
            thread_state.key = parent  # read by _graph_to_futures as the submitting task
        try:
            with dask.annotate(**annotations) if annotations else _nothing():
                self.client._graph_to_futures(
                    expr,
                    keys,
                    workers=placement.get("workers"),
                    allow_other_workers=placement.get("allow_other_workers"),
                    internal_priority={k: i for i, k in enumerate(keys)},
                    resources=placement.get("resources"),
                    fifo_timeout="100 ms",
                    # A job's span lives long: do not grow its list of collections.
                    span_metadata=SpanMetadata() if _is_job_span(annotations)
                    else SpanMetadata(collections=[{"type": "Future"}]),
                )
        finally:
            if parent is not None:
                if saved is _UNSET:
                    del thread_state.key
                else:
                    thread_state.key = saved


_UNSET = object()
_job_spans: dict = {}  # job id -> its span annotation
_JOB_SPAN_PREFIX = "raycompat-job-"


def with_job_span(annotations: dict) -> dict:
    """``annotations`` with the current job's span, unless the caller opened a span."""
    if "span" in annotations:
        return annotations
    job = context.current_job_id()
    if job is None:
        return annotations
    span = _job_spans.get(job)
    if span is None:
        name = _JOB_SPAN_PREFIX + job
        span = _job_spans.setdefault(job, {"name": (name,), "ids": (name,)})
    return {**annotations, "span": span}


def _is_job_span(annotations: dict) -> bool:
    # Inside a task, Dask hands the task's own span down (its tuples now lists).
    span = annotations.get("span")
    return bool(span) and str(span["ids"][-1]).startswith(_JOB_SPAN_PREFIX)


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


_batchers: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()
_batchers_lock = threading.Lock()


def flush(client) -> None:
    """Send ``client``'s queued tasks now: call before any other message to the scheduler
    that names their keys (pinning, cancelling), so the scheduler knows them first.
    Always through ``send_lock``: a flush in progress elsewhere may have emptied the
    queue without having sent it yet."""
    batcher = _batchers.get(client)
    if batcher is not None:
        batcher.flush()


def submit(client, func, *args, key: str, **placement) -> Future:
    """``client.submit(func, *args, key=key, pure=False, **placement)``, batched."""
    if not ENABLED:
        with dask.annotate(**with_job_span(dask.get_annotations())):
            return client.submit(func, *args, key=key, pure=False, **placement)
    batcher = _batchers.get(client)
    if batcher is None:
        with _batchers_lock:
            batcher = _batchers.get(client)
            if batcher is None:
                batcher = _batchers[client] = SubmitBatcher(client)
    return batcher.submit(key, func, args, placement)
