"""The worker side of a Ray actor: a ``Shell`` around the user's instance.

The user's instance lives inside a ``Shell``: on the embedded cluster in an actor host of
its own (``actor_host.py``), on a joined cluster as a Dask actor (so Dask places it, keeps
it while a client wants its key, and drops it when none does). Only the shell's
coroutines (``call_batch``, ``cancel_calls``, ``kill``) are invoked over RPC; they run on
the worker's event loop and hand calls to the shell's *own* executors
(``max_concurrency`` threads per concurrency group, or an event-loop thread for async
actors), so actors on one worker never block each other. The shell admits each caller's
batches in sequence order, so one caller's calls run in submission order even when RPCs
overtake each other. Why this design and not Dask's actors as they are, or a task per
call: ``shared/docs/ray-on-dask.md`` 3.4 and ``benchmarks/README.md``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import contextvars
import inspect
import os
import pickle
import threading
import time
from typing import Optional

import cloudpickle
from distributed import secede

from raycompat import exceptions as rex
from raycompat._dask import context as _context
from raycompat._dask import output, process_env, references
from raycompat._dask import runtime_env_apply as _runtime_env
from raycompat._dask import results, stream_publish
from raycompat._dask.keys import new_key
from raycompat._dask.serialization import Sealed
from raycompat._dask.worker_task import _drain, _task_error_text, shape_returns
from raycompat._dask import api
from raycompat._dask.refs import ObjectRef
from raycompat._dask.ledger import process_ledger
from raycompat._dask import placement_groups as _placement_groups
from raycompat._dask.observability import TOPIC
from raycompat._dask.actor_errors import EXITED, KILLED, ActorExit, actor_died, init_failed


class Shell:
    """Holds one Ray actor instance on a Dask worker and runs its calls in order."""

    def __init__(self, cls_blob: bytes, args_blob: Optional[bytes], meta: dict):
        self.meta = meta
        self.actor_id = meta["actor_id"]
        self.class_name = meta["class_name"]
        self.dead: Optional[rex.RayError] = None
        self.next_seq: dict[str, int] = {}
        self.seq_cond: Optional[asyncio.Condition] = None
        self.is_async = meta["is_async"]
        self.instance = None
        self.pid = os.getpid()
        self.records: list = []  # (Class.method, start, stop, thread) since the last report
        self.cancelled: set = set()  # keys of calls ray.cancel reached before they ran
        self._env_lock = threading.Lock()
        self._env_users = 0
        self._env_saved: dict = {}
        self.running: dict = {}  # key -> TaskContext of the calls running now
        self.async_tasks: dict = {}  # key -> asyncio task, for async actors
        #: Calls admitted and not answered yet (``__ray_terminate__`` waits for them).
        self.admitted: set = set()
        self.terminating = False
        try:
            from distributed import get_worker

            self.worker = get_worker()
        except ValueError:
            self.worker = None
        # This runs in a Dask task thread, where get_worker()/get_client() work (they read
        # a ContextVar). The actor's own threads run every call in a copy of this context.
        self._ctx = contextvars.copy_context()
        #: method name -> concurrency group; group -> its size (Ray's concurrency_groups).
        self.method_groups: dict = meta.get("method_groups") or {}
        groups = dict(meta.get("concurrency_groups") or {})
        self.semaphores: dict = {}
        if self.is_async:
            self.loop = asyncio.new_event_loop()
            self.loop_thread = threading.Thread(
                target=self._ctx.copy().run, args=(self.loop.run_forever,),
                name=f"ray-actor-{self.class_name}", daemon=True,
            )
            self.loop_thread.start()
            self.group_sizes = {None: meta["max_concurrency"], **groups}
            self.executor = None
            self.executors = {}
        else:
            self.executor = concurrent.futures.ThreadPoolExecutor(
                meta["max_concurrency"], thread_name_prefix=f"ray-actor-{self.class_name}"
            )
            self.executors = {None: self.executor}
            for group, size in groups.items():
                self.executors[group] = concurrent.futures.ThreadPoolExecutor(
                    size, thread_name_prefix=f"ray-actor-{self.class_name}-{group}"
                )
        # Resources: like Ray, an actor needs its request (default 1 CPU) to be placed and
        # holds only what was asked for explicitly while it lives (embedded cluster ledger).

        self.ledger = process_ledger()
        self.held = None
        self._release_lock = threading.Lock()
        placing = meta.get("placement_request") or {}
        group = meta.get("placement_group")
        if group is not None:  # its bundle's resources, once the group is made
            try:
                self.ledger = _placement_groups.take(group[0], group[1], placing, give_up=lambda: False)
            except rex.TaskPlacementGroupRemoved:
                raise rex.ActorPlacementGroupRemoved(
                    "The placement group corresponding to this Actor has been removed."
                ) from None
        elif self.ledger is not None and placing:
            self.ledger.acquire(placing)
        try:
            # The constructor runs in the actor's own thread, like every method. It may
            # block in ``ray.get`` (actors often fetch their state there): so this Dask
            # task leaves the pool if it waits long, and the constructor gives back the
            # placement CPU while blocked (Ray 2.60, checked: 4 such actors on 2 CPUs
            # start; before, 2 deadlocked).
            fut = (self.executor or concurrent.futures.ThreadPoolExecutor(1)).submit(
                self._ctx.copy().run, self._construct, cls_blob, args_blob
            )
            if meta.get("hosted"):  # a process of its own (actor_host.py): no pool to leave
                fut.result()
            else:
                try:
                    fut.result(timeout=0.01)
                except concurrent.futures.TimeoutError:
                    secede()  # this runs as Dask's actor-creation task: leave its pool
                    fut.result()
        finally:
            if self.ledger is not None and placing:
                self.ledger.release(placing)
        lifetime = meta.get("lifetime_request") or {}
        if self.ledger is not None and lifetime and self.dead is None:
            self.ledger.acquire(lifetime)
            self.held = lifetime

    def __del__(self):
        # Dask drops the shell when no client wants the actor any more: stop its threads.
        try:
            self._release()
            if self.is_async:
                self.loop.call_soon_threadsafe(self.loop.stop)
            for executor in self.executors.values():
                executor.shutdown(wait=False)
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass

    @contextlib.contextmanager
    def _env(self):
        """The actor's ``runtime_env`` (env_vars, and working_dir/py_modules/pip through
        ``runtime_env.enter``), applied while any of its calls runs.

        Ray gives an actor a process of its own; here it shares a worker process, so the
        environment is applied while at least one of its calls (or its constructor) runs
        and restored when none does."""
        env_vars = self.meta.get("env_vars")
        runtime_env = self.meta.get("runtime_env") if self.dead is None else None
        if not env_vars and runtime_env is None:
            yield
            return
        with self._env_lock:
            if self._env_users == 0:
                self._env_leave = _runtime_env.enter(runtime_env)
                self._env_saved = process_env.push(env_vars or {})
            self._env_users += 1
        try:
            yield
        finally:
            with self._env_lock:
                self._env_users -= 1
                if self._env_users == 0:
                    process_env.pop(self._env_saved)
                    if self._env_leave is not None:
                        self._env_leave()

    def _construct(self, cls_blob, args_blob):
        try:
            with self._env():
                self._construct_now(cls_blob, args_blob)
        except rex.RuntimeEnvSetupError as e:
            self.dead = rex.RuntimeEnvSetupError(
                "Could not create the actor because its associated runtime env failed to be "
                f"created.\n{e.error_message or ''}"
            )
            return
        _runtime_env.pin(self.meta.get("runtime_env"), self)

    def _construct_now(self, cls_blob, args_blob):
        ctx = self._context("__init__")
        placing = self.meta.get("placement_request") or {}
        if self.ledger is not None and placing.get("CPU"):
            ctx.held, ctx.ledger = dict(placing), self.ledger  # a blocking get gives it back
        prev = _context.set_current_task(ctx)
        output.task_started(ctx)
        try:
            cls = pickle.loads(cls_blob)
            args, kwargs = _resolve_args(args_blob)
            self.instance = cls.__new__(cls)
            self.instance.__init__(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - surfaces at the first call
            self.dead = init_failed(self.actor_id, _method_error(self, "__init__", exc))
        finally:
            output.task_ended(ctx)
            _context.set_current_task(prev)

    def _module(self) -> str:
        """``"<module>."`` of the actor's class, for Ray's ``get_task_function_name``."""
        module = self.meta.get("module")
        return f"{module}." if module else ""

    def _context(self, method: str, key=None) -> _context.TaskContext:
        ctx = _context.TaskContext(
            key=key or new_key(f"{self.class_name}.{method}"),
            name=f"{self.class_name}.{method}",
            function_name=f"{self._module()}{self.class_name}.{method}",
            job_id=self.meta["job_id"],
            namespace=self.meta["namespace"],
        )
        ctx.actor = self
        group = self.meta.get("placement_group")
        if group is not None:
            ctx.placement_group = (group[0], group[2])
        ctx.seceded = True  # the actor's own threads are not in Dask's pool: never secede
        return ctx

    # -- one call -------------------------------------------------------------
    def _run_sync(self, method: str, args_blob, num_returns, key=None, owner=None):
        if not self.meta.get("env_vars") and self.meta.get("runtime_env") is None:
            return self._run_sync_now(method, args_blob, num_returns, key, owner)
        with self._env():
            return self._run_sync_now(method, args_blob, num_returns, key, owner)

    def _run_sync_now(self, method: str, args_blob, num_returns, key=None, owner=None):
        if self.dead is not None:
            return ("dead", self.dead)
        ctx = self._context(method, key)
        self.running[key] = ctx  # before the check: cancel_calls sees one or the other
        if key in self.cancelled:
            self.running.pop(key, None)
            return ("cancelled", rex.TaskCancelledError(key))
        prev = _context.set_current_task(ctx)
        output.task_started(ctx)
        start = time.time()
        try:
            args, kwargs = _resolve_args(args_blob)
            result = _invoke(self, method, args, kwargs)
            if type(num_returns) is tuple:  # ("streaming", consumer client id)
                return self._stream(method, result, num_returns[1], ctx)
            if self.dead is not None:  # ray.kill while it ran: Ray's worker would be gone
                return ("dead", self.dead)
            return _pack_result(self, method, result, num_returns, owner)
        except ActorExit:
            self.dead = actor_died(self.actor_id, self.class_name, EXITED)
            self._release()
            return ("dead", self.dead)
        except Exception as exc:  # noqa: BLE001 - user code
            return ("error", _method_error(self, method, exc))
        finally:
            output.task_ended(ctx)
            self.running.pop(key, None)
            self.records.append((ctx.name, start, time.time(), threading.get_ident()))
            _context.set_current_task(prev)

    async def _run_async(self, method: str, args_blob, num_returns, key=None, owner=None):
        if not self.meta.get("env_vars") and self.meta.get("runtime_env") is None:
            return await self._run_async_now(method, args_blob, num_returns, key, owner)
        with self._env():
            return await self._run_async_now(method, args_blob, num_returns, key, owner)

    async def _run_async_now(self, method: str, args_blob, num_returns, key=None, owner=None):
        if self.dead is not None:
            return ("dead", self.dead)
        if key in self.cancelled:
            return ("cancelled", rex.TaskCancelledError(key))
        group = self.method_groups.get(method)
        semaphore = self.semaphores.get(group)
        if semaphore is None:
            semaphore = self.semaphores[group] = asyncio.Semaphore(self.group_sizes.get(group, 1))
        async with semaphore:
            ctx = self._context(method, key)
            self.running[key] = ctx
            self.async_tasks[key] = asyncio.current_task()
            if key in self.cancelled:  # cancelled while it queued for the semaphore
                self.running.pop(key, None)
                self.async_tasks.pop(key, None)
                return ("cancelled", rex.TaskCancelledError(key))
            prev = _context.set_current_task(ctx)
            output.task_started(ctx)
            start = time.time()
            try:
                args, kwargs = _resolve_args(args_blob)
                result = _invoke(self, method, args, kwargs)
                if type(num_returns) is tuple:  # ("streaming", consumer client id)
                    return await self._stream_async(method, result, num_returns[1], ctx)
                if asyncio.iscoroutine(result):
                    result = await result
                if self.dead is not None:  # ray.kill while it ran
                    return ("dead", self.dead)
                return _pack_result(self, method, result, num_returns, owner)
            except asyncio.CancelledError:  # ray.cancel of a running async call
                return ("cancelled", rex.TaskCancelledError(key))
            except ActorExit:
                self.dead = actor_died(self.actor_id, self.class_name, EXITED)
                return ("dead", self.dead)
            except Exception as exc:  # noqa: BLE001 - user code
                return ("error", _method_error(self, method, exc))
            finally:
                output.task_ended(ctx)
                self.running.pop(key, None)
                self.async_tasks.pop(key, None)
                self.records.append((ctx.name, start, time.time(), threading.get_ident()))
                _context.set_current_task(prev)

    # -- generator methods (see streaming.py) -----------------------------------
    def _stream(self, method: str, gen, consumer_id: str, ctx):
        publisher = stream_publish.Publisher(consumer_id, ctx.key, ctx.name)
        try:
            end = stream_publish.run_streaming(gen, publisher, lambda: ctx.cancelled)
        except Exception as exc:  # noqa: BLE001 - user code: the stream's last item
            end = results.StreamEnd(publisher.count, _method_error(self, method, exc))
        return ("ok", Sealed.seal(end))

    async def _stream_async(self, method: str, gen, consumer_id: str, ctx):
        publisher = stream_publish.Publisher(consumer_id, ctx.key, ctx.name)
        try:
            end = await stream_publish.run_streaming_async(gen, publisher, lambda: ctx.cancelled)
        except asyncio.CancelledError:
            end = results.StreamEnd(publisher.count, rex.TaskCancelledError(ctx.key))
        except Exception as exc:  # noqa: BLE001 - user code: the stream's last item
            end = results.StreamEnd(publisher.count, _method_error(self, method, exc))
        return ("ok", Sealed.seal(end))

    # -- the RPC entry point ----------------------------------------------------
    async def call_batch(self, blob: bytes) -> bytes:
        """Run one caller's batch ``(caller, first_seq, [(method, args, n)])`` in order."""
        caller, first_seq, calls = pickle.loads(blob)
        owner = caller.rsplit("/", 1)[0]  # the calling process's Dask client
        if self.seq_cond is None:
            self.seq_cond = asyncio.Condition()
        async with self.seq_cond:
            await self.seq_cond.wait_for(lambda: self.next_seq.get(caller, 0) == first_seq)
            futures = []
            for method, args_blob, num_returns, key in calls:
                if self.terminating:  # admitted after __ray_terminate__: the actor is gone
                    futures.append(self._answered(("dead", actor_died(self.actor_id, self.class_name, EXITED))))
                elif method == "__ray_terminate__":
                    self.terminating = True
                    futures.append(asyncio.ensure_future(self._terminate(list(self.admitted) + futures)))
                elif self.is_async:
                    futures.append(
                        asyncio.wrap_future(
                            asyncio.run_coroutine_threadsafe(
                                self._run_async(method, args_blob, num_returns, key, owner), self.loop
                            )
                        )
                    )
                else:
                    futures.append(
                        asyncio.wrap_future(
                            self.executors.get(self.method_groups.get(method), self.executor).submit(
                                self._ctx.copy().run, self._run_sync, method, args_blob, num_returns, key, owner
                            )
                        )
                    )
            self.next_seq[caller] = first_seq + len(calls)
            self.seq_cond.notify_all()
            for f in futures:
                self.admitted.add(f)
                f.add_done_callback(self.admitted.discard)
        results = await asyncio.gather(*futures)
        self._report()
        return cloudpickle.dumps(results, protocol=5)

    async def cancel_calls(self, keys) -> None:
        """``ray.cancel`` of actor calls: a queued call never runs; a running one sees
        ``is_canceled()``; a running async call is cancelled at its next ``await``."""
        for key in keys:
            self.cancelled.add(key)
            ctx = self.running.get(key)
            if ctx is not None:
                ctx.cancelled = True
            task = self.async_tasks.get(key)
            if task is not None:
                self.loop.call_soon_threadsafe(task.cancel)

    def _report(self) -> None:
        """Send the calls run since the last report as one Dask event (see observability)."""
        records, self.records = self.records, []
        if records and self.worker is not None:
            self.worker.log_event(
                TOPIC, {"actor_id": self.actor_id, "worker": self.worker.address, "pid": self.pid,
                        "calls": records}
            )

    @staticmethod
    def _answered(reply):
        fut = asyncio.get_running_loop().create_future()
        fut.set_result(reply)
        return fut

    async def _terminate(self, before: list):
        """``__ray_terminate__``: like Ray's, it runs after the calls admitted before it."""
        if before:
            await asyncio.wait(before)
        self._release()
        self.dead = actor_died(self.actor_id, self.class_name, EXITED)
        return ("dead", self.dead)

    async def kill(self) -> None:
        self.dead = actor_died(self.actor_id, self.class_name, KILLED)
        for executor in self.executors.values():
            executor.shutdown(wait=False, cancel_futures=True)
        if self.is_async:
            self.loop.call_soon_threadsafe(self.loop.stop)
        self.instance = None
        self._release()

    def _release(self) -> None:
        # Called from actor threads (exit_actor), the loop (kill, terminate) and __del__.
        with self._release_lock:
            held, self.held = self.held, None
        if held is not None and self.ledger is not None:
            self.ledger.release(held)


