"""The driver's end of ``ray.experimental.tqdm_ray``: bar states become bars on screen.

Ray (2.60, read and measured): a ``tqdm_ray.tqdm`` in a task or actor prints its state as
one JSON line holding a magic token; the driver's log monitor hands such lines, instead
of printing them, to a bar manager that keeps one real ``tqdm.auto`` bar per remote bar
(``desc`` prefixed with ``(pid=N) ``, or ``(pid=N, ip=IP) `` from another node, dim cyan
outside notebooks; ``unit_scale=True``, ``dynamic_ncols=True``), stacks the bars of each
worker process at positions of their own, clears them while other worker output is
printed, and patches ``builtins.print`` so the driver's own prints do the same
(``RAY_TQDM_PATCH_PRINT=0`` keeps the builtin). A bar made in the driver goes straight to
the manager, without prefix. tqdm is needed in the driver only; without it Ray warns
"tqdm is not installed. Progress bars will be disabled." and shows nothing.

The mapping: the same manager, fed by ``output.Printer`` (the lines arrive with the rest
of the worker's output, as Dask events). Without tqdm we print each new state of a bar as
one plain line instead (``(pid=N) desc: x/total unit``, ``[done]`` once closed): a
difference from Ray, which shows nothing then.
"""

from __future__ import annotations

import atexit
import builtins
import json
import logging
import os
import sys
import threading
from typing import Any, Dict, Optional

from distributed.utils import get_ip, is_kernel

try:
    import tqdm.auto as real_tqdm
except ImportError:
    real_tqdm = None

logger = logging.getLogger(__name__)

ProgressBarState = Dict[str, Any]

#: The token that marks a line as a bar's state (Ray's ``RAY_TQDM_MAGIC``).
RAY_TQDM_MAGIC = "__ray_tqdm_magic_token__"

# colorama's Style.DIM, Fore.CYAN and Style.RESET_ALL, as Ray's bar prefixes use them.
_DIM, _CYAN, _RESET_ALL = "\x1b[2m", "\x1b[36m", "\x1b[0m"

_print = builtins.print
_manager: Optional["_BarManager"] = None
_mgr_lock = threading.Lock()


def safe_print(*args, **kwargs):
    """``print`` that does not break the bars on screen (Ray's ``tqdm_ray.safe_print``)."""
    if kwargs.get("file") not in [sys.stdout, sys.stderr, None]:
        return _print(*args, **kwargs)
    try:
        instance().hide_bars()
        _print(*args, **kwargs)
    finally:
        instance().unhide_bars()


def _local_ips() -> set:
    try:
        return {"127.0.0.1", "localhost", get_ip()}
    except OSError:
        return {"127.0.0.1", "localhost"}


class _Bar:
    """One remote bar as a real tqdm bar at ``pos_offset + state["pos"]``."""

    def __init__(self, state: ProgressBarState, pos_offset: int):
        self.state = state
        self.pos_offset = pos_offset
        self.bar = real_tqdm.tqdm(
            desc=state["desc"], total=state["total"], unit=state["unit"],
            position=pos_offset + state["pos"], dynamic_ncols=True, unit_scale=True,
        )
        if state["x"]:
            self.bar.update(state["x"])

    def update(self, state: ProgressBarState) -> None:
        if state["desc"] != self.state["desc"]:
            self.bar.set_description(state["desc"])
        if state["total"] != self.state["total"]:
            self.bar.total = state["total"]
            self.bar.refresh()
        delta = state["x"] - self.state["x"]
        if delta:
            self.bar.update(delta)
        self.bar.refresh()
        self.state = state

    def close(self) -> None:
        self.bar.close()

    def update_offset(self, pos_offset: int) -> None:
        if pos_offset != self.pos_offset:
            self.pos_offset = pos_offset
            self.bar.clear()
            self.bar.pos = -(pos_offset + self.state["pos"])
            self.bar.refresh()

    def hide(self) -> None:
        self.bar.clear()

    def unhide(self) -> None:
        self.bar.refresh()


class _PlainBar:
    """A bar without tqdm: each new state is one line on stderr."""

    def __init__(self, state: ProgressBarState, pos_offset: int):
        self.state = None
        self.pos_offset = pos_offset
        self.update(state)

    def update(self, state: ProgressBarState) -> None:
        shown = (state["desc"], state["x"], state["total"], state["closed"])
        if self.state is None or shown != (self.state["desc"], self.state["x"], self.state["total"], self.state["closed"]):
            total = "?" if state["total"] is None else state["total"]
            done = " [done]" if state["closed"] else ""
            desc = f"{state['desc']}: " if state["desc"] else ""
            try:
                sys.stderr.write(f"{desc}{state['x']}/{total} {state['unit']}{done}\n")
                sys.stderr.flush()
            except Exception:  # noqa: BLE001 - a closed terminal must not break the client
                pass
        self.state = state

    def close(self) -> None:
        pass

    def update_offset(self, pos_offset: int) -> None:
        self.pos_offset = pos_offset

    def hide(self) -> None:
        pass

    def unhide(self) -> None:
        pass


