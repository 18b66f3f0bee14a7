"""``ray.util.multiprocessing.Pool``: the ``multiprocessing.Pool`` API over actors.

Behaviours pinned by running Ray 2.60 (``RAYCOMPAT_TEST_ENGINE=ray``); where Ray's Pool
matches the stdlib, the stdlib's own ``ThreadPool`` (same API and semantics as
``multiprocessing.Pool``) runs the same calls as a reference:

- a failing item's exception is re-raised by ``get``/``map``/``apply`` as the user's own
  class (not ``RayTaskError``), as the stdlib does;
- ``AsyncResult.get(timeout)`` and ``imap``'s ``next(timeout)`` raise
  ``multiprocessing.TimeoutError``; ``successful()`` before ready raises ``ValueError``;
- a closed pool raises ``ValueError("Pool not running")``, ``join()`` before ``close()``
  ``ValueError("Pool is still running")``, the ``with`` block exits with ``terminate()``;
- ``Pool(0)``: ``ValueError("Processes in the pool must be >0.")``; more processes than
  the cluster's CPUs: ``ValueError``; default: the cluster's CPU count;
- the pool's actors hold no CPU (``num_cpus=0``); ``ray_remote_args`` configures them;
- chunk ``i`` of a ``map`` goes to actor ``i % processes``; default chunksize
  ``ceil(len / (4 * processes))``;
- ``maxtasksperchild`` counts chunks (actor calls) and replaces the actor;
- ``imap`` reads its iterable lazily (an endless iterator works);
- Ray's Pool calls ``ray.init(num_cpus=processes)`` when Ray is not initialised.

Where Ray 2.60 departs from the stdlib (``error_callback`` receives Ray's internal
``PoolTaskError`` wrapper, and ``imap`` yields that wrapper instead of raising),
raycompat follows the stdlib; the tests below pin both.
"""

import importlib
import itertools
import multiprocessing
import os
import time
from multiprocessing.pool import ThreadPool

import pytest

from conftest import ENGINE, ON_RAY, run_script, wait_until

mp = importlib.import_module(f"{ENGINE}.util.multiprocessing")
engine = importlib.import_module(ENGINE)


class MyError(Exception):
    pass


def square(x):
    return x * x


def slow_square(x):
    time.sleep(0.05 * x)
    return x * x


def fail_on_3(x):
    if x == 3:
        raise MyError(f"bad {x}")
    return x


def actor_id(_=None):
    return engine.get_runtime_context().get_actor_id()


def pid(_=None):
    return os.getpid()


def getenv(name):
    return os.environ.get(name)


def wait_for(path, value=None, timeout=30.0):
    """Block until ``path`` exists (the test creates it to release the call)."""
    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            raise TimeoutError(path)
        time.sleep(0.01)
    return value


def rendezvous(mine, other):
    """True only if the call holding ``other`` runs at the same time as this one."""
    open(mine, "w").close()
    deadline = time.monotonic() + 30
    while not os.path.exists(other):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


@pytest.fixture(scope="module")
def pool(ray):
    p = mp.Pool(2)
    yield p
    p.terminate()


def _calls(p):
    """The same calls on a Pool and on the stdlib's ThreadPool."""
    return {
        "map": p.map(square, range(10)),
        "map_chunks": p.map(square, range(10), chunksize=3),
        "map_generator": p.map(square, (i for i in range(5))),
        "map_empty": p.map(square, []),
        "starmap": p.starmap(pow, [(2, 3), (3, 2), (5, 0)]),
        "apply": p.apply(divmod, (17, 5)),
        "apply_kwargs": p.apply(int, ("ff",), {"base": 16}),
        "imap": list(p.imap(square, range(7))),
        "imap_chunks": list(p.imap(square, iter(range(7)), chunksize=3)),
        "imap_unordered": sorted(p.imap_unordered(square, range(7), chunksize=2)),
        "imap_empty": list(p.imap(square, [])),
        "map_async": p.map_async(square, range(4)).get(timeout=30),
        "starmap_async": p.starmap_async(pow, [(2, 2), (3, 3)]).get(timeout=30),
        "apply_async": p.apply_async(square, (9,)).get(timeout=30),
    }


def test_results_match_the_stdlib_pool(pool):
    with ThreadPool(2) as reference:
        expected = _calls(reference)
    assert _calls(pool) == expected
    assert expected["map"] == [x * x for x in range(10)]


def test_work_runs_concurrently_in_actors(pool, tmp_path):
    a, b = str(tmp_path / "a"), str(tmp_path / "b")
    assert pool.starmap(rendezvous, [(a, b), (b, a)], chunksize=1) == [True, True]
    assert os.getpid() not in pool.map(pid, range(4), chunksize=1)
    assert None not in pool.map(actor_id, range(2), chunksize=1)