def _resolve_args(args_blob):
    """Unpickle a call's arguments and replace top-level ObjectRefs by their values."""
    if args_blob is None:
        return (), {}

    with references.rebinding():
        args, kwargs, top = pickle.loads(args_blob)
    if top:
        refs = [a for a in args if type(a) is ObjectRef] + [v for v in kwargs.values() if type(v) is ObjectRef]
        values = dict(zip((id(r) for r in refs), api.get(refs)))
        args = tuple(values[id(a)] if type(a) is ObjectRef else a for a in args)
        kwargs = {k: values[id(v)] if type(v) is ObjectRef else v for k, v in kwargs.items()}
    return args, kwargs


def _invoke(shell: Shell, method: str, args, kwargs):
    if method == "__ray_ready__":
        return True
    if method == "__ray_call__":
        fn, *rest = args
        return fn(shell.instance, *rest, **kwargs)
    return getattr(shell.instance, method)(*args, **kwargs)


def _pack_result(shell: Shell, method: str, result, num_returns, owner=None):
    if inspect.isgenerator(result):  # a generator method with a fixed num_returns
        result = _drain(result, num_returns)
    try:
        result = shape_returns(result, num_returns)
    except ValueError as err:
        return ("error", _method_error(shell, method, err))
    try:
        # No copy: the reply pickles it at once (Sealed.__reduce__ copies the buffers).
        with references.collecting() as inner:
            sealed = Sealed.seal(result)
    except Exception as exc:  # noqa: BLE001 - unpicklable result
        return ("error", _method_error(shell, method, exc))
    if inner and owner is not None and shell.worker is not None:
        return ("ok-held", (sealed, _hold(shell, sealed, inner, owner)))
    return ("ok", sealed)


