"""Generators: ``ObjectRefGenerator`` (streaming), ``num_returns="dynamic"``, actor
generator methods. Behaviours pinned by running Ray 2.60 (``RAYCOMPAT_TEST_ENGINE=ray``):

- a generator function's ``.remote()`` returns ``ray.ObjectRefGenerator`` at once; ``next``
  gives ObjectRefs while the task is still running; ``ray.get(gen)`` returns ``gen``;
- an exception inside the generator is the next item (``RayTaskError`` that is also the
  user's class), after the items already yielded; then ``StopIteration``;
- ``ray.wait([gen])`` is ready when the next item (or the end) is there;
- after ``ray.cancel(gen)`` the next item raises ``TaskCancelledError`` even if more items
  had been yielded (Ray drops them), then the iteration stops;
- ``num_returns="dynamic"`` warns ``RayDeprecationWarning`` where the function is decorated,
  and ``get`` of its single ref is a ``DynamicObjectRefGenerator`` of refs;
- a generator with a fixed ``num_returns`` stores its items as the returns (``num_returns=1``
  and one ``yield``: ``get`` gives that item);
- ``num_returns="streaming"`` on a plain function raises ValueError when decorated;
- an ObjectRefGenerator cannot be passed to a task (TypeError at ``.remote()``);
- sync and async generator methods of actors stream too (``async for`` works).
"""

import asyncio
import importlib
import os
import time

import pytest

from conftest import ENGINE

#: Bound for any single wait in this module: only a guard against hangs.
HANG = 60


def _wait_for_file(path):
    deadline = time.time() + HANG
    while not os.path.exists(path):
        if time.time() > deadline:
            raise TimeoutError(path)
        time.sleep(0.01)


def test_items_arrive_while_the_task_runs(ray, tmp_path):
    flag = str(tmp_path / "go")

    @ray.remote
    def two_halves(flag):
        yield "first"
        _wait_for_file(flag)  # blocks until the driver has the first item
        yield "second"

    gen = two_halves.remote(flag)
    assert type(gen) is ray.ObjectRefGenerator
    first = next(gen)
    assert type(first) is ray.ObjectRef
    assert ray.get(first) == "first"
    ready, _ = ray.wait([gen.completed()], timeout=0)
    assert ready == []  # the task is still running
    open(flag, "w").close()
    assert [ray.get(r) for r in gen] == ["second"]
    with pytest.raises(StopIteration):
        next(gen)
    assert ray.get(gen.completed()) is None


def test_get_of_generator_is_the_generator(ray):
    @ray.remote
    def count(n):
        for i in range(n):  # not ``yield from range(n)``: Ray 2.60 calls .send() on it and fails
            yield i

    gen = count.remote(3)
    assert ray.get(gen) is gen
    assert [ray.get(r) for r in gen] == [0, 1, 2]


def test_error_mid_stream_is_the_next_item(ray):
    @ray.remote
    def fails_at(n, bad):
        for i in range(n):
            if i == bad:
                raise KeyError("boom")
            yield i * 10

    out = []
    for ref in fails_at.remote(5, 2):
        try:
            out.append(ray.get(ref))
        except ray.exceptions.RayTaskError as e:
            assert isinstance(e, KeyError)
            out.append("error")
    assert out == [0, 10, "error"]


def test_wait_on_generator(ray, tmp_path):
    flag = str(tmp_path / "go")

    @ray.remote
    def later(flag):
        _wait_for_file(flag)
        yield 1

    gen = later.remote(flag)
    ready, not_ready = ray.wait([gen], timeout=0.2)
    assert ready == [] and not_ready == [gen]
    open(flag, "w").close()
    ready, not_ready = ray.wait([gen], timeout=HANG)
    assert ready == [gen] and not_ready == []
    assert ray.get(next(gen)) == 1
    # Exhausted: ready at once (next() raises StopIteration).
    ready, _ = ray.wait([gen], timeout=HANG)
    assert ready == [gen]
    with pytest.raises(StopIteration):
        next(gen)


def test_wait_mixes_generators_and_refs(ray):
    @ray.remote
    def one():
        yield 1

    @ray.remote
    def value():
        return 2

    gen, ref = one.remote(), value.remote()
    ready, not_ready = ray.wait([gen, ref], num_returns=2, timeout=HANG)
    assert ready == [gen, ref] and not_ready == []


