"""Turning one ``f.remote(...)`` into one Dask task.

The mapping, option by option (unlisted options: see ``raycompat/_private/options.py``):

- the call becomes ``client.submit(run_task, spec, *deps, key="{name}-{uuid}", pure=False)``:
  never deduplicated (Ray never is) and shown on the dashboard under the task's name;
- top-level ObjectRef arguments become Dask dependencies (Dask moves the data to the
  worker); everything else is pickled once, whole, into the spec, where nested refs
  stay refs; argument or function blobs over Ray's 100 KiB inline limit travel as
  scattered data instead of through the scheduler's graph;
- ``num_cpus``/``num_gpus``/``resources`` and ``scheduling_strategy``: ``placement.py``;
- ``max_retries`` on worker death is Dask's ``allowed-failures``; application errors are
  retried inside the wrapper as ``retry_exceptions`` says (Dask's ``retries=`` would
  retry everything).
"""

from __future__ import annotations

import hashlib

import cloudpickle
import dask

from raycompat import exceptions as rex
from raycompat._dask import batching
from raycompat._dask import context as _context
from raycompat._dask import interrupts
from raycompat._dask import placement as _placement
from raycompat._dask import placement_groups as _placement_groups
from raycompat._dask import quiet_errors
from raycompat._dask import references
from raycompat._dask import retries
from raycompat._dask import runtime_env as _runtime_env
from raycompat._dask.keys import new_key
from raycompat._dask import driver as _driver
from raycompat._dask import streaming as _streaming
from raycompat._dask.refs import ObjectRef
from raycompat._dask.serialization import Sealed, hide_main
from raycompat._dask.worker_task import ArgSlot, TaskSpec, run_task
from raycompat._private.options import DEFAULT_TASK_MAX_RETRIES

#: Ray inlines arguments up to 100 KiB; larger ones go through the object store.
INLINE_LIMIT = 100 * 1024

_inflight_no_return: set = set()


class FunctionBlob:
    """A remote function pickled once: its digest names it in every worker's cache.

    ``function_name`` is Ray's name for it (``module.qualname``); ``shipped`` and
    ``shipped_name`` are what task specs carry (see ``serialization.Deflated``)."""

    __slots__ = ("blob", "digest", "shipped", "function_name", "shipped_name")

    def __init__(self, fn, function_name: str):
        self.blob = cloudpickle.dumps(fn, protocol=5)
        self.digest = hashlib.blake2b(self.blob, digest_size=16).digest()
        self.shipped = hide_main(self.blob)
        self.function_name = function_name
        self.shipped_name = hide_main(function_name)


def _split_args(args, kwargs):
    """Replace top-level ObjectRefs by ArgSlots; return (args, kwargs, dep futures, indexes)."""
    deps: list = []
    slots: list = []

    def swap(v):
        if type(v) is ObjectRef:
            deps.append(v._dask_future())
            slots.append(v._index)
            return ArgSlot(len(deps) - 1)
        return v

    args = tuple(swap(a) for a in args)
    kwargs = {k: swap(v) for k, v in kwargs.items()}
    return args, kwargs, deps, slots


def _raise_unschedulable(msg):
    quiet_errors.install()
    raise rex.TaskUnschedulableError(msg)


