"""Ray actors on Dask: a shell around the user's instance, reached by batched RPCs.

Why not Dask's actors as they are (measured, see shared/docs/ray-on-dask.md 3.4): calls
sent while others are in flight arrive out of order; every actor on a worker shares one
thread; an ``ActorFuture`` cannot be passed to tasks or waited on with task futures.
Why not one Dask task per call: about 10 ms per call here (a scheduler round trip), and
a blocked method would hold a worker slot. Why not register every result with the
scheduler: 14 ms per call in the prototype.

The design, decided by measurement (``benchmarks/README.md``, 2 CPUs, medians of 3):
2,000 calls on one actor run at about 21,000 calls/s in order (raw Dask actors 1,085/s
out of order, Ray 3,567/s), and a round trip takes 0.72 ms (raw Dask actor 0.79 ms, Ray
0.69 ms). What limits it: one RPC per batch and the shell's thread hop per call.

- The user's instance lives inside a ``Shell``, created as a Dask actor (so Dask places
  it, keeps it while a client wants its key, and drops it when none does). Only the
  shell's coroutines (``call_batch``, ``cancel_calls``, ``kill``) are invoked through
  Dask's ``actor_execute`` RPC; they run on the worker's event loop and hand calls to the
  shell's *own* executors (``max_concurrency`` threads per concurrency group, or an
  event-loop thread for async actors), so actors on one worker never block each other.
- A caller numbers its calls; the calls a program issues in a burst are sent as one RPC
  (up to ``MAX_BATCH``; one call per RPC for actors whose calls may overlap), straight to
  the actor's worker, not through the scheduler. The shell admits each caller's batches
  in sequence order, so one caller's calls run in submission order even when RPCs
  overtake each other.
- A call's result comes back in the RPC reply, which completes the call's ObjectRef
  locally (``ActorResult``). Only when such a ref must exist on the cluster (passed to a
  task, pickled into data) is its value published as a Dask key, under the ref's own
  key, so it works in tasks, ``wait`` and ``get`` like any task ref.
- Restarts: see ``restarts.py``; observability: see ``observability.py``.
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
import uuid
from typing import Optional

import cloudpickle
from distributed import Future, secede

from raycompat import exceptions as rex
from raycompat._dask import context as _context
from raycompat._dask import host_pool, output, process_env, references, restarts
from raycompat._dask import runtime_env as _runtime_env
from raycompat._dask import streaming
from raycompat._dask.actor_host import host_actor
from raycompat._dask.keys import new_key
from raycompat._dask.serialization import Sealed
from raycompat._dask.worker_task import _drain, _task_error_text, shape_returns
from raycompat._dask import api
from raycompat._dask.refs import ObjectRef
from raycompat._dask import refs as _refs
from raycompat._dask.ledger import process_ledger
from raycompat._dask import batching
from raycompat._dask.observability import TOPIC


def actor_died(actor_id: str, class_name: str, reason: str) -> rex.ActorDiedError:
    msg = "\n".join(
        [
            "The actor died unexpectedly before finishing this task.",
            f"\tclass_name: {class_name}",
            f"\tactor_id: {actor_id}",
            reason,
        ]
    )
    return rex.ActorDiedError(actor_id, msg)


def init_failed(actor_id: str, err: rex.RayTaskError) -> rex.ActorDiedError:
    return rex.ActorDiedError(
        actor_id,
        f"The actor died because of an error raised in its creation task, {err}",
        actor_init_failed=True,
    )


KILLED = "The actor is dead because it was killed by ray.kill."
EXITED = "The actor is dead because its worker process has died. Worker exit type: INTENDED_USER_EXIT"


class ActorExit(Exception):
    """Raised by ``ray.actor.exit_actor()`` inside a method."""


# ============================================================================ worker side


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
        if self.ledger is not None and placing:
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
        publisher = streaming.Publisher(consumer_id, ctx.key, ctx.name)
        try:
            end = streaming.run_streaming(gen, publisher, lambda: ctx.cancelled)
        except Exception as exc:  # noqa: BLE001 - user code: the stream's last item
            end = streaming.StreamEnd(publisher.count, _method_error(self, method, exc))
        return ("ok", Sealed.seal(end))

    async def _stream_async(self, method: str, gen, consumer_id: str, ctx):
        publisher = streaming.Publisher(consumer_id, ctx.key, ctx.name)
        try:
            end = await streaming.run_streaming_async(gen, publisher, lambda: ctx.cancelled)
        except asyncio.CancelledError:
            end = streaming.StreamEnd(publisher.count, rex.TaskCancelledError(ctx.key))
        except Exception as exc:  # noqa: BLE001 - user code: the stream's last item
            end = streaming.StreamEnd(publisher.count, _method_error(self, method, exc))
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
    sync(shell.worker.loop, streaming.store_value, shell.worker, key, sealed, owner)
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


class ActorResult:
    """The backing of an actor call's ObjectRef: completed from the RPC reply.

    It offers the part of ``distributed.Future``'s interface that ``api.py`` uses, so
    ``get``/``wait`` treat actor refs and task refs alike. ``published()`` turns it into
    a real Dask key when a task needs it, at once, also while the call still runs.
    """

    def __init__(self, key: str, client, name: str):
        self.key = key
        self.client = client
        self.name = name
        self.status = "pending"
        self._value: Optional[Sealed] = None
        self._exception: Optional[BaseException] = None
        self._event = threading.Event()
        self._aio_event: Optional[asyncio.Event] = None
        self._callbacks: list = []
        self._dask_future = None
        self._publish_lock = threading.Lock()
        #: The refs in the call's arguments, held until it is answered (Ray's rule).
        self.arg_refs: Optional[list] = None
        #: A result with refs inside is also a Dask key on the actor's worker: its future.
        self._held_value = None
        #: A placeholder task waits for this call's result: fill it when it comes.
        self._fill_pending = False

    @property
    def _state(self):
        return self

    # called on the client's event loop
    def _finish(self, status: str, value=None, exception=None, held_key=None) -> None:
        if held_key is not None:
            held = Future(held_key, self.client)
            held._state.finish()  # stored and wanted for this client before the reply left
            self._held_value = held
        with self._publish_lock:
            self._value, self._exception, self.status = value, exception, status
            self._event.set()
            fill = self._fill_pending
        self.arg_refs = None
        if fill:
            asyncio.ensure_future(self._fill())
        if self._aio_event is not None:
            self._aio_event.set()
        for cb in self._callbacks:
            try:
                cb(self)
            except Exception:  # noqa: BLE001 - a user's callback
                pass
        self._callbacks.clear()

    async def wait(self, timeout=None):
        if self._event.is_set():
            return
        if self._aio_event is None:
            self._aio_event = asyncio.Event()
            if self._event.is_set():
                return
        await asyncio.wait_for(self._aio_event.wait(), timeout)

    def done(self) -> bool:
        return self._event.is_set()

    def result(self, timeout=None):
        if not self._event.wait(timeout):
            raise TimeoutError()
        if self._exception is not None:
            raise self._exception
        return self._value

    def exception(self):
        self._event.wait()
        return self._exception

    def add_done_callback(self, fn) -> None:
        def run(_):  # off the event loop, as distributed.Future runs its callbacks
            try:
                _callback_executor().submit(fn, self)
            except RuntimeError:  # interpreter exit: the executor is gone
                pass

        if self.done():
            run(self)
        else:
            self.client.loop.add_callback(self._add_cb, run)

    def _add_cb(self, fn):
        if self.done():
            fn(self)
        else:
            self._callbacks.append(fn)

    def cancel_on_actor(self) -> None:
        """Tell the actor's shell this call is cancelled (best effort, asynchronous)."""
        caller = getattr(self, "_caller", None)
        if caller is None or self.done():
            return

        async def send():
            try:
                address = await caller._address()
                await actor_rpc(caller.client, address, caller.creation.key, "cancel_calls", ([self.key],))
            except Exception:  # noqa: BLE001 - the actor is gone: nothing to cancel
                pass

        caller.client.loop.add_callback(send)

    def published(self):
        """A Dask future for this result, for a task that takes it as an argument or a
        value that holds the ref. While the call runs, a placeholder task under this
        ref's key waits on the scheduler until ``_fill`` hands it the result."""

        with self._publish_lock:
            fut = self._dask_future
            if fut is None and not self._event.is_set():
                fut = self._dask_future = batching.submit(self.client, await_filled, key=self.key)
                self._fill_pending = True
        if fut is not None:
            return fut
        if self._held_value is not None:
            fut = self._held_value
        elif self._exception is not None:
            fut = self.client.submit(_reraise, self._exception, key=self.key, pure=False)
        else:
            fut = self.client.scatter({self.key: self._value}, hash=False)[self.key]
        with self._publish_lock:
            if self._dask_future is None:
                self._dask_future = fut
            return self._dask_future

    async def _fill(self) -> None:
        """On the client's loop: give the placeholder task this call's result."""
        client = self.client
        msg = {"op": "raycompat-fill", "key": self.key}
        keep = self._held_value
        try:
            if self._exception is not None:
                msg["error"] = cloudpickle.dumps(self._exception)
            elif keep is not None:
                msg["value"] = keep.key
            else:
                value_key = new_key(f"{self.name}-value")
                keep = (await client._scatter({value_key: self._value}, hash=False))[value_key]
                msg["value"] = value_key
        except Exception as e:  # noqa: BLE001 - the placeholder fails instead of waiting forever
            msg.pop("value", None)
            msg["error"] = cloudpickle.dumps(rex.RaySystemError(f"could not publish the actor result: {e}"))
        client._send_to_scheduler(msg)
        del keep  # released after the fill, on the same stream: the placeholder holds it first


