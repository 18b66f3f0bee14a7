"""Actors: creation, ordered calls, results as real ObjectRefs, concurrency, names, kill.

Runs on raycompat (CI) and on real Ray 2.60 (see README)."""

import asyncio
import time

import pytest

from conftest import wait_until


@pytest.fixture(scope="module")
def Counter(ray):
    @ray.remote
    class Counter:
        def __init__(self, start=0):
            self.count = start

        def increment(self, by=1):
            self.count += by
            return self.count

        def get(self):
            return self.count

        def fail(self):
            raise KeyError("boom")

        def pair(self):
            return self.count, -self.count

    return Counter


def test_seed_counter(ray, Counter):
    counter = Counter.remote()
    assert ray.get(counter.increment.remote()) == 1


def test_calls_from_one_caller_run_in_order(ray, Counter):
    c = Counter.remote()
    refs = [c.increment.remote() for _ in range(500)]
    assert ray.get(refs) == list(range(1, 501))


def test_direct_instantiation_and_call_raise(ray, Counter):
    # Ray names the class by its __qualname__ ('Counter.<locals>.Counter' here).
    with pytest.raises(TypeError, match=r"Actors cannot be instantiated directly. Instead of '(\S*\.)?Counter\(\)', use '(\S*\.)?Counter.remote\(\)'."):
        Counter()
    c = Counter.remote()
    with pytest.raises(TypeError, match=r"Actor methods cannot be called directly. Instead of running 'object.get\(\)', try 'object.get.remote\(\)'."):
        c.get()
    with pytest.raises(AttributeError):
        c.nosuch


def test_constructor_args_top_level_refs_resolved(ray, Counter):
    c = Counter.remote(ray.put(10))
    assert ray.get(c.increment.remote(ray.put(5))) == 15


def test_actor_results_are_full_object_refs(ray, Counter):
    c = Counter.remote()

    @ray.remote
    def double(x):
        return 2 * x

    r = c.increment.remote(3)
    task_ref = double.remote(r)  # an actor result passed to a task
    ready, rest = ray.wait([r, task_ref], num_returns=2, timeout=60)
    assert set(ready) == {r, task_ref} and rest == []
    assert ray.get([r, task_ref]) == [3, 6]

    @ray.remote
    def nested(lst):
        return ray.get(lst[0]) + 1

    assert ray.get(nested.remote([c.increment.remote()])) == 5


def test_method_error_keeps_actor_alive(ray, Counter):
    c = Counter.remote()
    with pytest.raises(KeyError) as e:
        ray.get(c.fail.remote())
    assert isinstance(e.value, ray.exceptions.RayTaskError)
    assert "Counter.fail" in str(e.value)
    assert ray.get(c.increment.remote()) == 1


def test_constructor_failure_surfaces_on_first_call(ray):
    @ray.remote
    class Broken:
        def __init__(self):
            raise ValueError("cannot start")

        def m(self):
            return 1

    b = Broken.remote()
    with pytest.raises(ray.exceptions.ActorDiedError) as e:
        ray.get(b.m.remote(), timeout=60)
    assert e.value.actor_init_failed
    assert "cannot start" in str(e.value)


def test_num_returns(ray):
    @ray.remote
    class Multi:
        @ray.method(num_returns=2)
        def two(self):
            return 1, 2

        def three(self):
            return 1, 2, 3

    m = Multi.remote()
    a, b = m.two.remote()
    assert ray.get([a, b]) == [1, 2]
    assert ray.get(m.three.options(num_returns=3).remote()) == [1, 2, 3]


def test_handles_passed_to_tasks_and_actors(ray, Counter):
    c = Counter.remote()

    @ray.remote
    def bump(handle, n):
        return ray.get([handle.increment.remote() for _ in range(n)])[-1]

    assert ray.get(bump.remote(c, 5)) == 5
    assert ray.get(c.get.remote()) == 5


def test_max_concurrency_threads(ray):
    @ray.remote(max_concurrency=4)
    class Sleeper:
        def nap(self):
            time.sleep(0.5)
            return time.time()

    s = Sleeper.remote()
    ray.get(s.nap.remote())
    start = time.time()
    ray.get([s.nap.remote() for _ in range(8)])
    assert time.time() - start < 2.0  # 8 x 0.5 s on 4 threads, not 4 s


