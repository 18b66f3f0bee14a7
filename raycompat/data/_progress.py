"""Ray Data's progress for each dataset it runs, in the driver.

Ray 2.60 logs, for each execution, ``Starting execution of Dataset <name>``, its plan, and
``✔️  Dataset <name> execution finished in N seconds`` (checked), and draws a progress
bar per running dataset in a terminal (``DataContext.enable_progress_bars``; in a
non-interactive terminal it logs the progress instead). raycompat logs the same start,
plan and end lines through the ``raycompat.data`` logger, and in a terminal with tqdm
draws one bar of the blocks done, closed when the execution ends.
"""

from __future__ import annotations

import itertools
import logging
import sys
import time
import uuid

from raycompat.data.context import DataContext

logger = logging.getLogger("raycompat.data")
_runs = itertools.count()


class DatasetProgress:
    def __init__(self, plan: list):
        self.name = f"dataset_{uuid.uuid4().hex[:22]}_{next(_runs)}"
        self.started = time.perf_counter()
        self.done = 0
        self.finished = False
        logger.info("Starting execution of Dataset %s.", self.name)
        logger.info("Execution plan of Dataset %s: InputDataBuffer[Input] -> %s", self.name,
                    " -> ".join(plan) or "Input")
        self.bar = None
        if getattr(DataContext.get_current(), "enable_progress_bars", True) and sys.stderr.isatty():
            try:
                from tqdm.auto import tqdm
            except ImportError:
                return
            self.bar = tqdm(desc=f"Running Dataset: {self.name}", unit=" blocks", leave=False)

    def block_done(self, n: int = 1) -> None:
        self.done += n
        if self.bar is not None:
            self.bar.update(n)

    def finish(self) -> None:
        if self.finished:
            return
        self.finished = True
        if self.bar is not None:
            self.bar.close()
        logger.info("✔️  Dataset %s execution finished in %.2f seconds", self.name,
                    time.perf_counter() - self.started)
