"""A worker killed for using too much memory: Ray's ``OutOfMemoryError``.

Ray's memory monitor kills a worker when its node's memory use passes a threshold
(0.95); the task fails with ``OutOfMemoryError`` if it has ``max_retries=0`` and is
retried otherwise. Dask's nanny does the same per worker process: past
``distributed.worker.memory.terminate`` (0.95) of the worker's memory limit it
terminates the worker and logs a ``worker-restart-memory`` event on the scheduler (the
worker's address, pid and RSS), and the task is retried until its ``max_retries`` are
used up (``retries.py``), then fails with ``KilledWorker``. If the worker the task last
ran on was killed for memory, ``ray.get`` raises ``OutOfMemoryError`` with Ray's text
instead of ``WorkerCrashedError``. The events are the scheduler's own, so this needs no
raycompat on a joined cluster's scheduler.
"""

from __future__ import annotations

import time

from distributed.comm import get_address_host

TOPIC = "worker-restart-memory"
#: How long to wait for the nanny's event, which may reach the scheduler after the
#: worker's removal (the nanny reports it on its own connection).
EVENT_WAIT = 0.5


#: worker address -> its memory-kill event or None, once looked up: many tasks fail
#: with one worker (a get of each must not wait ``EVENT_WAIT`` again).
_verdicts: dict = {}
_MAX_VERDICTS = 10_000


def memory_kill(client, worker_address: str) -> "dict | None":
    """The nanny's event for killing ``worker_address`` for memory, or None."""
    if worker_address in _verdicts:
        return _verdicts[worker_address]
    deadline = time.monotonic() + EVENT_WAIT
    found = None
    while found is None:
        try:
            events = client.get_events(TOPIC)
        except Exception:  # noqa: BLE001 - the scheduler is gone: not a memory kill we can tell
            return None
        found = next((msg for _, msg in reversed(events) if msg.get("worker") == worker_address), None)
        if found is None and time.monotonic() > deadline:
            break
        if found is None:
            time.sleep(0.1)
    if len(_verdicts) >= _MAX_VERDICTS:
        _verdicts.clear()
    _verdicts[worker_address] = found  # a worker's address is not reused by a new process
    return found


def message(event: dict, task_name: str, memory_limit: "float | None") -> str:
    """Ray's ``OutOfMemoryError`` text, with what Dask knows."""
    ip = get_address_host(event["worker"])
    used = event.get("rss", 0) / 1e9
    limit = f"{memory_limit / 1e9:.2f}GB" if memory_limit else "its memory limit"
    return (
        "Task was killed due to the node running low on memory.\n"
        f"Memory on the node (IP: {ip}) where the task ({task_name}, pid={event.get('pid')}, memory "
        f"used={used:.2f}GB) was running went past the kill threshold of its worker's memory "
        f"limit, {limit} (distributed.worker.memory.terminate, 0.95 by default). Dask's nanny "
        f"killed this worker ({event['worker']}).\n"
        "Refer to the documentation on how to address the out of memory issue: "
        "https://docs.ray.io/en/latest/ray-core/scheduling/ray-oom-prevention.html. Consider "
        "provisioning more memory on this node or reducing task parallelism by requesting more "
        "CPUs per task. To adjust the kill threshold, set the Dask setting "
        "`distributed.worker.memory.terminate` or the worker's memory limit."
    )