def test_async_actor_interleaves(ray):
    @ray.remote
    class AsyncWaiter:
        async def wait(self, t):
            await asyncio.sleep(t)
            return t

    a = AsyncWaiter.remote()
    ray.get(a.wait.remote(0))
    start = time.time()
    assert ray.get([a.wait.remote(0.5) for _ in range(20)]) == [0.5] * 20
    assert time.time() - start < 3.0


def test_actors_do_not_block_each_other(ray):
    @ray.remote(num_cpus=0)
    class Slow:
        def nap(self, t):
            time.sleep(t)
            return t

    actors = [Slow.remote() for _ in range(3)]
    ray.get([a.nap.remote(0) for a in actors])
    start = time.time()
    ray.get([a.nap.remote(1.0) for a in actors])
    assert time.time() - start < 2.5


def test_named_actor(ray, Counter):
    c = Counter.options(name="named-counter").remote(100)
    assert ray.get(c.increment.remote()) == 101
    again = ray.get_actor("named-counter")
    assert ray.get(again.increment.remote()) == 102
    with pytest.raises(ValueError):
        Counter.options(name="named-counter").remote()
    same = Counter.options(name="named-counter", get_if_exists=True).remote(99)
    assert ray.get(same.get.remote()) == 102
    with pytest.raises(ValueError, match="Failed to look up actor with name 'nope'"):
        ray.get_actor("nope")
    ray.kill(c)
    with pytest.raises(ValueError):
        ray.get_actor("named-counter")


def test_kill_and_terminate(ray, Counter):
    c = Counter.remote()
    assert ray.get(c.increment.remote()) == 1
    ray.kill(c)
    # Ray 2.60's kill is asynchronous (seen here: a call issued right after it sometimes
    # still ran); what holds is that calls soon fail with ActorDiedError, and stay failed.
    deadline = time.time() + 30
    while True:
        try:
            ray.get(c.increment.remote(), timeout=60)
        except ray.exceptions.ActorDiedError:
            break
        assert time.time() < deadline, "calls kept succeeding after ray.kill"
        time.sleep(0.1)
    with pytest.raises(ray.exceptions.ActorDiedError):
        ray.get(c.increment.remote(), timeout=60)
    ray.kill(c)  # twice is fine

    d = Counter.remote()
    ray.get(d.increment.remote())
    with pytest.raises(ray.exceptions.RayActorError):
        ray.get(d.__ray_terminate__.remote(), timeout=60)
    with pytest.raises(ray.exceptions.RayActorError):
        ray.get(d.increment.remote(), timeout=60)

    with pytest.raises(ValueError):
        ray.kill(ray.put(1))


def test_exit_actor(ray):
    @ray.remote
    class Quitter:
        def quit(self):
            ray.actor.exit_actor()

        def ping(self):
            return "pong"

    q = Quitter.remote()
    assert ray.get(q.ping.remote()) == "pong"
    with pytest.raises(ray.exceptions.ActorDiedError):
        ray.get(q.quit.remote(), timeout=60)
    with pytest.raises(ray.exceptions.ActorDiedError):
        ray.get(q.ping.remote(), timeout=60)


def test_runtime_context_in_actor(ray):
    @ray.remote
    class Who:
        def ids(self):
            ctx = ray.get_runtime_context()
            return ctx.get_actor_id()

    w = Who.remote()
    assert ray.get(w.ids.remote()) is not None
    assert ray.get_runtime_context().get_actor_id() is None


def _kill_pid(pid):
    import os
    import signal

    os.kill(pid, signal.SIGKILL)


