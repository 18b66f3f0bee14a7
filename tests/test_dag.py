"""``ray.dag``: ``.bind()``, ``InputNode``, ``MultiOutputNode`` and ``execute()``.

Every behaviour below was checked on Ray 2.60 (``RAYCOMPAT_TEST_ENGINE=ray``).
"""

import importlib
import re
import uuid
import warnings

import pytest

from conftest import ENGINE

dag = importlib.import_module(f"{ENGINE}.dag")
annotations = importlib.import_module(f"{ENGINE}.util.annotations")
InputNode, MultiOutputNode = dag.InputNode, dag.MultiOutputNode

EXECUTE_DEPRECATED = "DAGNode.execute() is deprecated and will be removed in a future release."


@pytest.fixture(scope="module")
def fns(ray):
    @ray.remote
    def add(a, b):
        return a + b

    @ray.remote
    def show(x):
        return repr(x)

    @ray.remote
    def kinds(x):
        # What the task receives for each element: nested refs stay ObjectRefs.
        if isinstance(x, dict):
            return {k: type(v).__name__ for k, v in x.items()}
        return [type(v).__name__ for v in x]

    @ray.remote
    def boom(x):
        raise ValueError(f"boom {x}")

    @ray.remote(num_returns=2)
    def two(x):
        return x, x + 1

    class NS:
        pass

    NS.add, NS.show, NS.kinds, NS.boom, NS.two = add, show, kinds, boom, two
    return NS


@pytest.fixture(scope="module")
def Counter(ray):
    @ray.remote
    class Counter:
        def __init__(self, start=0):
            self.n = start

        def inc(self, k=1):
            self.n += k
            return self.n

        def get(self):
            return self.n

        @ray.method(num_returns=2)
        def pair(self, x):
            return x, x * 10

        def fail(self, key):
            raise KeyError(key)

    return Counter


def test_function_chain_returns_object_ref(ray, fns):
    with InputNode() as inp:
        node = fns.add.bind(fns.add.bind(inp, 1), 10)
    assert isinstance(node, dag.FunctionNode) and isinstance(node, dag.DAGNode)
    ref = node.execute(5)
    assert isinstance(ref, ray.ObjectRef)
    assert ray.get(ref) == 16
    # No InputNode at all, and .options(...).bind keeps the options.
    assert ray.get(fns.add.options(name="dag-add", num_cpus=1).bind(1, 2).execute()) == 3


def test_execute_twice_with_different_inputs(ray, fns):
    with InputNode() as inp:
        node = fns.add.bind(inp, fns.add.bind(inp, 100))
    assert ray.get([node.execute(1), node.execute(2)]) == [102, 104]


def test_execute_deprecation_warning(ray, fns):
    # Ray 2.60: ray.util.annotations.RayDeprecationWarning (a DeprecationWarning),
    # stacklevel=2, i.e. it points at the caller of execute().
    assert issubclass(annotations.RayDeprecationWarning, DeprecationWarning)
    with pytest.warns(annotations.RayDeprecationWarning, match=re.escape(EXECUTE_DEPRECATED)) as rec:
        ref = fns.add.bind(1, 2).execute()
    assert ray.get(ref) == 3
    assert [w.filename for w in rec if w.category is annotations.RayDeprecationWarning] == [__file__]
    # .bind() itself does not warn.
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        fns.add.bind(1, 2)
        with InputNode() as inp:
            MultiOutputNode([fns.add.bind(inp, 1)])
    assert not [w for w in rec if issubclass(w.category, DeprecationWarning)]


def test_input_attribute_access(ray, fns):
    with InputNode() as inp:
        by_pos_and_kw = fns.add.bind(inp[0], inp.x)
        by_key = fns.add.bind(inp["a"], inp["b"])
        by_attr = fns.add.bind(inp.c, inp.d)
        by_index = fns.add.bind(inp[0], inp[1])
        whole = fns.show.bind(inp)
    assert isinstance(inp.x, dag.InputAttributeNode) and inp.x is inp.x and inp[0] is inp[0]
    # Ray 2.60 caches attribute nodes by key alone: inp.a after inp["a"] is the same
    # (item-access) node, so one key is either an attribute or an item in one DAG.
    assert inp.a is inp["a"]

    class Obj:
        c, d = 3, 4

    # Several arguments: [i] is the i-th positional one, .x / ["x"] a keyword.
    assert ray.get(by_pos_and_kw.execute(1, x=2)) == 3
    # One argument: [k] / .k index it or read its attribute.
    assert ray.get(by_key.execute({"a": 1, "b": 2})) == 3
    assert ray.get(by_attr.execute(Obj())) == 7
    assert ray.get(by_index.execute([1, 2])) == 3
    assert ray.get(by_index.execute(3, 4)) == 7
    # The InputNode itself is the single argument, or a DAGInputData holding them all.
    assert ray.get(whole.execute([1, 2])) == "[1, 2]"
    assert "DAGInputData object" in ray.get(whole.execute(1, x=2))
    # An InputNode (or attribute) as the root returns the value itself, not a ref.
    assert inp.execute(5) == 5 and inp[1].execute(5, 6) == 6


