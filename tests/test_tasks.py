"""Remote functions: decorator forms, options, calls, returns and argument passing.

Every test here runs on raycompat (CI) and on real Ray 2.60 (see README); Ray's
observed behaviour is noted where it is not obvious.
"""

import time

import pytest

from conftest import run_script



def test_decorator_forms(ray):
    @ray.remote
    def a(x):
        return x + 1

    @ray.remote(num_cpus=1)
    def b(x):
        return x + 2

    def c(x):
        return x + 3

    assert ray.get([a.remote(1), b.remote(1), ray.remote(c).remote(1), ray.remote(num_cpus=1)(c).remote(1)]) == [2, 3, 4, 4]
    assert ray.get(a.options(name="renamed").remote(10)) == 11


def test_direct_call_raises_rays_type_error(ray):
    @ray.remote
    def f():
        return 1

    with pytest.raises(TypeError) as e:
        f()
    # Ray 2.60 names the function by module and __name__ (not __qualname__).
    name = f"{__name__}.f"
    assert str(e.value) == (
        f"Remote functions cannot be called directly. Instead of running '{name}()', try '{name}.remote()'."
    )


def test_invalid_options(ray):
    def f():
        return 1

    with pytest.raises(ValueError, match="Invalid option keyword bogus for remote functions"):
        ray.remote(bogus=1)(f)
    with pytest.raises(ValueError, match="Invalid option keyword retires"):
        ray.remote(f).options(retires=2)
    with pytest.raises(ValueError):
        ray.remote(num_cpus=-1)(f)
    with pytest.raises(TypeError):
        ray.remote(max_retries="x")(f)
    with pytest.raises(ValueError, match="num_cpus"):
        ray.remote(resources={"CPU": 1})(f)
    with pytest.raises(AssertionError):
        ray.remote(42)
    with pytest.raises(ValueError, match="async def"):

        @ray.remote
        async def g():
            return 1


def test_options_wrapper_has_no_second_options(ray):
    @ray.remote
    def f():
        return 1

    with pytest.raises(AttributeError):
        f.options(num_cpus=1).options(num_cpus=1)


def test_wrong_arguments_raise_at_submit(ray):
    @ray.remote
    def f(x):
        return x

    with pytest.raises(TypeError):
        f.remote(1, 2)
    with pytest.raises(TypeError):
        f.remote(y=1)


def test_calls_are_never_deduplicated(ray):
    @ray.remote
    def stamp(x):
        return time.time_ns()

    refs = [stamp.remote(1) for _ in range(5)]
    assert len(set(refs)) == 5
    assert len(set(ray.get(refs))) == 5


def test_num_returns(ray):
    @ray.remote(num_returns=3)
    def three():
        return 1, 2, 3

    @ray.remote(num_returns=0)
    def nothing():
        return 5

    refs = three.remote()
    assert isinstance(refs, list) and len(refs) == 3
    assert ray.get(refs) == [1, 2, 3]
    assert ray.get(refs[1]) == 2
    assert nothing.remote() is None

    @ray.remote
    def add(a, b):
        return a + b

    assert ray.get(add.remote(refs[0], refs[2])) == 4
    assert ray.get(three.options(num_returns=1).remote()) == (1, 2, 3)


def test_num_returns_mismatch(ray):
    @ray.remote(num_returns=2)
    def f():
        return 1, 2, 3

    with pytest.raises(ValueError) as e:
        ray.get(f.remote()[0])
    assert isinstance(e.value, ray.exceptions.RayTaskError)
    assert "Task returned 3 objects, but num_returns=2." in str(e.value)


def test_top_level_refs_resolved_nested_refs_not(ray):
    @ray.remote
    def describe(a, b=None, c=None):
        return type(a).__name__, type(b[0]).__name__, type(c["k"]).__name__

    r = ray.put(7)
    assert ray.get(describe.remote(r, b=[r], c={"k": r})) == ("int", "ObjectRef", "ObjectRef")

    @ray.remote
    def kw(x=None):
        return x

    assert ray.get(kw.remote(x=r)) == 7


def test_nested_ref_is_live_in_task(ray):
    @ray.remote
    def deref(lst):
        return ray.get(lst[0]) * 2

    @ray.remote
    def make():
        return 21

    assert ray.get(deref.remote([make.remote()])) == 42
    assert ray.get(deref.remote([ray.put(5)])) == 10