def test_actor_restarts_after_worker_death(ray, tmp_path):
    import os

    @ray.remote(max_restarts=1)
    class Fragile:
        def __init__(self):
            self.n = 0

        def incr(self):
            self.n += 1
            return self.n

        def pid(self):
            return os.getpid()

        def nap(self, t, started=None):
            if started is not None:
                open(started, "w").close()
            time.sleep(t)
            return t

        def reconstructed(self):
            return ray.get_runtime_context().was_current_actor_reconstructed

    a = Fragile.remote()
    assert ray.get(a.incr.remote()) == 1
    assert ray.get(a.reconstructed.remote()) is False
    # Ray 2.60 (verified): the call in flight when the actor's process is killed raises
    # ActorUnavailableError while restarts remain; the actor comes back with its
    # constructor's state; once restarts are used up, ActorDiedError.
    pid = _pid_of(ray, a)
    started = tmp_path / "started"
    in_flight = a.nap.remote(30, str(started))
    assert wait_until(started.exists, timeout=30)
    _kill_pid(pid)
    with pytest.raises(ray.exceptions.ActorUnavailableError):
        ray.get(in_flight, timeout=60)
    assert ray.get(a.incr.remote(), timeout=60) == 1
    assert ray.get(a.reconstructed.remote()) is True
    _kill_pid(_pid_of(ray, a))
    with pytest.raises(ray.exceptions.RayActorError):
        ray.get(a.incr.remote(), timeout=60)
    with pytest.raises(ray.exceptions.ActorDiedError):
        ray.get(a.incr.remote(), timeout=60)


def _pid_of(ray, actor):
    return ray.get(actor.pid.remote(), timeout=60)


def test_actor_without_restarts_dies_with_its_worker(ray):
    import os

    @ray.remote
    class Fragile:
        def pid(self):
            return os.getpid()

        def ping(self):
            return "pong"

    a = Fragile.remote()
    assert ray.get(a.ping.remote()) == "pong"
    _kill_pid(_pid_of(ray, a))
    with pytest.raises(ray.exceptions.ActorDiedError):
        ray.get(a.ping.remote(), timeout=60)
    with pytest.raises(ray.exceptions.ActorDiedError):
        ray.get(a.ping.remote(), timeout=60)


def test_max_task_retries_resends_the_call(ray, tmp_path):
    import os

    @ray.remote(max_restarts=1, max_task_retries=1)
    class OnceFragile:
        def die_once(self, path):
            if not os.path.exists(path):
                open(path, "w").write("x")
                os._exit(1)
            return "survived"

    a = OnceFragile.remote()
    assert ray.get(a.die_once.remote(str(tmp_path / "m")), timeout=60) == "survived"


def test_actor_holds_explicit_resources_while_alive(ray):
    @ray.remote(num_cpus=2)
    class Hog:
        def ping(self):
            return "pong"

    @ray.remote
    def task():
        return "ran"

    hog = Hog.remote()
    assert ray.get(hog.ping.remote()) == "pong"
    r = task.remote()
    # Ray: an actor created with num_cpus=2 holds both CPUs for its lifetime.
    ready, _ = ray.wait([r], timeout=1.5)
    assert ready == []
    ray.kill(hog)
    assert ray.get(r, timeout=60) == "ran"


def test_default_actor_holds_no_cpu(ray):
    @ray.remote
    class Idle:
        def ping(self):
            return "pong"

    idlers = [Idle.remote() for _ in range(3)]  # more actors than CPUs
    assert ray.get([a.ping.remote() for a in idlers]) == ["pong"] * 3

    @ray.remote
    def task():
        return "ran"

    assert ray.get([task.remote() for _ in range(2)], timeout=60) == ["ran", "ran"]


def test_concurrency_groups(ray):
    @ray.remote(concurrency_groups={"io": 2})
    class Grouped:
        @ray.method(concurrency_group="io")
        def slow_io(self):
            time.sleep(0.6)
            return "io"

        def compute(self):
            return "compute"

    g = Grouped.remote()
    ray.get(g.compute.remote())
    start = time.time()
    io = [g.slow_io.remote() for _ in range(2)]
    assert ray.get(g.compute.remote(), timeout=60) == "compute"
    assert time.time() - start < 0.5  # the default group was not stuck behind "io"
    assert ray.get(io) == ["io", "io"]
    assert time.time() - start < 1.1  # two io calls ran side by side


def test_call_waits_for_earlier_calls_pending_argument(ray):
    @ray.remote
    def slow(x):
        time.sleep(1.0)
        return x

    @ray.remote
    class Log:
        def __init__(self):
            self.items = []

        def add(self, x):
            self.items.append(x)
            return list(self.items)

    log = Log.remote()
    ray.get(log.add.remote("start"))
    log.add.remote(slow.remote("slow"))  # its argument is not ready yet
    # Ray (verified): the second call still runs after the first, so "slow" comes first.
    assert ray.get(log.add.remote("fast"), timeout=60) == ["start", "slow", "fast"]


