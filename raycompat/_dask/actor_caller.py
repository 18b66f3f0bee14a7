"""The caller side of a Ray actor: numbering, batching and sending calls (``Caller``).

A caller numbers its calls; the calls a program issues in a burst are sent as one RPC
(up to ``MAX_BATCH``; one call per RPC for actors whose calls may overlap), straight to
the actor's worker, not through the scheduler. Restarts: see ``restarts.py``.
"""

from __future__ import annotations

import asyncio
import pickle
import threading
import uuid
import weakref
from typing import Optional

import cloudpickle
from distributed import Future

from raycompat import exceptions as rex
from raycompat._dask import host_pool, node_loss, references, restarts
from raycompat._dask.actor_host import host_actor
from raycompat._dask.keys import new_key
from raycompat._dask import refs as _refs
from raycompat._dask.actor_errors import actor_died
from raycompat._dask.actor_rpc import ACTOR_CONNECT_TIMEOUT, actor_rpc
from raycompat._dask.actor_shell import Shell


MAX_BATCH = 256


#: (client id, worker address) -> the callers of actors on that worker.
_watched: dict = {}


def _watch_worker(client, address: str, caller) -> None:
    """Hear from the scheduler when ``address`` is removed, and then abort the calls in
    flight to it. A worker whose process died is noticed at once by its connection, but
    one whose host went silent (cut off, powered down) only when TCP gives up
    (``distributed.comm.timeouts.tcp``, 30 s), while the scheduler removes it after its
    heartbeats stop (``worker-ttl``); Ray's callers likewise learn of a dead node from
    the GCS. The scheduler logs each removal under the worker's address."""
    key = (client.id, address)
    callers = _watched.get(key)
    if callers is None:
        for gone in [k for k, v in _watched.items() if not v and k[0] == client.id]:
            del _watched[gone]  # no caller left for that worker: stop hearing of it
            client.unsubscribe_topic(gone[1])
        callers = _watched[key] = weakref.WeakSet()

        def on_event(event, key=key):
            _, msg = event
            if isinstance(msg, dict) and msg.get("action") == "remove-worker":
                for watcher in list(_watched.pop(key, ())):
                    for comm in list(watcher.open_comms):
                        comm.abort()
                try:
                    client.unsubscribe_topic(address)
                except Exception:  # noqa: BLE001 - the client is closing
                    pass

        client.subscribe_topic(address, on_event)
    callers.add(caller)


async def _hosts_alive(client, placement: dict) -> bool:
    """Whether an actor restricted to some hosts (hard node affinity) has a worker on one
    of them, waiting up to ``node_loss.GRACE`` seconds for one (a restarting worker)."""
    hosts = placement.get("workers")
    if not hosts or placement.get("allow_other_workers"):
        return True
    deadline = asyncio.get_running_loop().time() + node_loss.GRACE
    while True:
        info = await client.scheduler.identity(n_workers=-1)
        if any(w.get("host") in hosts or a in hosts for a, w in info.get("workers", {}).items()):
            return True
        if asyncio.get_running_loop().time() > deadline:
            return False
        await asyncio.sleep(0.25)