def test_cancel_generator(ray):
    @ray.remote
    def forever():
        i = 0
        while True:
            yield i
            i += 1
            time.sleep(0.02)

    gen = forever.remote()
    assert ray.get(next(gen)) == 0
    time.sleep(0.3)  # let a few more items exist: Ray drops them on cancel
    ray.cancel(gen)
    with pytest.raises(ray.exceptions.TaskCancelledError):
        ray.get(next(gen))
    with pytest.raises(StopIteration):
        next(gen)


def test_items_are_ordinary_refs(ray):
    @ray.remote
    def numbers():
        yield 20
        yield 22

    @ray.remote
    def add(a, b):
        return a + b

    a, b = list(numbers.remote())
    total = add.remote(a, b)
    ready, _ = ray.wait([total, a], num_returns=2, timeout=HANG)
    assert len(ready) == 2
    assert ray.get(total) == 42
    assert ray.get([a, b]) == [20, 22]


def test_large_items(ray):
    np = pytest.importorskip("numpy")

    @ray.remote
    def arrays():
        for i in range(3):
            yield np.full(500_000, i, dtype=np.int64)

    sums = [int(ray.get(r).sum()) for r in arrays.remote()]
    assert sums == [0, 500_000, 1_000_000]


def test_nested_consumer_inside_a_task(ray):
    @ray.remote
    def count(n):
        for i in range(n):  # not ``yield from range(n)``: Ray 2.60 calls .send() on it and fails
            yield i

    @ray.remote
    def total(n):
        return sum(ray.get(r) for r in count.remote(n))

    assert ray.get(total.remote(5)) == 10


def test_generator_cannot_be_passed_to_a_task(ray):
    @ray.remote
    def count(n):
        for i in range(n):  # not ``yield from range(n)``: Ray 2.60 calls .send() on it and fails
            yield i

    @ray.remote
    def consume(gen):
        return list(gen)

    gen = count.remote(2)
    with pytest.raises(TypeError):
        consume.remote(gen)
    assert [ray.get(r) for r in gen] == [0, 1]


def test_fixed_num_returns_generator(ray):
    @ray.remote(num_returns=2)
    def pair():
        yield "a"
        yield "b"

    @ray.remote(num_returns=1)
    def single():
        yield "only"

    a, b = pair.remote()
    assert ray.get([a, b]) == ["a", "b"]
    assert ray.get(single.remote()) == "only"


def test_dynamic_num_returns(ray):
    annotations = importlib.import_module(f"{ENGINE}.util.annotations")
    with pytest.warns(annotations.RayDeprecationWarning, match="num_returns='dynamic' is deprecated") as rec:

        @ray.remote(num_returns="dynamic")
        def dyn(n):
            yield from range(n)

    assert rec[0].filename == __file__  # warned at the decorator, in user code
    ref = dyn.remote(3)
    assert type(ref) is ray.ObjectRef
    inner = ray.get(ref)
    assert type(inner) is ray.DynamicObjectRefGenerator
    assert [ray.get(r) for r in inner] == [0, 1, 2]


def test_streaming_needs_a_generator_function(ray):
    with pytest.raises(ValueError, match="can only be used with generator functions"):

        @ray.remote(num_returns="streaming")
        def not_a_generator():
            return 1


def test_actor_generator_methods(ray):
    @ray.remote
    class Source:
        def __init__(self):
            self.base = 100

        def numbers(self, n):
            for i in range(n):
                yield self.base + i

        def broken(self):
            yield 1
            raise ValueError("bad")

    src = Source.remote()
    gen = src.numbers.remote(3)
    assert type(gen) is ray.ObjectRefGenerator
    assert [ray.get(r) for r in gen] == [100, 101, 102]
    out = []
    for ref in src.broken.remote():
        try:
            out.append(ray.get(ref))
        except ValueError as e:
            assert isinstance(e, ray.exceptions.RayTaskError)
            out.append("error")
    assert out == [1, "error"]


def test_async_actor_generator_and_async_for(ray):
    @ray.remote
    class Ticker:
        async def ticks(self, n):
            for i in range(n):
                await asyncio.sleep(0.01)
                yield i

    t = Ticker.remote()

    async def consume():
        return [await ref async for ref in t.ticks.remote(4)]

    assert asyncio.run(consume()) == [0, 1, 2, 3]