def test_chunks_go_round_robin(pool):
    explicit = pool.map(actor_id, range(8), chunksize=4)
    assert len(set(explicit)) == 2
    assert explicit == [explicit[0]] * 4 + [explicit[4]] * 4
    default = pool.map(actor_id, range(8))  # chunksize ceil(8 / (4 * 2)) == 1
    assert default == [default[0], default[1]] * 4 and default[0] != default[1]


@pytest.mark.differs_from_ray
def test_exceptions_are_the_users_class(pool):
    with ThreadPool(2) as reference:
        with pytest.raises(MyError, match="bad 3"):
            reference.map(fail_on_3, range(5))
    with pytest.raises(MyError, match="bad 3") as info:
        pool.map(fail_on_3, range(5))
    assert type(info.value) is MyError
    with pytest.raises(MyError):
        pool.apply(fail_on_3, (3,))
    with pytest.raises(MyError):
        pool.starmap(fail_on_3, [(3,)])
    with pytest.raises(ZeroDivisionError):
        pool.starmap_async(divmod, [(1, 0)]).get(timeout=30)
    if not ON_RAY:
        # As the stdlib: the remote traceback is the exception's cause (Ray 2.60: none).
        assert type(info.value.__cause__).__name__ == "RemoteTraceback"
        assert "fail_on_3" in str(info.value.__cause__)
    assert pool.map(square, range(3)) == [0, 1, 4]  # the pool still works


def test_async_result_states(pool, tmp_path):
    release = str(tmp_path / "release")
    result = pool.apply_async(wait_for, (release, 42))
    assert not result.ready()
    with pytest.raises(ValueError, match="not ready"):
        result.successful()
    with pytest.raises(multiprocessing.TimeoutError):
        result.get(timeout=0.1)
    assert result.wait(timeout=0.1) is None  # wait never raises
    open(release, "w").close()
    assert result.get(timeout=30) == 42
    assert result.ready() and result.successful()
    failed = pool.map_async(fail_on_3, range(5))
    failed.wait(timeout=30)
    assert failed.ready() and not failed.successful()
    with pytest.raises(MyError):
        failed.get()


@pytest.mark.differs_from_ray
def test_callbacks(pool):
    got = []
    # Earlier items take longer, so chunks finish out of order.
    r = pool.map_async(slow_square, [3, 2, 1, 0], chunksize=1, callback=got.append, error_callback=got.append)
    r.wait(timeout=30)
    r2 = pool.apply_async(square, (5,), callback=got.append)
    r2.wait(timeout=30)
    r3 = pool.starmap_async(pow, [(2, 5)], callback=got.append)
    r3.wait(timeout=30)
    # callback gets the whole list (apply_async: the single result), once.
    assert len(got) == 3 and got[1:] == [25, [32]]
    assert r.get() == [9, 4, 1, 0]
    if ON_RAY:
        # Ray 2.60 hands callback the results in the order their chunks finished.
        assert sorted(got[0]) == [0, 1, 4, 9]
    else:
        assert got[0] == [9, 4, 1, 0]  # as the stdlib: in order

    errors, successes = [], []
    r = pool.map_async(fail_on_3, range(5), callback=successes.append, error_callback=errors.append)
    r.wait(timeout=30)
    assert successes == [] and len(errors) == 1
    err = errors[0]
    if ON_RAY:
        # Ray 2.60 hands error_callback its internal wrapper, not the user's exception.
        assert type(err).__name__ == "PoolTaskError" and isinstance(err.underlying, MyError)
    else:
        assert isinstance(err, MyError)  # as the stdlib


def test_imap_is_lazy_and_times_out(pool, tmp_path):
    # An endless iterable: imap reads it only as results are consumed.
    assert list(itertools.islice(pool.imap(square, itertools.count()), 6)) == [0, 1, 4, 9, 16, 25]
    release = str(tmp_path / "release")
    it = pool.imap(wait_for, [release])
    with pytest.raises(multiprocessing.TimeoutError):
        it.next(timeout=0.1)
    open(release, "w").close()
    assert it.next(timeout=30) is None
    with pytest.raises(StopIteration):
        next(it)


@pytest.mark.differs_from_ray
def test_imap_failure_position(pool):
    out = []
    try:
        for v in pool.imap(fail_on_3, range(6)):
            out.append(v)
    except MyError:
        out.append("raised")
    if ON_RAY:
        # Ray 2.60 yields its internal wrapper as if it were a result, and goes on.
        assert out[:3] == [0, 1, 2] and type(out[3]).__name__ == "PoolTaskError" and out[4:] == [4, 5]
    else:
        assert out == [0, 1, 2, "raised"]  # as the stdlib
        it = pool.imap(fail_on_3, range(6))
        assert [next(it) for _ in range(3)] == [0, 1, 2]
        with pytest.raises(MyError):
            next(it)
        assert list(it) == [4, 5]  # the stdlib's chunksize=1 iterator also goes on