class Caller:
    """One process's channel to one actor: numbering, batching, sending, replies.

    If the actor's worker dies, the first caller to notice re-creates it while
    ``max_restarts`` allows (the state is on the scheduler, see ``restarts.py``), by
    running the constructor again on a live worker, as Ray does; every caller then
    follows the new incarnation. Calls in flight fail with ``ActorUnavailableError``, or
    are sent again while ``max_task_retries`` allows.
    """

    def __init__(self, client, actor_id: str, creation_future, class_name: str,
                 max_task_retries: int = 0, concurrent: bool = False):
        self.client = client
        #: A batch is answered when all its calls are done: calls that may overlap (async,
        #: threads, groups) go one per RPC so a quick call is not held up by a slow one;
        #: sequential actors batch up to MAX_BATCH calls per RPC.
        self.batch_size = 1 if concurrent else MAX_BATCH
        self.actor_id = actor_id
        self.class_name = class_name
        self.creation = creation_future
        self.max_task_retries = max_task_retries
        self.incarnation = 0
        self.caller_id = f"{client.id}/{uuid.uuid4().hex[:8]}"
        self.seq = 0
        self.pending: list = []
        self.flush_scheduled = False
        self.lock = threading.Lock()
        self.address: Optional[str] = None
        self.dead: Optional[BaseException] = None
        self.killed = False
        self.inflight: set = set()
        self.restart_lock: Optional[asyncio.Lock] = None
        #: Ray's max_pending_calls (-1: no limit) and the calls not answered yet.
        self.max_pending = -1
        self.pending_count = 0
        #: This caller's calls not answered yet (``ray.kill`` fails them at once).
        self.outstanding: set = set()
        #: Connections with a batch in flight, aborted when the scheduler removes the
        #: actor's worker (``_watch_worker``).
        self.open_comms: set = set()

    def fail_outstanding(self, error: BaseException) -> None:
        """On the client's loop: fail every call not answered yet (the actor was killed)."""
        for ref in list(self.outstanding):
            if not ref.done():
                ref._finish("error", exception=error)

    def track_pending(self, backing) -> None:
        with self.lock:
            self.pending_count += 1

        def done(_):
            with self.lock:
                self.pending_count -= 1

        backing._callbacks.append(done)

    def call(self, method: str, args_blob, num_returns: int, results: list, retries_left=None) -> None:
        if retries_left is None:
            retries_left = self.max_task_retries
        for ref in results:
            if ref not in self.outstanding:
                self.outstanding.add(ref)
                ref._callbacks.append(self.outstanding.discard)
        with self.lock:
            self.pending.append((method, args_blob, num_returns, results, retries_left))
            if not self.flush_scheduled:
                self.flush_scheduled = True
                self.client.loop.add_callback(self._flush)

    async def _flush(self):
        with self.lock:
            pending, self.pending = self.pending, []
            self.flush_scheduled = False
            caller_id, incarnation = self.caller_id, self.incarnation
            sends = []
            for i in range(0, len(pending), self.batch_size):
                batch = pending[i : i + self.batch_size]
                sends.append((self.seq, batch))
                self.seq += len(batch)
        for first, batch in sends:
            task = asyncio.ensure_future(self._send(caller_id, incarnation, first, batch))
            self.inflight.add(task)
            task.add_done_callback(self.inflight.discard)

    async def _address(self) -> str:
        if self.address is None:
            creation = self.creation
            await creation._state.wait()
            if creation.status != "finished":
                # The shell's constructor never raises (a failing __init__ is reported by
                # the calls), so an erred creation means its worker died.
                raise _WorkerLost(f"the actor's worker died ({creation._state.exception!r})", delivered=False)
            who = await self.client.scheduler.who_has(keys=[creation.key])
            addrs = who.get(creation.key) or []
            if not addrs:
                raise _WorkerLost("the actor's worker is gone", delivered=False)
            self.address = addrs[0]
            _watch_worker(self.client, self.address, self)
        return self.address

    async def _send(self, caller_id: str, incarnation: int, first: int, batch: list) -> None:
        try:
            if self.dead is not None:
                raise self.dead
            address = await self._address()
            blob = cloudpickle.dumps(
                (caller_id, first, [(m, a, n, refs[0].key) for m, a, n, refs, _ in batch]), protocol=5
            )
            try:
                comm = await self.client.rpc.connect(address, timeout=ACTOR_CONNECT_TIMEOUT)
            except (OSError, EnvironmentError) as e:
                raise _WorkerLost(f"{type(e).__name__}: {e}", delivered=False) from None
            self.open_comms.add(comm)
            try:
                reply = await actor_rpc(self.client, address, self.creation.key, "call_batch", (blob,), comm)
            except (OSError, EnvironmentError) as e:
                raise _WorkerLost(f"{type(e).__name__}: {e}") from None
            finally:
                self.open_comms.discard(comm)
            if reply["status"] != "OK":
                exc = reply.get("exception")
                if isinstance(exc, KeyError):  # the worker no longer has the actor
                    raise _WorkerLost("the actor's worker restarted", delivered=False)
                raise exc or RuntimeError(str(reply))
            results = pickle.loads(reply["result"])
        except _WorkerLost as lost:
            try:
                await self._on_worker_lost(incarnation, batch, str(lost), lost.delivered)
            except Exception as e:  # noqa: BLE001 - e.g. the client is closing
                err = actor_died(self.actor_id, self.class_name, f"The actor could not be reached ({e}).")
                for _, _, _, refs, _ in batch:
                    for ref in refs:
                        if not ref.done():
                            ref._finish("error", exception=err)
            return
        except rex.RayError as e:
            if isinstance(e, rex.RayActorError):
                self.dead = e
            results = [("dead", e)] * len(batch)
        except Exception as e:  # noqa: BLE001 - anything else ends the actor for this caller
            self.dead = actor_died(self.actor_id, self.class_name, f"The actor failed: {type(e).__name__}: {e}")
            results = [("dead", self.dead)] * len(batch)
        for (_, _, _, refs, _), (status, value) in zip(batch, results):
            for ref in refs:
                if status == "ok":
                    ref._finish("finished", value)
                elif status == "ok-held":
                    ref._finish("finished", value[0], held_key=value[1])
                else:
                    ref._finish("error", exception=value)

    async def _on_worker_lost(self, incarnation: int, batch: list, why: str, delivered: bool = True) -> None:
        if self.restart_lock is None:
            self.restart_lock = asyncio.Lock()
        async with self.restart_lock:
            if self.incarnation == incarnation and self.dead is None:
                if self.killed:
                    verdict = ("dead", None, 0)
                else:
                    while True:
                        verdict = await self.client._run_on_scheduler(
                            restarts.claim, actor_id=self.actor_id, old_key=self.creation.key
                        )
                        if verdict[0] != "wait":
                            break
                        await asyncio.sleep(0.05)
                kind, value, self.max_task_retries = verdict
                if kind == "dead":
                    self.dead = actor_died(
                        self.actor_id, self.class_name,
                        f"The actor is dead because its worker process has died ({why}).",
                    )
                elif kind == "moved":
                    self._follow(Future(value, self.client), rebound=True)
                else:
                    cls_blob, args_blob, meta, placement = pickle.loads(value)
                    if not await _hosts_alive(self.client, placement):
                        # Hard node affinity to a node that died: Ray cannot place it again.
                        await self.client._run_on_scheduler(restarts.forget, actor_id=self.actor_id)
                        self.dead = actor_died(
                            self.actor_id, self.class_name,
                            "The actor is dead because its node died and it may run on no other "
                            "(NodeAffinitySchedulingStrategy with soft=False).",
                        )
                if self.dead is None and kind == "restart":
                    fut = start_actor(
                        self.client, new_key(self.class_name), cls_blob, args_blob,
                        dict(meta, reconstructed=True), placement,
                    )
                    # Commit only once the scheduler has the new actor (our submission and
                    # the commit travel on different connections).
                    await fut._state.wait()
                    await self.client._run_on_scheduler(restarts.commit, actor_id=self.actor_id, new_key=fut.key)
                    self._follow(fut, rebound=False)
        for method, args_blob, num_returns, refs, retries_left in batch:
            if self.dead is not None:
                for ref in refs:
                    ref._finish("error", exception=self.dead)
            elif not delivered:  # it never reached the dead incarnation: send it to the new one
                self.call(method, args_blob, num_returns, refs, retries_left)
            elif retries_left != 0:
                self.call(method, args_blob, num_returns, refs, retries_left - 1 if retries_left > 0 else -1)
            else:
                err = rex.ActorUnavailableError(
                    self.actor_id,
                    f"The actor {self.actor_id} is unavailable: its worker died ({why}). The task may or "
                    "may not have been executed on the actor.",
                )
                for ref in refs:
                    ref._finish("error", exception=err)

    def _follow(self, creation, rebound: bool) -> None:
        """Send later calls to a new incarnation of the actor."""

        if rebound:
            _refs.ask(creation)
        with self.lock:
            self.creation = creation
            self.incarnation += 1
            self.address = None
            self.caller_id = f"{self.client.id}/{uuid.uuid4().hex[:8]}"
            self.seq = 0


