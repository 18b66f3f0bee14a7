"""Creating, calling, naming and killing actors: the API over ``actor_caller.py`` (the
caller), ``actor_result.py`` (a call's ref) and ``actor_shell.py`` (the worker side).

Named actors are cluster-wide ``distributed.Variable``s: ``raycompat/<namespace>/<name>``
holds the actor's creation future (which also keeps the actor alive), and
``raycompat-meta/<namespace>/<name>`` what a handle needs. A second driver on the same
scheduler finds them; a non-detached actor's names are deleted at its driver's
``shutdown``, a detached one's only by ``ray.kill``.
"""

from __future__ import annotations

import threading
import types
import uuid
import weakref
from dataclasses import dataclass
from typing import Optional

import cloudpickle
import distributed
from distributed import Future

from raycompat import exceptions as rex
from raycompat._dask import batching
from raycompat._dask import context as _context
from raycompat._dask import interrupts
from raycompat._dask import references
from raycompat._dask import refs as _refs
from raycompat._dask import restarts
from raycompat._dask import runtime_env as _runtime_env
from raycompat._dask import driver as _driver
from raycompat._dask.actor_caller import Caller, start_actor
from raycompat._dask.actor_rpc import actor_rpc
from raycompat._dask.actor_errors import KILLED, actor_died
from raycompat._dask.actor_result import ActorResult
from raycompat._dask.keys import new_key
from raycompat._dask.refs import ObjectRef
from raycompat._dask.streaming import ObjectRefGenerator
from raycompat._private import options as _options
from raycompat._dask import placement as _placement
from raycompat._dask import placement_groups as _placement_groups
from raycompat._dask import lifetime

#: One Caller per (actor, client) in this process, held strongly by the handles only: when
#: the last handle goes, so does the Caller and its creation future, and Dask drops the actor.
_callers: "weakref.WeakValueDictionary" = weakref.WeakValueDictionary()
_callers_lock = threading.Lock()


@dataclass
class ActorRecord:
    """What a handle to an actor is made of; ``raycompat.actor.ActorHandle`` (the public
    module, above this one) builds the handle from it."""

    actor_id: str
    creation: object  # the Dask future of the actor's (first) incarnation
    class_name: str
    methods: dict
    is_async: bool
    name: Optional[str] = None
    namespace: Optional[str] = None
    concurrent: bool = False
    caller: object = None  # this process's Caller, when it has one already


def _variable_names(namespace: str, name: str):
    return f"raycompat/{namespace}/{name}", f"raycompat-meta/{namespace}/{name}"


def _args_blob(args, kwargs, what: str):
    """Pickle call arguments; the refs inside are held until the call is done."""
    if not args and not kwargs:
        return None, []
    top = any(type(a) is ObjectRef for a in args) or any(type(v) is ObjectRef for v in kwargs.values())
    return references.pickle_arguments(args, kwargs, what, top)


def _existing_names(client, names) -> set:
    """Which of ``names`` are set Variables (one scheduler call, no error logs)."""

    def present(dask_scheduler, names):
        ext = dask_scheduler.extensions.get("variables")
        return [n for n in names if ext is not None and n in ext.variables]

    return set(client.run_on_scheduler(present, names=list(names)))


def _lookup(client, namespace: str, name: str):
    var_name, meta_name = _variable_names(namespace, name)
    if _existing_names(client, (var_name, meta_name)) != {var_name, meta_name}:
        return None
    fut = distributed.Variable(var_name, client=client).get(timeout=30)
    meta = cloudpickle.loads(distributed.Variable(meta_name, client=client).get(timeout=30))
    return fut, meta