def test_close_join_and_closed_errors(ray, tmp_path):
    p = mp.Pool(1)
    release = str(tmp_path / "release")
    pending = p.map_async(wait_for, [release] * 3, chunksize=1)
    with pytest.raises(ValueError, match="Pool is still running"):
        p.join()
    p.close()
    for call in (
        lambda: p.map(square, [1]),
        lambda: p.apply(square, (1,)),
        lambda: p.apply_async(square, (1,)),
        lambda: p.imap(square, [1]),
        lambda: p.starmap(pow, [(1, 1)]),
    ):
        with pytest.raises(ValueError, match="Pool not running"):
            call()
    open(release, "w").close()
    p.join()
    # Work sent before close() finishes, as in the stdlib.
    assert pending.get(timeout=30) == [None, None, None]
    p.close()  # closing twice is harmless
    p.terminate()


def test_context_manager_terminates(ray):
    with mp.Pool(1) as p:
        assert p.apply(pid) != os.getpid()
    with pytest.raises(ValueError, match="Pool not running"):
        p.map(square, [1])
    p.join()  # terminated pools join at once


def test_terminate_fails_queued_work(ray, tmp_path):
    p = mp.Pool(1)
    release = str(tmp_path / "release")
    running = p.apply_async(wait_for, (release,))
    queued = p.apply_async(square, (3,))
    p.terminate()
    with pytest.raises(engine.exceptions.RayActorError):
        queued.get(timeout=30)
    open(release, "w").close()
    running.wait(timeout=30)
    p.join()


def test_processes(ray):
    with pytest.raises(ValueError, match=r"Processes in the pool must be >0\."):
        mp.Pool(0)
    with pytest.raises(ValueError, match="only 2 CPUs in the ray cluster"):
        mp.Pool(3)
    with mp.Pool() as p:  # default: the cluster's CPU count (2)
        assert len(set(p.map(actor_id, range(8), chunksize=1))) == 2


def _set_env(name, value):
    os.environ[name] = value


def test_initializer_and_remote_args(ray):
    # Ray's initializer cannot set globals of a by-value function (cloudpickle): it
    # sets process state, here an environment variable.
    with mp.Pool(2, initializer=_set_env, initargs=("RAYCOMPAT_POOL_INIT", "yes")) as p:
        assert p.map(getenv, ["RAYCOMPAT_POOL_INIT"] * 4, chunksize=1) == ["yes"] * 4
    remote_args = {"runtime_env": {"env_vars": {"RAYCOMPAT_POOL_ENV": "set"}}}
    with mp.Pool(1, ray_remote_args=remote_args) as p:
        assert p.apply(getenv, ("RAYCOMPAT_POOL_ENV",)) == "set"


def test_actors_hold_no_cpu_unless_asked(ray):
    with mp.Pool(2):
        # Ray's PoolActor is num_cpus=0: tasks still get every CPU.
        assert wait_until(lambda: ray.available_resources().get("CPU") == 2.0)
    with mp.Pool(1, ray_remote_args={"num_cpus": 1}):
        assert wait_until(lambda: ray.available_resources().get("CPU") == 1.0)
    assert wait_until(lambda: ray.available_resources().get("CPU") == 2.0)


def test_maxtasksperchild_replaces_the_actor(ray):
    with mp.Pool(1, maxtasksperchild=2) as p:
        ids = [p.apply(actor_id) for _ in range(6)]
        assert ids[0] == ids[1] != ids[2] == ids[3] != ids[4] == ids[5]
        assert len(set(ids)) == 3
        # A map chunk counts as one task: the next two chunks share an actor.
        chunked = p.map(actor_id, range(6), chunksize=2)
        assert len(set(chunked[:4])) == 1 and chunked[4] == chunked[5] != chunked[0]
        assert ids[5] not in chunked


def test_pool_starts_the_cluster_when_not_initialised():
    proc = run_script(
        """
        import importlib, os
        engine = os.environ["RAYCOMPAT_TEST_ENGINE"]
        ray = importlib.import_module(engine)
        Pool = importlib.import_module(engine + ".util.multiprocessing").Pool
        assert not ray.is_initialized()
        p = Pool(2)
        print("RESULT", ray.is_initialized(), ray.cluster_resources()["CPU"], p.map(abs, [-1, -2]))
        p.terminate()
        ray.shutdown()
        """,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT")][-1]
    # Ray starts a local cluster with as many CPUs as the pool has processes.
    assert line == "RESULT True 2.0 [1, 2]"