def test_multi_output_node(ray, fns):
    with InputNode() as inp:
        out = MultiOutputNode([fns.add.bind(inp, 1), fns.add.bind(inp, 2)])
    refs = out.execute(1)
    assert isinstance(refs, list) and all(isinstance(r, ray.ObjectRef) for r in refs)
    assert ray.get(refs) == [2, 3]
    assert ray.get(MultiOutputNode((fns.add.bind(1, 1),)).execute()) == [2]
    with pytest.raises(ValueError, match=r"Invalid input type for `args`"):
        MultiOutputNode(fns.add.bind(1, 1))


def test_num_returns_function_node(ray, fns):
    node = fns.two.bind(1)
    refs = node.execute()
    assert isinstance(refs, list) and ray.get(refs) == [1, 2]
    # Passed on, the node's list of refs arrives as a list of ObjectRefs.
    assert ray.get(fns.kinds.bind(node).execute()) == ["ObjectRef", "ObjectRef"]


def test_nested_nodes_in_containers(ray, fns):
    # Ray 2.60 finds nodes anywhere in the arguments (it pickles them): a nested task
    # node becomes its ObjectRef, which the task receives unresolved (only top-level
    # refs are resolved); a nested InputNode becomes the input value itself.
    with InputNode() as inp:
        a = fns.add.bind(inp, 1)
        as_list = fns.kinds.bind([a, inp, (a,)])
        as_dict = fns.kinds.bind({"node": a, "input": inp, "plain": 1})
        top = fns.add.bind(a, inp)
    assert ray.get(as_list.execute(1)) == ["ObjectRef", "int", "tuple"]
    assert ray.get(as_dict.execute(1)) == {"node": "ObjectRef", "input": "int", "plain": "int"}
    assert ray.get(top.execute(1)) == 3

    class Box:
        def __init__(self, v):
            self.v = v

    @ray.remote
    def unbox(box):
        return type(box.v).__name__, ray.get(box.v)

    # Inside an object of the user's own class too, and in sets and dict keys.
    assert ray.get(unbox.bind(Box(fns.add.bind(1, 1))).execute()) == ("ObjectRef", 2)
    assert ray.get(fns.kinds.bind({fns.add.bind(1, 2)}).execute()) == ["ObjectRef"]


def test_object_ref_arguments(ray, fns):
    assert ray.get(fns.add.bind(ray.put(1), 2).execute()) == 3


def test_shared_node_runs_once_per_execute(ray, fns, Counter):
    counter = Counter.remote()
    shared = counter.inc.bind(1)
    node = MultiOutputNode([fns.add.bind(shared, 0), fns.add.bind(shared, shared), shared])
    assert ray.get(node.execute()) == [1, 2, 1]
    assert ray.get(counter.get.remote()) == 1
    assert ray.get(node.execute()) == [2, 4, 2]  # once more per execute
    assert ray.get(counter.get.remote()) == 2


def test_class_node_starts_an_actor_per_execute(ray, Counter):
    with InputNode() as inp:
        node = Counter.bind(100).inc.bind(inp)
    assert isinstance(node, dag.ClassMethodNode)
    assert ray.get([node.execute(1), node.execute(1)]) == [101, 101]
    # A ClassNode as the root returns the actor handle.
    handle = Counter.bind(7).execute()
    assert isinstance(handle, ray.actor.ActorHandle)
    assert ray.get(handle.get.remote()) == 7


def test_method_chain_runs_earlier_calls_in_bind_order(ray, fns, Counter):
    # Ray 2.60: each method node bound on a ClassNode depends on the one bound before
    # it (prev_class_method_call), so executing the last runs them all, in order.
    counter = Counter.bind(0)
    counter.inc.bind(1)
    second = counter.inc.bind(2)
    assert isinstance(counter, dag.ClassNode)
    assert ray.get(second.execute()) == 3
    assert ray.get(counter.get.bind().execute()) == 3
    # Method calls feeding each other and a task, on one actor.
    with InputNode() as inp:
        c = Counter.bind(10)
        total = fns.add.bind(c.inc.bind(inp), c.inc.bind(inp))
    assert ray.get(total.execute(1)) == 11 + 12