class _BarGroup:
    """The bars of one worker process, stacked from the group's ``pos_offset``."""

    def __init__(self, pos_offset: int):
        self.pos_offset = pos_offset
        self.bars_by_uuid: Dict[str, Any] = {}

    def slots_required(self) -> int:
        if not self.bars_by_uuid:
            return 0
        return 1 + max(bar.state["pos"] for bar in self.bars_by_uuid.values())

    def update_offset(self, offset: int) -> None:
        if offset != self.pos_offset:
            self.pos_offset = offset
            for bar in self.bars_by_uuid.values():
                bar.update_offset(offset)


class _BarManager:
    """The driver's bars (Ray's ``_BarManager``): one group per worker process, the
    groups stacked one below the other as bars come and go."""

    def __init__(self):
        self.pid = os.getpid()
        self.local_ips = _local_ips()
        self.bar_groups: Dict[tuple, _BarGroup] = {}
        self.in_hidden_state = False
        self.lock = threading.RLock()
        # Ray leaves notebook bars uncoloured: tqdm draws them as widgets there.
        self.should_colorize = not is_kernel()
        self.bar_class = _Bar if real_tqdm is not None else _PlainBar

    def process_state_update(self, state: ProgressBarState) -> None:
        """Show a bar's new state: make its bar if it is new, close it if it closed."""
        with self.lock:
            state["desc"] = self._prefix(state) + state["desc"]
            key = (state["ip"], state["pid"])
            group = self.bar_groups.get(key)
            if group is None:
                offset = sum(g.slots_required() for g in self.bar_groups.values())
                group = self.bar_groups[key] = _BarGroup(offset)
            bar = group.bars_by_uuid.get(state["uuid"])
            if bar is None:
                group.bars_by_uuid[state["uuid"]] = self.bar_class(state, group.pos_offset)
                self._update_offsets()
                return
            bar.update(state)  # the last updates before closing, too
            if state["closed"]:
                self.hide_bars()  # so the next bar does not flash while this one goes
                bar.close()
                del group.bars_by_uuid[state["uuid"]]
                self.unhide_bars()
                self._update_offsets()

    def _prefix(self, state: ProgressBarState) -> str:
        if state["ip"] in self.local_ips or state["ip"] == "":
            if state["pid"] == self.pid:
                return ""
            prefix = f"(pid={state['pid']}) "
        else:
            prefix = f"(pid={state['pid']}, ip={state['ip']}) "
        return f"{_DIM}{_CYAN}{prefix}{_RESET_ALL}" if self.should_colorize else prefix

    def _update_offsets(self) -> None:
        offset = 0
        for group in self.bar_groups.values():
            group.update_offset(offset)
            offset += group.slots_required()

    def hide_bars(self) -> None:
        """Clear the bars off the screen while something else is printed."""
        with self.lock:
            if not self.in_hidden_state:
                self.in_hidden_state = True
                for group in self.bar_groups.values():
                    for bar in group.bars_by_uuid.values():
                        bar.hide()

    def unhide_bars(self) -> None:
        with self.lock:
            if self.in_hidden_state:
                self.in_hidden_state = False
                for group in self.bar_groups.values():
                    for bar in group.bars_by_uuid.values():
                        bar.unhide()


def _close_at_exit() -> None:
    """Leave the bars still open as they were, each on its own line (Ray's driver ends
    so, its bars closed as they are collected)."""
    manager = _manager
    if manager is None:
        return
    with manager.lock:
        for group in manager.bar_groups.values():
            for bar in group.bars_by_uuid.values():
                try:
                    bar.close()
                except Exception:  # noqa: BLE001 - the terminal may be gone
                    pass
            group.bars_by_uuid.clear()


def instance() -> _BarManager:
    """This process's bar manager; the first call patches ``print`` as Ray does."""
    global _manager
    with _mgr_lock:
        if _manager is None:
            _manager = _BarManager()
            atexit.register(_close_at_exit)
            if os.environ.get("RAY_TQDM_PATCH_PRINT", "1").lower() not in ("0", "false"):
                builtins.print = safe_print
        return _manager


def existing() -> Optional[_BarManager]:
    """The bar manager if some bar made one, else None (other output needs none)."""
    return _manager


def process_line(line: str) -> None:
    """A worker's line holding ``RAY_TQDM_MAGIC``: apply the state it carries."""
    try:
        state = json.loads(line)
    except ValueError:
        if not getattr(process_line, "warned", False):
            process_line.warned = True
            logger.warning(
                f"[tqdm_ray] Failed to decode {line}, this may be due to logging too fast. "
                "This warning will not be printed again."
            )
        return
    instance().process_state_update(state)
