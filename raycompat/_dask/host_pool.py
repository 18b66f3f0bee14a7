"""The warm pool of actor hosts on the embedded cluster (see ``actor_host.py``).

Ray starts actors in worker processes it keeps ready. Starting a host costs about a
CPU-second, which slows whatever runs meanwhile (``benchmarks/README.md``, "Object
lifetime and actor processes"), so raycompat starts hosts when actors need them, all a
burst lacks at once, and keeps them: an actor takes an idle host if there is one, which
then costs one ``Client.run``. ``RAYCOMPAT_WARM_ACTOR_HOSTS=N`` keeps N spares started
ahead, refilled a few seconds after one is taken. When an actor's key is forgotten (its
last handle is gone) its host is idle again; a host whose process died (the actor crashed it) comes back
fresh under the same name. Hosts idle beyond ``WARM`` for ``IDLE_SECONDS`` are retired,
so idle memory returns to the floor without a process start and stop per actor (which
would race Dask's broadcasts to every worker, ``ray.cancel``'s among them).

Hosts are workers of the ``LocalCluster`` (``worker_spec`` entries), so they stop with
it. All of this runs on the cluster's event loop, which the scheduler shares: this
scheduler plugin hears of each host as it registers and of each actor key it forgets.
"""

from __future__ import annotations

import asyncio
import copy
import itertools
import os
import time

from distributed.diagnostics.plugin import SchedulerPlugin

from raycompat._dask.actor_host import NAME_PREFIX, HostWorker, is_host

WARM = int(os.environ.get("RAYCOMPAT_WARM_ACTOR_HOSTS", "0"))
IDLE_SECONDS = 10.0
#: Seconds before a warm spare is started (after ``init``, or after one was taken).
WARM_DELAY = 3.0


class HostPool(SchedulerPlugin):
    name = "raycompat-actor-hosts"

    def __init__(self, cluster, warm: int = WARM):
        self.cluster = cluster
        self.scheduler = cluster.scheduler
        self.warm = warm
        self.idle: dict = {}  # name -> (address, idle since)
        self.hosting: dict = {}  # actor key -> (name, address)
        self.starting: set = set()  # names whose process has not registered yet
        self.waiting: list = []  # acquirers' futures, served first come first served
        self._names = itertools.count()
        self.closed = False
        self._reaper = None
        self._warm_pending = False

    # -- on the cluster's loop -------------------------------------------------------
    def add_worker(self, scheduler=None, worker=None) -> None:
        ws = scheduler.workers.get(worker)
        if ws is None or not is_host(ws.name) or self.closed:
            return
        self.starting.discard(ws.name)
        self._free(ws.name, worker)
        self._top_up()

    def remove_worker(self, scheduler=None, worker=None, **kwargs) -> None:
        for name, (address, _) in list(self.idle.items()):
            if address == worker:
                del self.idle[name]

    def transition(self, key, start, finish, *args, **kwargs) -> None:
        if finish == "forgotten" and key in self.hosting:
            name, address = self.hosting.pop(key)
            if address in self.scheduler.workers:  # not a crashed host: it comes back anew
                self._free(name, address)

    def _free(self, name: str, address: str) -> None:
        while self.waiting:
            fut = self.waiting.pop(0)
            if not fut.done():
                fut.set_result((name, address))
                return
        self.idle[name] = (address, time.monotonic())

    async def acquire(self, key: str) -> str:
        """The address of an idle host, now reserved for the actor ``key``."""
        if self.idle:
            name, (address, _) = self.idle.popitem()
            self._top_up()
        else:
            fut = asyncio.get_running_loop().create_future()
            self.waiting.append(fut)
            self._top_up()
            name, address = await fut
        self.hosting[key] = (name, address)
        return address

    def _top_up(self) -> None:
        """Start the hosts acquirers wait for at once; refill the warm spares only after
        ``WARM_DELAY`` seconds, so that starting a process (about a CPU-second) does not
        land on the work that just created an actor, or on ``init``."""
        if self.closed:
            return
        if self._reaper is None:
            self._reaper = asyncio.ensure_future(self._reap())
        self._start(len(self.waiting) - len(self.starting))
        if not self._warm_pending and len(self.idle) + len(self.starting) < self.warm + len(self.waiting):
            self._warm_pending = True
            asyncio.get_running_loop().call_later(WARM_DELAY, self._fill_warm)

    def _fill_warm(self) -> None:
        self._warm_pending = False
        if not self.closed:
            self._start(self.warm + len(self.waiting) - len(self.idle) - len(self.starting))

    def _start(self, count: int) -> None:
        if count <= 0:
            return
        for _ in range(count):
            name = f"{NAME_PREFIX}{next(self._names)}"
            spec = copy.deepcopy(self.cluster.new_spec)
            options = spec.setdefault("options", {})
            options["preload"] = [*(options.get("preload") or []), "raycompat._dask.actor_host"]
            options["worker_class"] = HostWorker
            self.cluster.worker_spec[name] = spec
            self.starting.add(name)
        asyncio.ensure_future(self._correct())

    async def _reap(self) -> None:
        """Retire hosts idle for a while beyond the warm ones."""
        while not self.closed:
            await asyncio.sleep(IDLE_SECONDS / 4)
            now = time.monotonic()
            stale = sorted((since, name) for name, (_, since) in self.idle.items() if now - since > IDLE_SECONDS)
            extra = len(self.idle) - self.warm
            if extra > 0 and stale:
                for _, name in stale[:extra]:
                    del self.idle[name]
                    self.cluster.worker_spec.pop(name, None)
                await self._correct()

    async def _correct(self) -> None:
        try:
            await self.cluster._correct_state()
        except Exception as e:  # noqa: BLE001 - a host did not start, or the cluster closes
            # Whoever waits for a host fails (its actor dies) rather than wait forever.
            for name in list(self.starting):
                if name not in self.cluster.workers:
                    self.starting.discard(name)
                    self.cluster.worker_spec.pop(name, None)
            waiting, self.waiting = self.waiting, []
            for fut in waiting:
                if not fut.done():
                    fut.set_exception(RuntimeError(f"no actor host could be started: {e}"))

    async def close(self) -> None:
        self.closed = True
        if self._reaper is not None:
            self._reaper.cancel()
        for fut in self.waiting:
            if not fut.done():
                fut.set_exception(RuntimeError("the cluster is shutting down"))
        self.waiting.clear()


def install(cluster) -> HostPool:
    pool = HostPool(cluster)
    cluster.scheduler.add_plugin(pool)
    cluster.loop.add_callback(pool._top_up)
    return pool


async def acquire_remote(dask_scheduler, key: str) -> str:
    """``HostPool.acquire`` for ``Client.run_on_scheduler`` (from the driver or a task)."""
    return await dask_scheduler.plugins[HostPool.name].acquire(key)
