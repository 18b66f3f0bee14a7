"""``ray.experimental.tqdm_ray``: tqdm progress bars from tasks and actors, drawn once,
in the driver.

Ray (2.60): ``tqdm(iterable=None, desc=None, total=None, unit=None, position=None,
flush_interval_s=None)`` keeps the bar's state (``n``, ``total``, ``desc``...) and sends
it on the first ``update``/``refresh``/``set_description`` and then at most once per
``flush_interval_s`` (1 s), and always on ``close``; iterating updates by 1 before each
item and does not close the bar (so its last state may never be sent). In a worker the
state goes out as one JSON line holding ``RAY_TQDM_MAGIC`` on stdout, which the driver
draws as a real bar instead of printing it (see ``raycompat._dask.progress_bars``); in
the driver it goes to the bar manager directly. ``safe_print`` prints without breaking
the bars.

The mapping: a worker's line travels with the task's other output (``output.py``: a
Dask event to the driver), and the driver's ``output.Printer`` hands it to the bar
manager.
"""

from __future__ import annotations

import copy
import json
import os
import time
import uuid
from typing import Iterable, Optional

from distributed import get_worker
from distributed.utils import get_ip

from raycompat._dask import context as _context
from raycompat._dask import output as _output
from raycompat._dask.progress_bars import RAY_TQDM_MAGIC, ProgressBarState, instance, safe_print

__all__ = ["tqdm", "safe_print", "instance", "RAY_TQDM_MAGIC"]


def _node_ip() -> str:
    try:
        return get_worker().ip
    except ValueError:  # not in a worker: the driver
        try:
            return get_ip()
        except OSError:
            return "127.0.0.1"


def _in_worker() -> bool:
    """Is this a task's or actor's process, whose stdout goes to the driver?"""
    return _context.current_task() is not None or _output.installed()


class tqdm:
    """Experimental: Ray distributed tqdm implementation.

    Use it in a task or actor like ``tqdm.tqdm``; the driver shows the bar. Supports
    Ray's subset of tqdm's arguments.
    """

    DEFAULT_FLUSH_INTERVAL_SECONDS = 1.0

    def __init__(
        self,
        iterable: Optional[Iterable] = None,
        desc: Optional[str] = None,
        total: Optional[int] = None,
        unit: Optional[str] = None,
        position: Optional[int] = None,
        flush_interval_s: Optional[float] = None,
    ):
        if total is None and iterable is not None:
            try:
                total = len(iterable)
            except (TypeError, AttributeError):
                total = None
        self._iterable = iterable
        self._desc = desc or ""
        self._total = total
        self._unit = unit or "it"
        self._ip = _node_ip()
        self._pid = os.getpid()
        self._pos = position or 0
        self._uuid = uuid.uuid4().hex
        self._x = 0
        self._closed = False
        self._flush_interval_s = (
            flush_interval_s if flush_interval_s is not None else self.DEFAULT_FLUSH_INTERVAL_SECONDS
        )
        self._last_flush_time = 0.0

    def set_description(self, desc):
        """Implements tqdm.tqdm.set_description."""
        self._desc = desc
        self._dump_state()

    def update(self, n=1):
        """Implements tqdm.tqdm.update."""
        self._x += n
        self._dump_state()

    def close(self):
        """Implements tqdm.tqdm.close."""
        self._closed = True
        self._dump_state(force_flush=True)

    def refresh(self):
        """Implements tqdm.tqdm.refresh."""
        self._dump_state()

    @property
    def total(self) -> Optional[int]:
        return self._total

    @total.setter
    def total(self, total: int):
        self._total = total

    @property
    def n(self) -> int:
        return self._x

    @n.setter
    def n(self, n: int):
        self._x = n

    def _dump_state(self, force_flush=False) -> None:
        now = time.time()
        if not force_flush and now - self._last_flush_time < self._flush_interval_s:
            return
        self._last_flush_time = now
        if _in_worker():
            # One write with its newline, so no other output splits the line.
            print(json.dumps(self._get_state()) + "\n", end="")
        else:
            instance().process_state_update(copy.deepcopy(self._get_state()))

    def _get_state(self) -> ProgressBarState:
        return {
            "__magic_token__": RAY_TQDM_MAGIC,
            "x": self._x,
            "pos": self._pos,
            "desc": self._desc,
            "total": self._total,
            "unit": self._unit,
            "ip": self._ip,
            "pid": self._pid,
            "uuid": self._uuid,
            "closed": self._closed,
        }

    def __iter__(self):
        if self._iterable is None:
            raise ValueError("No iterable provided")
        for x in iter(self._iterable):
            self.update(1)
            yield x