def test_ref_returned_from_task_stays_a_ref(ray):
    @ray.remote
    def inner():
        return "deep"

    @ray.remote
    def outer():
        return inner.remote()

    ref = ray.get(outer.remote())
    assert isinstance(ref, ray.ObjectRef)
    assert ray.get(ref) == "deep"


def test_ref_in_put_value_stays_alive(ray):
    @ray.remote
    def value():
        return "kept"

    holder = ray.put([value.remote()])
    import gc

    gc.collect()
    (inner,) = ray.get(holder)
    assert ray.get(inner) == "kept"


def test_object_ref_identity(ray):
    import pickle

    r = ray.put(1)
    r2 = ray.put(1)
    assert r != r2
    assert len(r.hex()) == 56
    assert repr(r) == f"ObjectRef({r.hex()})"
    assert {r: 1}[r] == 1

    @ray.remote
    def echo(x):
        return x

    back = ray.get(echo.remote([r]))[0]
    assert back == r and hash(back) == hash(r)
    assert pickle.loads(pickle.dumps(r)) == r


def test_object_ref_future_and_await(ray):
    import asyncio
    import concurrent.futures

    @ray.remote
    def f(x):
        return x * 3

    fut = f.remote(2).future()
    assert isinstance(fut, concurrent.futures.Future)
    assert fut.result(timeout=60) == 6

    async def main():
        return await f.remote(3), await asyncio.gather(f.remote(1), f.remote(2))

    assert asyncio.run(main()) == (9, [3, 6])


def test_large_argument_round_trip(ray):
    np = pytest.importorskip("numpy")

    @ray.remote
    def total(a):
        return float(a.sum())

    big = np.ones(2_000_000)  # 16 MB, far over the 100 KiB inline limit
    assert ray.get(total.remote(big)) == 2_000_000.0
    r = ray.put(big)
    assert ray.get([total.remote(r) for _ in range(4)]) == [2_000_000.0] * 4


def test_big_list_argument(ray):
    @ray.remote
    def total(xs):
        return sum(xs)

    n = 1_000_000
    assert ray.get(total.remote(list(range(n)))) == n * (n - 1) // 2
    assert ray.get(total.remote(ray.put(list(range(n))))) == n * (n - 1) // 2


def test_unserializable_argument(ray):
    import threading

    @ray.remote
    def f(x):
        return 1

    with pytest.raises(TypeError, match="Could not serialize the argument"):
        f.remote(threading.Lock())


def test_runtime_env_env_vars(ray):
    import os

    @ray.remote(runtime_env={"env_vars": {"RAYCOMPAT_TEST_VAR": "yes"}})
    def read():
        return os.environ.get("RAYCOMPAT_TEST_VAR")

    @ray.remote
    def read_plain():
        return os.environ.get("RAYCOMPAT_TEST_VAR")

    assert ray.get(read.remote()) == "yes"
    assert ray.get(read.options(runtime_env={"env_vars": {"RAYCOMPAT_TEST_VAR": "other"}}).remote()) == "other"
    assert ray.get(read_plain.remote()) is None


def test_remote_function_inside_task(ray):
    @ray.remote
    def leaf(x):
        return x + 1

    @ray.remote
    def parent(n):
        return ray.get([leaf.remote(i) for i in range(n)])

    assert ray.get(parent.remote(5)) == [1, 2, 3, 4, 5]


def test_script_defined_function_arguments_and_retried_exception():
    # A script's function, the class of its argument and the exception it retries all
    # live in __main__ (raycompat ships such blobs compressed; see serialization.Deflated).
    # Ray 2.60: the retried call succeeds on its third attempt and returns the value.
    proc = run_script(
        """
import os
ray = __import__(os.environ["RAYCOMPAT_TEST_ENGINE"])

class Point:
    def __init__(self, x, y):
        self.x, self.y = x, y

class Flaky(Exception):
    pass

@ray.remote(max_retries=3, retry_exceptions=[Flaky])
def norm1(p, attempts):
    n = ray.get(attempts.bump.remote())
    if n < 3:
        raise Flaky(n)
    return abs(p.x) + abs(p.y), n

@ray.remote
class Attempts:
    def __init__(self):
        self.n = 0
    def bump(self):
        self.n += 1
        return self.n

ray.init(num_cpus=1)
print("RESULT", ray.get(norm1.remote(Point(3, -4), Attempts.remote())))
ray.shutdown()
""",
        timeout=240,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "RESULT (7, 3)" in proc.stdout
