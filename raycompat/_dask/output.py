"""What tasks and actors print, in the driver's terminal, with Ray's prefix.

Ray (2.60, measured): each line a task or actor writes to stdout/stderr is printed by
the driver of its job as ``\\x1b[36m(<task name> pid=<pid>)\\x1b[0m <line>`` (the actor's
class name for actor methods and constructors; ``, ip=<ip>`` added when the worker is
on another node), on the driver's stdout or stderr as written; a last line without a
newline is printed when the task ends; log records that reach the worker's stderr
(Python's last-resort handler prints WARNING and above) come along.
``RAY_COLOR_PREFIX=0`` drops the colour; ``ray.init(log_to_driver=False)`` prints nothing.

The mapping: in a worker process, ``sys.stdout``/``sys.stderr`` are wrapped once (when
the first Ray task or actor runs there). Text written by a thread running a Ray task or
actor call (or by a thread that user code started, attributed to the last task) is cut
into lines and sent as a Dask event on the topic ``raycompat-output-<job id>``; the
scheduler forwards it to the clients subscribed to that topic: the job's driver, unless
``log_to_driver=False``. Dask's own logging keeps the streams it was configured with, so
it is not forwarded. On a cluster we only joined, the lines also stay in the worker's own
output (its log); on the embedded cluster they are not echoed, since the worker's output
is the driver's terminal.

Lines holding ``tqdm_ray``'s magic token are bar states: the driver draws them as bars
(``progress_bars.py``) instead of printing them, and clears the bars while it prints
other lines, as Ray's log monitor does.

A task's lines reach the driver before its ``get`` returns (the event and the task's
completion take the same route through the scheduler); an actor's reply does not pass
the scheduler, so ``shutdown`` waits until every worker's earlier output has arrived.
"""

from __future__ import annotations

import io
import os
import sys
import threading
import uuid
from typing import Optional

from raycompat._dask import context as _context
from raycompat._dask import progress_bars
from raycompat._dask.ledger import on_embedded_cluster

TOPIC_PREFIX = "raycompat-output-"
# colorama's Fore.CYAN and Style.RESET_ALL, as Ray's log prefixes use them.
_CYAN, _RESET_ALL = "\x1b[36m", "\x1b[0m"


# ============================================================================ worker side


class _Capture(io.TextIOBase):
    """A worker's stdout or stderr: Ray tasks' lines become events, the rest passes."""

    def __init__(self, original, kind: str, worker, echo: bool):
        self.original = original
        self.kind = kind
        self.worker = worker
        self.echo = echo
        self.partial: dict = {}  # thread id -> the unfinished line
        self.lock = threading.RLock()  # a finalizer that prints may run inside write

    def _owner(self):
        ctx = _context.current_task()
        return ctx if ctx is not None else _last_task

    def write(self, s: str) -> int:
        ctx = self._owner()
        if ctx is None or not isinstance(s, str):
            return self.original.write(s)
        if self.echo:
            self.original.write(s)
        tid = threading.get_ident()
        with self.lock:
            text = self.partial.pop(tid, "") + s
            *lines, rest = text.split("\n")
            if len(rest) > _MAX_PARTIAL:  # e.g. progress bars that never end a line
                lines.append(rest)
            elif rest:
                self.partial[tid] = rest
        if lines:
            _send(self.worker, ctx, self.kind, lines)
        return len(s)

    def end_line(self, ctx) -> None:
        """Send the calling thread's unfinished line (a task or call ended)."""
        with self.lock:
            rest = self.partial.pop(threading.get_ident(), "")
        if rest:
            _send(self.worker, ctx, self.kind, [rest])

    def flush(self) -> None:
        self.original.flush()

    def fileno(self) -> int:
        return self.original.fileno()

    def isatty(self) -> bool:
        return False

    def writable(self) -> bool:
        return True

    @property
    def encoding(self):
        return getattr(self.original, "encoding", "utf-8")

    def __getattr__(self, name):  # buffer, reconfigure, errors...: the real stream's
        return getattr(self.original, name)


#: An unfinished line longer than this is sent as it is.
_MAX_PARTIAL = 64 * 1024


def _source_name(ctx) -> str:
    actor = ctx.actor
    return actor.class_name if actor is not None else ctx.name


