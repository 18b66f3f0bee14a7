"""The function every Ray task runs as on a Dask worker.

One Dask task per Ray call: ``run_task(spec, *deps)``. ``deps`` are the Dask futures of
the call's top-level ObjectRef arguments (Dask resolves and moves them), plus the
function and argument blobs when those were large enough to travel as data. The
wrapper then does what Ray's worker does around user code:

- takes the call's resources from the node ledger (embedded cluster);
- rebuilds the arguments: top-level refs become values, nested refs stay ObjectRefs;
- runs the function, retrying application errors as ``retry_exceptions`` says;
- checks ``num_returns`` and seals the result (see ``serialization.py``);
- turns an exception into a picklable ``RayTaskError`` carrying the remote traceback.
"""

from __future__ import annotations

import inspect
import pickle
import traceback
from typing import Any

from raycompat import exceptions as rex
from raycompat._dask import context as _context
from raycompat._dask import interrupts, output, process_env, quiet_errors, references, retries
from raycompat._dask import runtime_env_apply as _runtime_env
from raycompat._dask.ledger import process_ledger
from raycompat._dask import placement_groups as _placement_groups
from raycompat._dask.serialization import Deflated, Sealed, inflate
from raycompat._dask.streaming import collect_dynamic
from raycompat._dask.results import StreamEnd
from raycompat._dask.stream_publish import Publisher, run_streaming
from raycompat._dask import latency

#: Functions by digest: each worker unpickles a remote function once, not per call.
_function_cache: dict[bytes, Any] = {}


class ArgSlot:
    """Placeholder for the i-th top-level ObjectRef argument in a pickled argument list."""

    __slots__ = ("i",)

    def __init__(self, i: int):
        self.i = i

    def __reduce__(self):
        return (ArgSlot, (self.i,))


class TaskSpec:
    """Everything about one call that is not a dependency; opaque to Dask."""

    __slots__ = (
        "name",
        "function_name",
        "fn_digest",
        "fn_blob",
        "args_blob",
        "slots",
        "num_returns",
        "retries",
        "retry_exceptions",
        "request",
        "env_vars",
        "runtime_env",
        "job_id",
        "namespace",
        "stream_to",
        "placement_group",  # (group id, candidate bundle indices, capture child tasks)
    )

    def __init__(self, **kw):
        for k in self.__slots__:
            setattr(self, k, kw.get(k))

    def __getstate__(self):
        return tuple(getattr(self, k) for k in self.__slots__)

    def __setstate__(self, state):
        for k, v in zip(self.__slots__, state):
            setattr(self, k, v)


def _load_function(spec: TaskSpec, deps: list):
    fn = _function_cache.get(spec.fn_digest)
    if fn is None:
        blob = spec.fn_blob
        if blob is None:  # large function: the blob travelled as a dependency
            blob = deps.pop(0)
        if isinstance(blob, Sealed):
            fn = blob.unseal()
        else:
            fn = pickle.loads(inflate(blob))
        _function_cache[spec.fn_digest] = fn
    elif spec.fn_blob is None:
        deps.pop(0)
    return fn


def _materialize(spec: TaskSpec, deps: list):
    if spec.args_blob is None:
        return (), {}
    blob = spec.args_blob
    if blob is True:  # large arguments: the blob travelled as a dependency
        blob = deps.pop(0).payload
    with references.rebinding():
        args, kwargs = pickle.loads(inflate(blob))
    if spec.slots:
        values = []
        for sealed, index in zip(deps, spec.slots):
            v = sealed.unseal()
            values.append(v if index is None else v[index])
        args = tuple(values[a.i] if type(a) is ArgSlot else a for a in args)
        kwargs = {k: values[v.i] if type(v) is ArgSlot else v for k, v in kwargs.items()}
    return args, kwargs