@interrupts.api_call
def create(actor_class, args, kwargs, options: dict) -> ActorRecord:
    _driver.current_session()
    client = _driver.client()
    name = options.get("name")
    namespace = options.get("namespace") or _driver.current_namespace()
    if name is not None:
        found = _lookup(client, namespace, name)
        if found is not None:
            if options.get("get_if_exists"):
                return _record_from(found[0], found[1])
            raise rex.ActorAlreadyExistsError(
                f"The name {name} (namespace={options.get('namespace')}) is already taken. Please use "
                "a different name or get the existing actor using "
                f"ray.get_actor('{name}', namespace='{options.get('namespace')}')"
            )
    if actor_class._cls_blob is None:
        actor_class._cls_blob = cloudpickle.dumps(actor_class.__ray_actor_class__, protocol=5)
    actor_id = uuid.uuid4().hex[:32]
    max_concurrency = options.get("max_concurrency") or (1000 if actor_class._is_async else 1)
    # Ray: an actor needs 1 CPU to be placed unless it asks otherwise, and holds for its
    # lifetime only what it asked for.
    explicit = _placement.resource_request(options, default_cpus=None)
    placement_request = explicit if (explicit or options.get("num_cpus") == 0) else {"CPU": 1.0}
    ledger = _driver.embedded_ledger()
    group = _placement_groups.resolve(client, options, actor_class._class_name)
    if group is not None:
        _placement_groups.check_request(client, group, explicit, actor_class._class_name)
        _placement_groups.check_request(client, group, placement_request, actor_class._class_name,
                                        actor_creation=True)
    elif ledger is not None and not ledger.feasible(placement_request):
        _placement.warn_infeasible(actor_class._class_name, placement_request, f"node totals {ledger.totals}")
    elif ledger is None and _placement.cpu_shortfall(client, placement_request.get("CPU", 0.0)):
        _placement.warn_infeasible(actor_class._class_name, placement_request,
                                   _placement.cpu_shortfall(client, placement_request["CPU"]))
    concurrent = bool(actor_class._is_async or max_concurrency > 1 or options.get("concurrency_groups"))
    session = _driver.current_session(auto_init=False)
    env_vars = _context.env_vars_for_call(session, options.get("runtime_env"))
    meta = {
        "env_vars": env_vars,
        "runtime_env": _runtime_env.for_call(session, options.get("runtime_env")),
        "concurrent": concurrent,
        "actor_id": actor_id,
        "placement_request": placement_request,
        "lifetime_request": explicit,
        "concurrency_groups": options.get("concurrency_groups") or {},
        "method_groups": {n: m.concurrency_group for n, m in actor_class._methods.items() if m.concurrency_group},
        "class_name": actor_class._class_name,
        "module": _options.ray_module_name(actor_class.__module__),
        "is_async": actor_class._is_async,
        "max_concurrency": max_concurrency,
        "job_id": _driver.current_job_id(),
        "namespace": namespace,
        "name": name,
        "methods": actor_class._methods,
        "placement_group": None if group is None else (
            group[0], _placement_groups.candidate_bundles(client, group[0], group[1]), group[2]),
    }
    args_blob, held = _args_blob(args, kwargs, actor_class._class_name)
    placement = {}
    resources = _placement.dask_resources(explicit)
    if resources and ledger is None:
        placement["resources"] = resources
    if group is not None:
        strategy = _placement_groups.placement_for(client, group[0], group[1])
    else:
        strategy = _placement.strategy(client, options, placement_request.get("CPU", 0.0))
    if "unschedulable" in strategy:
        raise rex.ActorUnschedulableError(strategy["unschedulable"])
    placement.update(strategy)
    if held:
        batching.flush(client)  # the constructor may read keys this process just submitted
    owners = [restarts.HOLDER + actor_id] if options.get("max_restarts") else []
    creation = start_actor(
        client, new_key(actor_class._class_name), actor_class._cls_blob, args_blob, meta, placement, owners
    )
    if held:
        creation.add_done_callback(lambda _f, _h=held: _h.clear())
    max_task_retries = options.get("max_task_retries") or 0
    if options.get("max_restarts"):
        recipe = cloudpickle.dumps((actor_class._cls_blob, args_blob, meta, placement), protocol=5)
        client.run_on_scheduler(
            restarts.register, actor_id=actor_id, key=creation.key, restarts_left=options["max_restarts"],
            max_task_retries=max_task_retries, recipe=recipe, job=_driver.current_job_id(),
        )
    caller = Caller(client, actor_id, creation, meta["class_name"], max_task_retries, concurrent)
    caller.max_pending = options.get("max_pending_calls", -1) if options.get("max_pending_calls") is not None else -1
    with _callers_lock:
        _callers[(actor_id, client.id)] = caller
    if name is not None:
        var_name, meta_name = _variable_names(namespace, name)
        distributed.Variable(meta_name, client=client).set(cloudpickle.dumps(meta))
        distributed.Variable(var_name, client=client).set(creation)
        if options.get("lifetime") != "detached":
            session = _driver.current_session(auto_init=False)
            if session is not None:
                session.named_actors.append((var_name, meta_name))
                if session.lifetime_registered:
                    client.run_on_scheduler(
                        lifetime.register_names, client_id=client.id, names=[var_name, meta_name]
                    )
    if group is not None:  # killed when its group is removed, as Ray kills it
        _placement_groups.note_actor(group[0], _killer(caller, actor_id, meta["class_name"], name, namespace))
    return ActorRecord(actor_id, creation, meta["class_name"], meta["methods"], meta["is_async"],
                       name, namespace, concurrent, caller)