def _hold(shell: Shell, sealed: Sealed, inner: list, owner: str) -> str:
    """A result with refs inside: the reply carries it, but the refs must outlive this
    call for as long as the caller holds the result. So it is also stored on this worker
    under a key of its own, wanted by the caller's client, with the refs as its contents
    (``references.contain``); the caller's ref holds that key."""
    from distributed import get_client
    from distributed.utils import sync

    key = new_key(f"{shell.class_name}-result")
    if sealed.buffers:  # kept beyond the reply: detach it from the actor's own objects
        sealed = Sealed(sealed.payload, tuple(bytes(memoryview(b)) for b in sealed.buffers))
    sync(shell.worker.loop, stream_publish.store_value, shell.worker, key, sealed, owner)
    references.contain(get_client(), key, inner)
    return key


def _method_error(shell: Shell, method: str, exc: BaseException) -> rex.RayTaskError:
    tb, cause = _task_error_text(exc)
    name = f"{shell.class_name}.{method}"
    try:
        actor_repr = repr(shell.instance) if shell.instance is not None else f"<{shell.class_name}>"
    except Exception:  # noqa: BLE001 - a broken __repr__
        actor_repr = f"<{shell.class_name}>"
    return rex.RayTaskError(name, tb, cause, proctitle=f"ray::{name}", actor_repr=actor_repr,
                            actor_id=shell.actor_id)


# ============================================================================ caller side