def test_live_actor_handle_bind(ray, Counter):
    counter = Counter.remote(0)
    with InputNode() as inp:
        node = counter.inc.bind(inp)
    assert isinstance(node, dag.ClassMethodNode)
    # The handle's actor keeps its state across executes.
    assert ray.get(node.execute(1)) == 1
    assert ray.get(node.execute(5)) == 6
    assert ray.get(counter.get.remote()) == 6


def test_num_returns_method_nodes(ray, fns, Counter):
    counter = Counter.remote()
    # Ray 2.60: handle.method.bind of a num_returns=2 method gives a tuple of 2 nodes...
    first, second = counter.pair.bind(3)
    assert isinstance(first, dag.ClassMethodNode)
    assert ray.get(MultiOutputNode([first, second]).execute()) == [3, 30]
    assert ray.get(fns.add.bind(first, second).execute()) == 33
    # ...options(num_returns=1) one node whose value is the tuple...
    assert ray.get(counter.pair.options(num_returns=1).bind(3).execute()) == (3, 30)
    # ...and on a ClassNode one node that executes to a list of refs.
    refs = Counter.bind().pair.bind(4).execute()
    assert ray.get(refs) == [4, 40]
    assert ray.get(Counter.bind().pair.options(num_returns=1).bind(2).execute()) == (2, 20)


def test_actor_options_bind(ray, Counter):
    name = f"dag-counter-{uuid.uuid4().hex[:8]}"
    node = Counter.options(name=name).bind(5).inc.bind()
    assert ray.get(node.execute()) == 6
    assert ray.get(ray.get_actor(name).get.remote()) == 6


def test_bind_errors(ray, fns, Counter):
    handle = Counter.remote()
    # handle.method.bind checks the signature at bind time; f.bind and node.method.bind
    # do not (the error comes from execute(), when the task is submitted).
    with pytest.raises(TypeError, match=re.escape(
        "too many positional arguments. The function `inc` has a signature `(k=1)`, but the "
        "given arguments to `bind` doesn't match. args: (1, 2, 3). kwargs: {}."
    )):
        handle.inc.bind(1, 2, 3)
    bad = fns.add.bind(1)
    with pytest.raises(TypeError, match="missing a required argument: 'b'"):
        bad.execute()
    node = Counter.bind()
    with pytest.raises(AttributeError, match="type object 'Counter' has no attribute 'nope'"):
        node.nope
    with pytest.raises(AttributeError, match=r"\.bind\(\) cannot be used again on"):
        node.bind
    with pytest.raises(AttributeError, match=r"\.bind\(\) cannot be used again on"):
        fns.add.bind(1, 2).bind
    with pytest.raises(AttributeError, match=r"\.remote\(\) cannot be used on .*use \.execute\(\)"):
        fns.add.bind(1, 2).remote
    with pytest.raises(AttributeError, match=r"\.remote\(\) cannot be used on ClassMethodNodes"):
        node.inc.remote
    with InputNode() as inp:
        with pytest.raises(ValueError, match="cannot be used as args, kwargs, or other_args_to_resolve"):
            Counter.bind(inp)


def test_max_calls_function_cannot_execute(ray):
    # Ray 2.60 quirk: FunctionNode runs f.options(**all_options), and .options()
    # refuses max_calls.
    @ray.remote(max_calls=1)
    def once(x):
        return x

    with pytest.raises(ValueError, match="Setting 'max_calls' is not supported in '.options\\(\\)'."):
        once.bind(1).execute()


def test_input_node_rules(ray, fns):
    with pytest.raises(ValueError, match="InputNode should not take any args or kwargs."):
        InputNode(1)
    outside = InputNode()
    with pytest.raises(AssertionError, match="InputNode is a singleton instance"):
        fns.add.bind(outside, 1).execute(1)
    with InputNode() as first:
        pass
    with InputNode() as second:
        node = fns.add.bind(first, second)
    with pytest.raises(AssertionError, match="Each DAG should only have one unique InputNode."):
        node.execute(1)


def test_errors_surface_as_the_users_exception(ray, fns, Counter):
    with InputNode() as inp:
        node = fns.add.bind(fns.boom.bind(inp), 1)
    ref = node.execute(7)
    with pytest.raises(ValueError, match="boom 7") as info:
        ray.get(ref)
    assert isinstance(info.value, ray.exceptions.RayTaskError)
    with pytest.raises(KeyError) as info:
        ray.get(Counter.bind().fail.bind("k").execute())
    assert isinstance(info.value, ray.exceptions.RayTaskError)