def _killer(caller, actor_id, class_name, name, namespace):
    """``kill`` of the actor while a handle holds its caller; nothing once none does (the
    actor went with its last handle, by the reference model: this must not keep it)."""
    caller_ref = weakref.ref(caller)

    def kill_if_alive():
        live = caller_ref()
        if live is not None:
            kill(types.SimpleNamespace(_caller=live, _creation=live.creation, _actor_id=actor_id,
                                       _class_name=class_name, _name=name, _namespace=namespace))

    return kill_if_alive


def _record_from(creation: Future, meta: dict) -> ActorRecord:
    return ActorRecord(meta["actor_id"], creation, meta["class_name"], meta["methods"], meta["is_async"],
                       meta.get("name"), meta.get("namespace"), meta.get("concurrent", False))


def _caller_for(handle) -> Caller:
    caller = handle._caller
    if caller is not None:
        return caller
    client = handle._creation.client
    key = (handle._actor_id, client.id)
    with _callers_lock:
        caller = _callers.get(key)
        if caller is None:
            caller = Caller(client, handle._actor_id, handle._creation, handle._class_name,
                            concurrent=handle._concurrent)
            _callers[key] = caller
    handle._caller = caller
    return caller


@interrupts.api_call
def call(handle, method: str, args, kwargs, num_returns):
    caller = _caller_for(handle)
    _driver.check_connected(caller.client)
    name = f"{handle._class_name}.{method}"
    args_blob, held = _args_blob(args, kwargs, name)
    backing = ActorResult(new_key(name), caller.client, name)
    backing._caller = caller
    if caller.max_pending >= 0:
        if caller.pending_count >= caller.max_pending:
            raise rex.PendingCallsLimitExceeded(
                f"The task {name} could not be submitted to {handle!r} because more than "
                f"{caller.max_pending} tasks are queued on the actor. This limit can be adjusted "
                "with the `max_pending_calls` actor option."
            )
        caller.track_pending(backing)
    generator = None
    if num_returns == "streaming":
        generator = ObjectRefGenerator(backing.key, caller.client, name)
        wire_returns = ("streaming", caller.client.id)  # the shell publishes to this client
    else:
        wire_returns = num_returns
    if caller.killed:  # ray.kill'ed from this process: fail at once
        backing._finish("error", exception=actor_died(handle._actor_id, handle._class_name, KILLED))
    else:
        if held:
            backing.arg_refs = held
            batching.flush(caller.client)  # the actor may read keys this process just submitted
        caller.call(method, args_blob, wire_returns, [backing])
    if generator is not None:
        generator._attach(ObjectRef(backing, None, name))
        return generator
    if num_returns in (1, "dynamic"):
        return ObjectRef(backing, None, name)
    if num_returns == 0:
        return None
    return [ObjectRef(backing, i, name) for i in range(num_returns)]


# ---------------------------------------------------------------- handles travel


def handle_state(handle) -> tuple:
    """What a pickled handle carries (``record_from_state`` rebuilds its record); the
    actor's current incarnation stays alive while the pickled handle may be unpickled."""
    creation = current_creation(handle)
    references.pickled(creation)
    return (handle._actor_id, creation.key, handle._class_name, handle._methods, handle._is_async,
            handle._name, handle._namespace, handle._concurrent)


def current_creation(handle):
    """The creation future of the actor's current incarnation (it changes on restart)."""
    caller = handle._caller or _callers.get((handle._actor_id, handle._creation.client.id))
    return caller.creation if caller is not None else handle._creation


