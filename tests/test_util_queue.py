"""``ray.util.queue.Queue``: blocking and non-blocking put/get, batches, producers in tasks."""

import importlib

import pytest


@pytest.fixture(scope="module")
def q(ray):
    return importlib.import_module(ray.__name__ + ".util.queue")


def test_put_get_and_sizes(ray, q):
    queue = q.Queue()
    assert queue.empty() and queue.size() == 0
    queue.put(1)
    queue.put_nowait(2)
    assert queue.qsize() == 2 and len(queue) == 2
    assert queue.get() == 1 and queue.get_nowait() == 2
    queue.shutdown()


def test_empty_and_full(ray, q):
    queue = q.Queue(maxsize=1)
    with pytest.raises(q.Empty):
        queue.get(timeout=0.2)
    with pytest.raises(q.Empty):
        queue.get_nowait()
    queue.put(1)
    assert queue.full()
    with pytest.raises(q.Full):
        queue.put_nowait(2)
    with pytest.raises(q.Full):
        queue.put(2, timeout=0.2)
    import queue as stdlib_queue

    assert issubclass(q.Empty, stdlib_queue.Empty) and issubclass(q.Full, stdlib_queue.Full)
    with pytest.raises(ValueError):
        queue.get(timeout=-1)
    queue.shutdown()


def test_batches(ray, q):
    queue = q.Queue(maxsize=3)
    queue.put_nowait_batch([1, 2, 3])
    with pytest.raises(q.Full):
        queue.put_nowait_batch([4])
    with pytest.raises(q.Empty):
        queue.get_nowait_batch(4)
    assert queue.get_nowait_batch(3) == [1, 2, 3]
    queue.shutdown(force=True)


def test_producer_task_consumer_driver(ray, q):
    queue = q.Queue(maxsize=2)  # producers block on a full queue until the driver consumes

    @ray.remote
    def producer(qu, start):
        for i in range(start, start + 5):
            qu.put(i)
        return "done"

    refs = [producer.remote(queue, 0), producer.remote(queue, 100)]
    got = sorted(queue.get(timeout=60) for _ in range(10))
    assert got == list(range(5)) + list(range(100, 105))
    assert ray.get(refs) == ["done", "done"]
    queue.shutdown()


def test_queue_between_actors(ray, q):
    queue = q.Queue()

    @ray.remote
    class Consumer:
        def __init__(self, qu):
            self.q = qu

        def take(self, n):
            return [self.q.get(timeout=60) for _ in range(n)]

    c = Consumer.remote(queue)
    ref = c.take.remote(3)
    for i in range(3):
        queue.put(i)
    assert ray.get(ref, timeout=60) == [0, 1, 2]
    queue.shutdown()