def test_actor_option_validation(ray):
    class Plain:
        def m(self):
            return 1

    with pytest.raises(ValueError, match="Invalid option keyword bogus for actors"):
        ray.remote(bogus=1)(Plain)
    A = ray.remote(Plain)
    with pytest.raises(ValueError):
        A.options(max_concurrency=-1).remote()  # Ray accepts 0 (the default) but not negatives
    with pytest.raises(ValueError):
        A.options(max_restarts=-2).remote()
    with pytest.raises(ValueError):
        A.options(lifetime="forever").remote()


def test_max_pending_calls(ray):
    @ray.remote(max_pending_calls=2)
    class Busy:
        def nap(self):
            time.sleep(0.5)
            return 1

    def call_when_a_slot_is_free(actor, within=0.3):
        # Ray 2.60 frees a pending slot shortly after the reply (seen failing right after
        # get, at either call below, once in several runs); raycompat frees it with the
        # reply. Allow Ray its lag, but less than a nap: with a limit of 1, the second
        # of the two calls below would have to wait for the first to end.
        deadline = time.time() + within
        while True:
            try:
                return actor.nap.remote()
            except ray.exceptions.PendingCallsLimitExceeded:
                if time.time() > deadline:
                    raise
                time.sleep(0.05)

    b = Busy.remote()
    ray.get(b.nap.remote())
    refs = [call_when_a_slot_is_free(b), call_when_a_slot_is_free(b)]
    with pytest.raises(ray.exceptions.PendingCallsLimitExceeded):
        b.nap.remote()
    assert ray.get(refs) == [1, 1]
    assert ray.get(call_when_a_slot_is_free(b, within=10)) == 1


def cancel_a_queued_call(ray):
    """An actor with a call running and one queued; the queued one is cancelled.

    Returns the actor after checking what Ray and raycompat share."""

    @ray.remote
    class Worker:
        def __init__(self):
            self.ran = []

        def nap(self, tag, t):
            time.sleep(t)
            self.ran.append(tag)
            return tag

        def log(self):
            return list(self.ran)

    w = Worker.remote()
    ray.get(w.log.remote())
    running = w.nap.remote("first", 1.0)
    queued = w.nap.remote("second", 0.0)
    ray.cancel(queued)
    with pytest.raises(ray.exceptions.TaskCancelledError):
        ray.get(queued, timeout=60)
    assert ray.get(running) == "first"
    return w


def test_cancel_queued_actor_call(ray):
    # Ray 2.60 (run here): get of the cancelled call raises TaskCancelledError. What
    # happens next on Ray depends on timing: if the call had reached the actor it still
    # ran (the log held "second"); if not, the actor waited 30 s for the missing
    # sequence number and then failed later calls with ActorUnavailableError.
    # raycompat's shell skips the cancelled call and carries on (tests/dask_only pins
    # that). Only what both engines do is asserted here.
    cancel_a_queued_call(ray)


def test_builtin_actor_methods(ray, Counter):
    c = Counter.remote(5)
    assert ray.get(c.__ray_ready__.remote()) is True
    assert ray.get(c.__ray_call__.remote(lambda self, x: self.count + x, 10)) == 15


def test_actor_runtime_env_and_scheduling_strategy(ray):
    import os

    @ray.remote(runtime_env={"env_vars": {"RAYCOMPAT_ACTOR_VAR": "set"}})
    class Env:
        def __init__(self):
            self.at_init = os.environ.get("RAYCOMPAT_ACTOR_VAR")

        def read(self):
            return self.at_init, os.environ.get("RAYCOMPAT_ACTOR_VAR")

        def node(self):
            return ray.get_runtime_context().get_node_id()

    e = Env.remote()
    assert ray.get(e.read.remote()) == ("set", "set")
    node = ray.nodes()[0]["NodeID"]
    from importlib import import_module

    strategies = import_module(ray.__name__ + ".util.scheduling_strategies")
    pinned = Env.options(
        scheduling_strategy=strategies.NodeAffinitySchedulingStrategy(node_id=node, soft=False)
    ).remote()
    assert ray.get(pinned.node.remote()) == node
    spread = Env.options(scheduling_strategy="SPREAD").remote()
    assert ray.get(spread.read.remote()) == ("set", "set")