@interrupts.api_call
def submit(fn_blob: FunctionBlob, name: str, options: dict, args, kwargs):
    """Submit one call; returns an ObjectRef, a list of them, or None (``num_returns=0``)."""
    client = _driver.client()
    session = _driver.current_session(auto_init=False)
    num_returns = options.get("num_returns")
    num_returns = 1 if num_returns is None else num_returns

    args, kwargs, deps, slots = _split_args(args, kwargs)
    prefix_deps: list = []
    if len(fn_blob.blob) > INLINE_LIMIT:
        cache = session.function_deps if session is not None else {}
        fut = cache.get(fn_blob.digest)
        if fut is None:
            fut = client.scatter(Sealed(fn_blob.blob), hash=False)
            cache[fn_blob.digest] = fut
        prefix_deps.append(fut)
        spec_fn_blob = None
    else:
        spec_fn_blob = fn_blob.shipped
    held: list = []
    if args or kwargs:
        args_blob, held = references.pickle_arguments(args, kwargs, fn_blob.function_name)
        if len(args_blob) > INLINE_LIMIT:
            prefix_deps.append(client.scatter(Sealed(args_blob), hash=False))
            args_blob = True
        else:
            args_blob = hide_main(args_blob)
    else:
        args_blob = None

    retry_exceptions = options.get("retry_exceptions", False)
    if isinstance(retry_exceptions, (list, tuple)):
        retry_exceptions = hide_main(cloudpickle.dumps(tuple(retry_exceptions)))
    max_retries = options.get("max_retries")
    env_vars = _context.env_vars_for_call(session, options.get("runtime_env"))
    runtime_env = _runtime_env.for_call(session, options.get("runtime_env"))

    group = _placement_groups.resolve(client, options, name)
    placement, request = _placement.for_task(client, options, name, in_group=group is not None)
    embedded = _driver.embedded_ledger() is not None
    if group is not None:
        _placement_groups.check_request(client, group, request, name)
        strategy = _placement_groups.placement_for(client, group[0], group[1])
        # Runs once the group is made: until then it waits on the scheduler, not a worker.
        deps.append(_placement_groups.ready_future(client, group[0]))
        group = (group[0], _placement_groups.candidate_bundles(client, group[0], group[1]), group[2])
    else:
        strategy = _placement.strategy(client, options, request.get("CPU", 0.0))
    if "unschedulable" in strategy:
        fut = client.submit(
            _raise_unschedulable, strategy["unschedulable"], key=new_key(name), pure=False
        )
        return ObjectRef(fut, None, name)
    placement.update(strategy)

    spec = TaskSpec(
        name=name,
        function_name=fn_blob.shipped_name,
        fn_digest=fn_blob.digest,
        fn_blob=spec_fn_blob,
        args_blob=args_blob,
        slots=tuple(slots),
        num_returns=num_returns,
        retries=DEFAULT_TASK_MAX_RETRIES if max_retries is None else max_retries,
        retry_exceptions=retry_exceptions,
        request=request,
        env_vars=env_vars,
        runtime_env=runtime_env,
        job_id=_driver.current_job_id(),
        namespace=_driver.current_namespace(),
        placement_group=group,
    )
    key = new_key(name)
    generator = None
    if num_returns == "streaming":
        # Subscribe (and register) before the task exists: its first item may come quickly.
        generator = _streaming.ObjectRefGenerator(key, client, name)
        spec.stream_to = client.id
    # The embedded cluster's scheduler takes a task without the annotation for a default
    # one (a smaller graph message); a joined cluster's keeps the operator's limit for
    # tasks without it, so every raycompat task says its own there.
    if spec.retries == DEFAULT_TASK_MAX_RETRIES and embedded:
        fut = batching.submit(client, run_task, spec, *prefix_deps, *deps, key=key, **placement)
    else:
        with dask.annotate(**{retries.ANNOTATION: spec.retries}):
            fut = batching.submit(client, run_task, spec, *prefix_deps, *deps, key=key, **placement)
    if held:
        fut.add_done_callback(lambda _f, _h=held: _h.clear())
    if generator is not None:
        generator._attach(ObjectRef(fut, None, name))
        return generator
    if num_returns in (1, "dynamic"):
        return ObjectRef(fut, None, name)
    if num_returns == 0:
        # Ray returns None, but the task must still run: hold its future until it ends.
        _inflight_no_return.add(fut)
        fut.add_done_callback(_inflight_no_return.discard)
        return None
    return [ObjectRef(fut, i, name) for i in range(num_returns)]