def _send(worker, ctx, kind: str, lines: list) -> None:
    if not ctx.job_id:
        return
    # Lone surrogates (undecodable file names) would break the worker's stream to the
    # scheduler when msgpack encodes the event: escape them here.
    lines = [line.encode("utf-8", "backslashreplace").decode("utf-8") for line in lines]
    msg = {"name": _source_name(ctx), "pid": os.getpid(), "ip": worker.ip, "stream": kind, "lines": lines}
    worker.log_event(TOPIC_PREFIX + ctx.job_id, msg)


_installed: Optional[tuple] = None
_last_task = None  # the last task or actor call this process started (for other threads)
_install_lock = threading.Lock()


def install() -> None:
    """Wrap this worker process's stdout and stderr (once)."""
    global _installed
    if _installed is not None:
        return
    with _install_lock:
        if _installed is not None:
            return
        from distributed import get_worker

        worker = get_worker()
        echo = not on_embedded_cluster()  # a joined cluster: keep the worker's own log
        out = _Capture(sys.stdout, "out", worker, echo)
        err = _Capture(sys.stderr, "err", worker, echo)
        sys.stdout, sys.stderr = out, err
        _installed = (out, err)


def installed() -> bool:
    """Does this process send its tasks' output to their drivers (a worker, once a Ray
    task or actor ran there)?"""
    return _installed is not None


def task_started(ctx) -> None:
    global _last_task
    install()
    _last_task = ctx


def task_ended(ctx) -> None:
    """Send the unfinished lines the calling thread wrote for ``ctx``."""
    if _installed is not None:
        for stream in _installed:
            stream.end_line(ctx)


async def mark(topic: str, token: str, dask_worker=None) -> None:
    """Run on every worker at shutdown: an event after all earlier output (same route)."""
    dask_worker.log_event(topic, {"marker": token})


# ============================================================================ driver side


class Printer:
    """The driver's end: prints the job's worker output with Ray's prefix."""

    def __init__(self, client, job_id: str):
        from distributed.utils import get_ip

        self.client = client
        self.topic = TOPIC_PREFIX + job_id
        self.markers: dict = {}
        try:
            self.local_ips = {"127.0.0.1", "localhost", get_ip()}
        except OSError:
            self.local_ips = {"127.0.0.1", "localhost"}
        client.subscribe_topic(self.topic, self.on_event)

    def on_event(self, event) -> None:  # on the client's event loop
        _, msg = event
        if "marker" in msg:
            waiter = self.markers.get(msg["marker"])
            if waiter is not None:
                waiter.release()
            return
        stream = sys.stderr if msg["stream"] == "err" else sys.stdout
        ip = "" if msg["ip"] in self.local_ips else f", ip={msg['ip']}"
        pre, post = ("", "") if os.environ.get("RAY_COLOR_PREFIX") == "0" else (_CYAN, _RESET_ALL)
        head = f"{pre}({msg['name']} pid={msg['pid']}{ip}){post} "
        lines = self._draw_bars(msg["lines"])
        bars = progress_bars.existing()
        try:
            if lines:
                if bars is not None:
                    bars.hide_bars()
                stream.write("".join(f"{head}{line}\n" for line in lines))
                stream.flush()
        except Exception:  # noqa: BLE001 - a closed terminal must not break the client
            pass
        finally:
            if bars is not None:
                bars.unhide_bars()

    @staticmethod
    def _draw_bars(lines: list) -> list:
        """Hand ``tqdm_ray``'s bar states to the bar manager; return the other lines."""
        rest = []
        for line in lines:
            if progress_bars.RAY_TQDM_MAGIC in line:
                try:
                    progress_bars.process_line(line)
                except Exception:  # noqa: BLE001 - a closed terminal must not break the client
                    pass
            else:
                rest.append(line)
        return rest

    def drain(self, timeout: float = 2.0) -> None:
        """Wait, at most ``timeout`` seconds in all, until every worker's output sent so
        far has been printed."""
        import time

        token = uuid.uuid4().hex
        arrived = threading.Semaphore(0)
        self.markers[token] = arrived
        deadline = time.monotonic() + timeout
        try:
            workers = list(self.client.scheduler_info(n_workers=-1)["workers"])
            self.client.run(mark, self.topic, token, workers=workers, wait=False)
            for _ in workers:
                if not arrived.acquire(timeout=max(0.0, deadline - time.monotonic())):
                    break
        except Exception:  # noqa: BLE001 - best effort at shutdown
            pass
        finally:
            self.markers.pop(token, None)