class _WorkerLost(Exception):
    """The actor's worker is gone; ``delivered`` says whether the calls may have run."""

    def __init__(self, why: str, delivered: bool = True):
        super().__init__(why)
        self.delivered = delivered


def start_actor(client, key: str, cls_blob, args_blob, meta: dict, placement: dict, owners=()):
    """Create an actor's shell under ``key``; returns its (creation) future at once.

    Where the scheduler keeps actor hosts (the embedded cluster), in a host of its own
    (``actor_host.py``): the key is known to the scheduler at once and wanted by
    ``client`` and ``owners`` (synthetic holders). Elsewhere as a Dask actor, placed by
    the scheduler with ``placement``."""
    if not references.scheduler_has(client, host_pool.HostPool.name):
        return client.submit(Shell, cls_blob, args_blob, meta, actor=True, key=key, pure=False, **placement)
    fut = Future(key, client)
    client._send_to_scheduler({"op": "raycompat-expect", "key": key, "holders": list(owners)})

    async def create():
        try:
            address = await client._run_on_scheduler(host_pool.acquire_remote, key=key)
            await client._run(host_actor, Shell, key, cls_blob, args_blob, meta, workers=[address])
        except Exception as e:  # noqa: BLE001 - callers see a creation that failed
            if not fut.done():
                fut._state.set_error(e, None)

    client.loop.add_callback(create)
    return fut