def _should_retry(exc: BaseException, retry_exceptions) -> bool:
    if retry_exceptions is True:
        return True
    if not retry_exceptions:
        return False
    return isinstance(exc, tuple(retry_exceptions))


def _task_error_text(exc: BaseException):
    """The remote traceback text, from the user's frame on, and the cause (``RayTaskError``
    decides what of it can make the trip back)."""
    # Drop the wrapper's own frame: the traceback starts in the user's function, as Ray's.
    frames = exc.__traceback__.tb_next if exc.__traceback__ is not None else None
    tb = "".join(traceback.format_exception(type(exc), exc, frames or exc.__traceback__))
    return tb, exc


def _task_error(spec: TaskSpec, exc: BaseException, key: str) -> rex.RayTaskError:
    tb, cause = _task_error_text(exc)
    err = rex.RayTaskError(spec.function_name, tb, cause, proctitle=f"ray::{spec.name}")
    err._dask_key = key
    return err


def shape_returns(result, num_returns):
    """Ray's return rules for tasks and actor calls: ``num_returns=0`` returns None, a fixed
    ``N > 1`` needs exactly N values (ValueError otherwise)."""
    if num_returns == 0:
        return None
    if num_returns in (1, "dynamic"):
        return result
    try:
        count = len(result)
    except TypeError:
        count = None
    if count != num_returns:
        raise ValueError(
            f"Task returned {count} objects, but num_returns={num_returns}."
            if count is not None
            else f"Task returned a non-sequence {type(result).__name__}, but num_returns={num_returns}."
        )
    return result


def _drain(gen, num_returns):
    """A generator task with a fixed ``num_returns``: Ray stores its items as the returns;
    with ``"dynamic"``, as a ``DynamicObjectRefGenerator`` of refs."""

    if num_returns == "dynamic":
        return collect_dynamic(gen)
    items = list(gen)
    return items[0] if num_returns == 1 and len(items) == 1 else items


def _run_stream(spec: TaskSpec, fn, args, kwargs, ctx, key):
    """A streaming generator task: publish each item as it is yielded (``streaming.py``)."""

    publisher = Publisher(spec.stream_to, key, spec.name)
    try:
        interrupts.enter(ctx)
        try:
            return run_streaming(fn(*args, **kwargs), publisher, lambda: ctx.cancelled)
        finally:
            interrupts.leave(ctx)
    except KeyboardInterrupt:
        if ctx.cancelled:  # ray.cancel interrupted us
            raise rex.TaskCancelledError(key) from None
        raise
    except rex.TaskCancelledError:
        raise
    except Exception as exc:  # noqa: BLE001 - user code: the error is the stream's last item
        return StreamEnd(publisher.count, _task_error(spec, exc, key))


def run_task(spec: TaskSpec, *deps):
    """Run one Ray task on this Dask worker; returns the sealed result."""
    try:
        return _run_task(spec, deps)
    except rex.RayError as err:
        # Dask pickles a task's error with its chain (tblib): the user's exception, raised
        # while we built ``err``, is its ``__context__`` and may not pickle (a lock
        # attribute). Ray sends the RayTaskError alone; so do we.
        err.__context__ = None
        raise