def record_from_state(actor_id, creation_key, class_name, methods, is_async, name, namespace,
                      concurrent=False) -> ActorRecord:
    fut = _refs.rebind(_driver.client_for_rebind(), creation_key)
    return ActorRecord(actor_id, fut, class_name, methods, is_async, name, namespace, concurrent)


def handle_of_shell(shell):
    """Inside an actor: the record of a handle to itself (``current_actor``)."""
    from distributed import get_worker

    key = next(k for k, v in get_worker().state.actors.items() if v is shell)
    m = shell.meta
    return record_from_state(m["actor_id"], key, m["class_name"], m["methods"], m["is_async"],
                             m.get("name"), m.get("namespace"), m.get("concurrent", False))


# ---------------------------------------------------------------- kill / lookup


@interrupts.api_call
def kill(handle, no_restart: bool = True) -> None:
    """``ray.kill`` of a handle (``raycompat.kill`` checks that it is one)."""
    caller = _caller_for(handle)
    caller.killed = True
    client = caller.client

    async def do_kill():
        try:
            address = await caller._address()
        except Exception:  # noqa: BLE001 - never created or already gone
            return
        try:
            await actor_rpc(client, address, caller.creation.key, "kill", ())
        except Exception:  # noqa: BLE001 - already gone
            pass

    client.sync(do_kill)
    caller.dead = actor_died(handle._actor_id, handle._class_name, KILLED)
    # Ray kills the actor's process: calls still running or queued fail with it.
    client.loop.add_callback(caller.fail_outstanding, caller.dead)
    try:
        client.run_on_scheduler(restarts.forget, actor_id=handle._actor_id)
    except Exception:  # noqa: BLE001 - scheduler without raycompat: nothing was registered
        pass
    if handle._name is not None:
        delete_names(client, [_variable_names(handle._namespace, handle._name)])


@interrupts.api_call
def get_actor(name: str, namespace: Optional[str] = None):
    if not isinstance(name, str) or not name:
        raise ValueError("Please supply a non-empty value to get_actor")
    _driver.current_session()
    client = _driver.client()
    ns = namespace or _driver.current_namespace()
    found = _lookup(client, ns, name)
    if found is None:
        raise ValueError(
            f"Failed to look up actor with name '{name}'. This could because 1. You are trying to look "
            "up a named actor you didn't create. 2. The named actor died. 3. You did not use a "
            "namespace matching the namespace of the actor."
        )
    return _record_from(*found)


@interrupts.api_call
def list_named_actors(all_namespaces: bool = False):
    _driver.current_session()
    client = _driver.client()

    def names(dask_scheduler):
        ext = dask_scheduler.extensions.get("variables")
        return [n for n in (ext.variables if ext else {}) if n.startswith("raycompat/")]

    ns_now = _driver.current_namespace()
    out = []
    for full in client.run_on_scheduler(names):
        _, ns, name = full.split("/", 2)
        if all_namespaces:
            out.append({"name": name, "namespace": ns})
        elif ns == ns_now:
            out.append(name)
    return out


def delete_names(client, names, timeout: float = 10.0) -> None:
    """Delete name Variables and wait until the scheduler has (deletion is a message)."""
    import time

    flat = [v for pair in names for v in pair]
    for var in flat:
        try:
            distributed.Variable(var, client=client).delete()
        except Exception:  # noqa: BLE001 - already gone
            pass
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if not _existing_names(client, flat):
                return
        except Exception:  # noqa: BLE001 - scheduler gone: nothing left to delete
            return
        time.sleep(0.02)


def _delete_job_names(session) -> None:
    """At ``shutdown()``: the names of this job's non-detached actors go (Ray)."""
    if session.named_actors:
        delete_names(session.client, session.named_actors)


_driver.on_teardown(_delete_job_names)


def _fail_calls_of_lost_scheduler(client, error) -> None:
    """The scheduler is gone (on the client's loop): its workers close with it, and the
    actors with them, so the calls not answered yet fail now instead of after a timeout."""
    with _callers_lock:
        callers = [c for c in _callers.values() if c.client is client]
    for caller in callers:
        caller.dead = error
        caller.fail_outstanding(error)


_driver.on_scheduler_lost(_fail_calls_of_lost_scheduler)
