"""Exceptions: Ray's hierarchy, the dual RayTaskError(UserError) class, propagation."""

import threading

import pytest


class GoodErr(Exception):
    def __init__(self, code):
        super().__init__(code)
        self.code = code


def test_task_error_is_both_ray_task_error_and_user_class(ray):
    @ray.remote
    def boom():
        raise ValueError("bad value 42")

    with pytest.raises(ValueError) as e:
        ray.get(boom.remote())
    err = e.value
    assert isinstance(err, ray.exceptions.RayTaskError)
    assert isinstance(err, ray.exceptions.RayError)
    assert type(err).__name__ == "RayTaskError(ValueError)"
    assert isinstance(err.cause, ValueError)
    assert "bad value 42" in str(err)
    assert "ray::boom()" in str(err)
    assert "Traceback" not in str(err).splitlines()[0]


def test_user_exception_attributes_survive(ray):
    @ray.remote
    def fail():
        raise GoodErr(7)

    with pytest.raises(GoodErr) as e:
        ray.get(fail.remote())
    assert e.value.code == 7


def test_error_propagates_through_dependents(ray):
    @ray.remote
    def boom():
        raise ValueError("bad value 42")

    @ray.remote
    def consume(x):
        return x

    with pytest.raises(ValueError) as e:
        ray.get(consume.remote(boom.remote()))
    text = str(e.value)
    # Ray: the dependent's header, then the note, then the original error.
    assert "ray::consume()" in text
    assert "At least one of the input arguments for this task could not be computed:" in text
    assert "bad value 42" in text
    assert isinstance(e.value, ray.exceptions.RayTaskError)


def test_get_list_fails_fast(ray):
    import time

    @ray.remote
    def slow():
        time.sleep(6)
        return 1

    @ray.remote
    def boom():
        raise KeyError("k")

    s = slow.remote()
    start = time.monotonic()
    with pytest.raises(KeyError):
        ray.get([s, boom.remote()])
    assert time.monotonic() - start < 5
    ray.cancel(s)


def test_retry_exceptions(ray, tmp_path):
    @ray.remote(max_retries=2, retry_exceptions=True)
    def flaky(path):
        with open(path, "a") as f:
            f.write("x")
        if len(open(path).read()) < 3:
            raise ValueError("not yet")
        return len(open(path).read())

    assert ray.get(flaky.remote(str(tmp_path / "a"))) == 3

    @ray.remote(max_retries=2, retry_exceptions=[KeyError])
    def wrong_kind(path):
        with open(path, "a") as f:
            f.write("x")
        raise ValueError("no retry for ValueError")

    with pytest.raises(ValueError):
        ray.get(wrong_kind.remote(str(tmp_path / "b")))
    assert open(tmp_path / "b").read() == "x"

    @ray.remote
    def default_no_retry(path):
        with open(path, "a") as f:
            f.write("x")
        raise ValueError("app errors are not retried by default")

    with pytest.raises(ValueError):
        ray.get(default_no_retry.remote(str(tmp_path / "c")))
    assert open(tmp_path / "c").read() == "x"


def test_unpicklable_exception_becomes_unserializable(ray):
    class TwoArgErr(Exception):
        def __init__(self, code, msg):
            super().__init__(msg)
            self.code = code

    @ray.remote
    def fail():
        raise TwoArgErr(1, "two args")

    with pytest.raises(ray.exceptions.RayError) as e:
        ray.get(fail.remote())
    assert not isinstance(e.value, TwoArgErr)
    assert "two args" in str(e.value)


def test_exception_hierarchy(ray):
    ex = ray.exceptions
    assert issubclass(ex.GetTimeoutError, TimeoutError)
    assert issubclass(ex.ActorDiedError, ex.RayActorError)
    assert issubclass(ex.OwnerDiedError, ex.ObjectLostError)
    assert issubclass(ex.ActorAlreadyExistsError, ValueError)
    for name in ["TaskCancelledError", "WorkerCrashedError", "OutOfMemoryError", "ObjectLostError",
                 "UnserializableException", "RaySystemError", "RuntimeEnvSetupError"]:
        assert issubclass(getattr(ex, name), ex.RayError)


class _HoldsLock(Exception):
    def __init__(self, text):
        super().__init__(text)
        self.lock = threading.Lock()


def test_exception_holding_an_unpicklable_object(ray):
    """Ray 2.60: ``RayTaskError`` carrying the exception's text and the remote traceback."""

    @ray.remote
    def fail():
        raise _HoldsLock("the lock holder failed")

    with pytest.raises(ray.exceptions.RayTaskError) as info:
        ray.get(fail.remote(), timeout=60)
    text = str(info.value)
    assert "the lock holder failed" in text
    assert ", in fail" in text  # the remote traceback (Ray drops its "Traceback" line)
    assert not isinstance(info.value, ray.exceptions.RaySystemError)
    assert isinstance(info.value.cause, ray.exceptions.RayError)  # Ray's stand-in cause