_executor: Optional[concurrent.futures.ThreadPoolExecutor] = None


def _callback_executor() -> concurrent.futures.ThreadPoolExecutor:
    global _executor
    if _executor is None:
        _executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="raycompat-callback")
    return _executor


def _reraise(exc):
    raise exc


def await_filled():
    """The placeholder task of an actor call's result that a task needs before the call
    has ended: it leaves the worker's pool and waits on the scheduler for the result,
    which the caller hands over when the reply comes (``ActorResult._fill``)."""
    from distributed import get_client, get_worker, secede

    worker = get_worker()
    key = worker.get_current_task()
    secede()
    client = get_client()
    while True:
        verdict = client.sync(client.scheduler.raycompat_take, key=key, timeout=5.0)
        if verdict[0] == "value":
            return _refs.rebind(client, verdict[1]).result()
        if verdict[0] == "error":
            err = pickle.loads(verdict[1])
            if isinstance(err, rex.RayTaskError):
                err._dask_key = key  # dependents fail with Ray's "input argument" wrapping
            raise err
        ts = worker.state.tasks.get(key)
        if verdict[0] == "gone" or ts is None or ts.state not in ("executing", "long-running"):
            return None  # nobody needs this result any more


#: The most calls one RPC carries to a sequential actor (bounds how long the first call's
#: result waits for the last one's).
MAX_BATCH = 256


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

    def fail_outstanding(self, error: BaseException) -> None:
        """On the client's loop: fail every call not answered yet (the actor was killed)."""
        for ref in list(self.outstanding):
            if not ref.done():
                ref._finish("error", exception=error)

    def track_pending(self, backing: "ActorResult") -> None:
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
            try:
                reply = await actor_rpc(self.client, address, self.creation.key, "call_batch", (blob,), comm)
            except (OSError, EnvironmentError) as e:
                raise _WorkerLost(f"{type(e).__name__}: {e}") from None
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


#: How long to keep trying to connect to an actor's worker. Dask's own connect retries a
#: refused connection for distributed.comm.timeouts.connect (30 s), which is how long a
#: call to an actor whose worker just died would hang before failing; the actor's worker
#: is a known, already-connected peer, so a refused connection means it is gone.
ACTOR_CONNECT_TIMEOUT = float(os.environ.get("RAYCOMPAT_ACTOR_CONNECT_TIMEOUT", "3"))


async def actor_rpc(client, address: str, actor_key: str, function: str, args: tuple, comm=None):
    """``actor_execute`` on the actor's worker through the client's connection pool."""
    from distributed.core import send_recv

    if comm is None:
        comm = await client.rpc.connect(address, timeout=ACTOR_CONNECT_TIMEOUT)
    try:
        return await send_recv(comm=comm, op="actor_execute", actor=actor_key, function=function,
                               args=args, kwargs={})
    finally:
        client.rpc.reuse(address, comm)


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