def _run_task(spec: TaskSpec, deps):
    from distributed import get_client, get_worker, secede

    quiet_errors.install()
    spec.function_name = inflate(spec.function_name)  # "__main__.f" travels deflated
    key = get_worker().get_current_task()
    deps = list(deps)
    ledger = process_ledger()
    ctx = _context.TaskContext(
        key=key,
        name=spec.name,
        function_name=spec.function_name,
        job_id=spec.job_id,
        namespace=spec.namespace,
        resources=dict(spec.request or {}),
        ledger=ledger,
    )
    prev = _context.set_current_task(ctx)
    interrupts.register(key, ctx)
    retries.task_started(key)
    output.task_started(ctx)
    saved_env = None
    leave_env = None
    try:
        if ctx.cancelled:  # ray.cancel reached this worker before the task
            raise rex.TaskCancelledError(key)
        if spec.placement_group is not None:
            # The group exists (its ready key is a dependency): wait for room in a bundle
            # as any task waits for its host's ledger.
            ctx.placement_group = (spec.placement_group[0], spec.placement_group[2])
            ledger = ctx.ledger = _placement_groups.take(
                spec.placement_group[0], spec.placement_group[1], spec.request or {}, give_up=lambda: ctx.cancelled
            )
            if ledger is None:
                raise rex.TaskCancelledError(key)  # cancelled while waiting for its bundle
            if spec.request:
                ctx.held = dict(spec.request)
        elif ledger is not None and spec.request:
            if ledger.beyond_totals(spec.request):
                # More CPUs than this host has now (a joined cluster's worker restarting,
                # or none fits): wait for the host to grow without holding a thread.
                secede()
                ctx.seceded = True
            if not ledger.acquire(spec.request, give_up=lambda: ctx.cancelled):
                raise rex.TaskCancelledError(key)  # cancelled while waiting for resources
            ctx.held = dict(spec.request)
        if ledger is not None and (spec.request or {}).get("CPU", 0.0) < 1.0 and not ctx.seceded:
            # Less than a whole CPU: leave the one-thread pool so the worker can start
            # more such tasks; the ledger alone bounds them (num_cpus=0.5 packs 2 per CPU).
            secede()
            ctx.seceded = True
        if spec.env_vars:
            ctx.env_vars = spec.env_vars
            saved_env = process_env.push(spec.env_vars)
        # working_dir/py_modules/pip: also before unpickling, which may import from them.
        leave_env = _runtime_env.enter(spec.runtime_env)
        try:
            fn = _load_function(spec, deps)
            args, kwargs = _materialize(spec, deps)
        except Exception as exc:  # noqa: BLE001 - deserialization errors surface as task errors
            raise _task_error(spec, exc, key) from None
        if spec.num_returns == "streaming":
            return Sealed.seal(_run_stream(spec, fn, args, kwargs, ctx, key))
        retry_exceptions = spec.retry_exceptions
        if isinstance(retry_exceptions, (bytes, Deflated)):
            retry_exceptions = pickle.loads(inflate(retry_exceptions))
        attempts_left = spec.retries if retry_exceptions else 0
        while True:
            try:
                interrupts.enter(ctx)
                try:
                    result = fn(*args, **kwargs)
                    if inspect.isgenerator(result):
                        result = _drain(result, spec.num_returns)
                finally:
                    interrupts.leave(ctx)
                break
            except KeyboardInterrupt:
                if ctx.cancelled:  # ray.cancel interrupted us
                    raise rex.TaskCancelledError(key) from None
                raise
            except Exception as exc:  # noqa: BLE001 - user code
                if attempts_left != 0 and _should_retry(exc, retry_exceptions):
                    attempts_left -= 1
                    continue
                raise _task_error(spec, exc, key) from None
        try:
            result = shape_returns(result, spec.num_returns)
        except ValueError as err:
            raise _task_error(spec, err, key) from None
        try:
            with references.collecting() as inner:
                sealed = Sealed.seal(result)
        except Exception as exc:  # noqa: BLE001 - unpicklable return value
            raise _task_error(spec, exc, key) from None
        if inner:  # refs inside the result live as long as it (this task's key) does
            references.contain(get_client(), key, inner)
        return sealed
    finally:
        if leave_env is not None:
            leave_env()
        if saved_env is not None:
            process_env.pop(saved_env)
        if ctx.held is not None:
            ledger.release(ctx.held)
        output.task_ended(ctx)
        retries.task_ended(key)
        interrupts.unregister(key)
        _context.set_current_task(prev)


async def dask_setup(worker) -> None:
    """Preload hook on the embedded cluster's workers (see ``latency.py``)."""

    await latency.tune_worker(worker)
