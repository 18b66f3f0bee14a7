"""``ray.util.inspect_serializability``: what stops an object from pickling.

The expected reports below are Ray 2.60's output, byte for byte (addresses masked):
ANSI colours around ``!!! FAIL`` and the failure list when ``print_file`` is given, none
on a standard output that is not a terminal (Ray's colorama strips them there). Ray's
walk: a function's closure globals then nonlocals, an object's members, ``depth`` levels
down; the failing leaf is reported as ``FailTuple(name [path=a -> b, obj=..., parent=...])``.
"""

import io
import re
import threading

import pytest

LOCK = threading.Lock()

RED, RESET, BRIGHT, RESET_ALL = "\x1b[31m", "\x1b[39m", "\x1b[1m", "\x1b[0m"
FAIL = f"{RED}!!! FAIL{RESET} serialization: cannot pickle '_thread.lock' object"
LOCK_REPR = "<unlocked _thread.lock object at 0x>"
NOT_FOUND = (
    "WARNING: Did not find non-serializable object in lock instance. This may be because the "
    "object is only non-serializable when combined with other objects, or because cloudpickle "
    "and the traversal disagree. Try calling `ray.util.inspect_serializability` on individual "
    "attributes to isolate the cause."
)


def _footer(bar, failure):
    return [
        bar,
        "Variable: ",
        "",
        f"\t{BRIGHT}{failure}{RESET_ALL}",
        "",
        (
            "was found to be non-serializable. There may be multiple other undetected variables "
            "that were non-serializable. "
        ),
        (
            "Consider either removing the instantiation/imports of these variables or moving the "
            "instantiation into the scope of the function/class. "
        ),
        bar,
        (
            "Check https://docs.ray.io/en/master/ray-core/objects/serialization.html#troubleshooting "
            "for more information."
        ),
        (
            "If you have any suggestions on how to improve this error message, please reach out to "
            "the Ray developers on github.com/ray-project/ray/issues/"
        ),
        bar,
    ]


def _report(ray, obj, **kwargs):
    buf = io.StringIO()
    ok, failures = ray.util.inspect_serializability(obj, print_file=buf, **kwargs)
    return ok, failures, re.sub("0x[0-9a-f]+", "0x", buf.getvalue()).splitlines()


def _uses_global_lock():
    def uses_lock():
        return LOCK

    return uses_lock


def test_serializable_objects(ray):
    ok, failures, lines = _report(ray, 5)
    assert (ok, failures) == (True, set())
    bar = "=" * len("Checking Serializability of 5")
    assert lines == [bar, "Checking Serializability of 5", bar]

    def plain(x):
        return x + 1

    class Plain:
        def __init__(self):
            self.data = [1, 2, 3]

    for obj in (plain, Plain, Plain(), {"a": [1.5, None]}):
        assert ray.util.inspect_serializability(obj, print_file=io.StringIO()) == (True, set())


def test_unpicklable_object_itself(ray):
    ok, failures, lines = _report(ray, LOCK, name="lock")
    assert not ok
    [failure] = failures
    assert failure.obj is LOCK and failure.path == ("lock",) and failure.parent is None
    bar = "=" * 76  # len("Checking Serializability of " + repr(LOCK)), capped at 80
    assert lines == [bar, f"Checking Serializability of {LOCK_REPR}", bar, FAIL, NOT_FOUND] + _footer(
        bar, f"FailTuple(lock [path=lock, obj={LOCK_REPR}, parent=None])"
    )


def test_global_of_a_function(ray):
    fn = _uses_global_lock()
    ok, failures, lines = _report(ray, fn, name="fn")
    assert not ok
    [failure] = failures
    assert failure.obj is LOCK and failure.path == ("fn", "LOCK") and failure.parent is fn
    fn_repr = "<function _uses_global_lock.<locals>.uses_lock at 0x>"
    bar = "=" * 80
    assert lines == [
        bar,
        f"Checking Serializability of {fn_repr}",
        bar,
        FAIL,
        "Inspecting closure of '_uses_global_lock.<locals>.uses_lock':",
        "Detected 1 global variables. Checking serializability...",
        f"    Serializing 'LOCK' {LOCK_REPR}...",
        f"    {FAIL}",
        f"    {NOT_FOUND}",
    ] + _footer(bar, f"FailTuple(LOCK [path=fn -> LOCK, obj={LOCK_REPR}, parent={fn_repr}])")


def test_nonlocal_of_a_closure_and_depth(ray):
    lock = threading.Lock()

    def closure():
        return lock

    ok, failures, lines = _report(ray, closure)
    [failure] = failures
    assert not ok and failure.obj is lock and failure.path == ("lock",) and failure.parent is closure
    assert "Detected 1 nonlocal variables. Checking serializability..." in lines
    assert f"    Serializing 'lock' {LOCK_REPR}..." in lines

    # depth=0: no walk, the object itself is the failure and no footer is printed.
    ok, failures, lines = _report(ray, closure, depth=0)
    [failure] = failures
    assert not ok and failure.obj is closure and failure.path == ()
    assert lines[3:] == [FAIL]


def test_member_of_an_object(ray):
    class Holder:
        def __init__(self):
            self.a_value = 1
            self.lock = threading.Lock()
            self.z_never_reached = threading.Lock()

    holder = Holder()
    ok, failures, lines = _report(ray, holder, name="holder")
    [failure] = failures
    assert not ok and failure.obj is holder.lock and failure.parent is holder
    assert failure.path == ("holder", "lock")
    assert repr(failure).startswith("FailTuple(lock [path=holder -> lock, obj=<unlocked _thread.lock")
    # Members in name order, each tried; the walk stops at the first that fails.
    assert lines[3:8] == [
        FAIL,
        "    Serializing 'a_value' 1...",
        f"    Serializing 'lock' {LOCK_REPR}...",
        f"    {FAIL}",
        f"    {NOT_FOUND}",
    ]
    assert not any("z_never_reached" in line for line in lines)


def test_prints_to_stdout_without_colours_when_not_a_terminal(ray, capsys):
    ok, _ = ray.util.inspect_serializability(LOCK)
    out = capsys.readouterr().out
    assert not ok
    assert "!!! FAIL serialization: cannot pickle '_thread.lock' object" in out
    assert "\x1b" not in out


@pytest.mark.parametrize("depth", [1, 2])
def test_depth_limits_the_walk(ray, depth):
    inner = threading.Lock()

    class Inner:
        def __init__(self):
            self.lock = inner

    class Outer:
        def __init__(self):
            self.inner = Inner()

    outer = Outer()
    ok, failures, _ = _report(ray, outer, depth=depth)
    [failure] = failures
    assert not ok
    # depth 1 stops at the member that fails; depth 2 reaches the lock inside it.
    if depth == 1:
        assert failure.obj is outer.inner and failure.path == ("inner",)
    else:
        assert failure.obj is inner and failure.path == ("inner", "lock")