def test_restarted_actor_reached_from_a_handle_in_a_task(ray):
    import os

    @ray.remote(max_restarts=1)
    class Phoenix:
        def __init__(self):
            self.n = 0

        def pid(self):
            return os.getpid()

        def incr(self):
            self.n += 1
            return self.n

    a = Phoenix.remote()
    assert ray.get(a.incr.remote()) == 1

    @ray.remote
    def use(handle, pid):
        import os as _os
        import signal
        import time as _t

        _os.kill(pid, signal.SIGKILL)
        deadline = _t.time() + 60
        while True:  # calls fail while the actor restarts, then reach the new one
            try:
                return ray.get(handle.incr.remote(), timeout=60)
            except ray.exceptions.RayActorError:
                if _t.time() > deadline:
                    raise
                _t.sleep(0.2)

    assert ray.get(use.remote(a, ray.get(a.pid.remote())), timeout=120) == 1
    assert ray.get(a.incr.remote(), timeout=60) == 2  # the creator sees the same new actor


class Napper:
    def nap(self, seconds, started=None):
        if started is not None:
            open(started, "w").close()  # the test's signal that the call runs
        time.sleep(seconds)
        return "done"


def test_ray_terminate_runs_after_earlier_calls(ray):
    # Ray 2.60: __ray_terminate__ is queued like any call: earlier calls (even a running
    # one) finish, later ones fail with ActorDiedError.
    a = ray.remote(Napper).remote()
    running = a.nap.remote(0.3)
    queued = a.nap.remote(0.0)
    a.__ray_terminate__.remote()
    later = a.nap.remote(0.0)
    assert ray.get([running, queued], timeout=60) == ["done", "done"]
    with pytest.raises(ray.exceptions.RayActorError):
        ray.get(later, timeout=60)


def test_kill_fails_the_running_call(ray, tmp_path):
    # Ray 2.60 kills the actor's process: the call it was running raises ActorDiedError.
    a = ray.remote(Napper).remote()
    ray.get(a.nap.remote(0))
    started = tmp_path / "started"
    running = a.nap.remote(2.0, str(started))
    assert wait_until(started.exists, timeout=30)
    ray.kill(a)
    with pytest.raises(ray.exceptions.RayActorError):
        ray.get(running, timeout=60)


def test_is_initialized_inside_tasks_and_actors(ray):
    @ray.remote
    def in_task():
        return ray.is_initialized()

    @ray.remote
    class InActor:
        def check(self):
            return ray.is_initialized()

    assert ray.get(in_task.remote()) is True
    assert ray.get(InActor.remote().check.remote()) is True


def test_actor_constructors_may_block_in_get(ray):
    # Ray 2.60 (run here): 4 actors whose __init__ gets a task's result all start on 2
    # CPUs (a constructor blocked in get gives its placement CPU back), and then hold none.
    @ray.remote
    def plus_one(x):
        return x + 1

    @ray.remote
    class Fetches:
        def __init__(self, x):
            self.value = ray.get(plus_one.remote(x))

        def get(self):
            return self.value

    actors = [Fetches.remote(i) for i in range(4)]
    assert ray.get([a.get.remote() for a in actors], timeout=60) == [1, 2, 3, 4]
    assert wait_until(lambda: ray.available_resources().get("CPU") == 2.0, timeout=30)
    for a in actors:
        ray.kill(a)


def test_unpicklable_actor_call_argument_names_it(ray):
    """Ray 2.60: ``TypeError: Could not serialize the argument <lock ...> for a task or
    actor <module>.A.m: ...``, raised by ``.remote()``; the same wording as for tasks."""
    import threading

    a = ray.remote(Napper).remote()
    with pytest.raises(TypeError, match=r"Could not serialize the argument <unlocked _thread.lock .*> "
                                        r"for a task or actor \S*Napper.nap"):
        a.nap.remote(threading.Lock())
    assert ray.get(a.nap.remote(0)) == "done"
