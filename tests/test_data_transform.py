"""ray.data transformations: row and batch maps, columns, all-to-all ops, splits, actor pools
(pinned on Ray 2.60; Ray does not keep row order across blocks by default, so tests sort)."""

from __future__ import annotations

import numpy as np
import pytest

pd = pytest.importorskip("pandas")
pa = pytest.importorskip("pyarrow")


def _ids(rows, key="id"):
    return sorted(r[key] for r in rows)


def test_map_flat_map_filter(ray):
    ds = ray.data.range(5)
    assert sorted(ds.map(lambda r: {"id": r["id"], "sq": r["id"] ** 2}).take_all(), key=lambda r: r["id"]) == [
        {"id": i, "sq": i * i} for i in range(5)
    ]
    assert _ids(ray.data.range(2).flat_map(lambda r: [r, r]).take_all()) == [0, 0, 1, 1]
    assert _ids(ds.filter(lambda r: r["id"] % 2 == 0).take_all()) == [0, 2, 4]


def test_map_batches_formats(ray):
    """Ray: the default batch format is a dict of numpy arrays; pandas and pyarrow too."""
    ds = ray.data.range(6, override_num_blocks=2)

    def double(batch):
        assert isinstance(batch["id"], np.ndarray)
        return {"id": batch["id"] * 2}

    assert _ids(ds.map_batches(double).take_all()) == [0, 2, 4, 6, 8, 10]

    def pandas_fn(df):
        assert isinstance(df, pd.DataFrame)
        return df.assign(x=df["id"] + 1)

    assert _ids(ds.map_batches(pandas_fn, batch_format="pandas").take_all(), "x") == [1, 2, 3, 4, 5, 6]

    def arrow_fn(t):
        assert isinstance(t, pa.Table)
        return t

    assert ds.map_batches(arrow_fn, batch_format="pyarrow").count() == 6


def test_map_batches_batch_size_within_a_block(ray):
    """Ray: batch_size=None is the whole block; batch_size=3 on 5-row blocks gives 3, 2, 3, 2."""
    ds = ray.data.range(10, override_num_blocks=2)
    sizes = lambda b: {"n": np.array([len(b["id"])])}  # noqa: E731
    assert sorted(r["n"] for r in ds.map_batches(sizes, batch_size=None).take_all()) == [5, 5]
    assert sorted(r["n"] for r in ds.map_batches(sizes, batch_size=3).take_all()) == [2, 2, 3, 3]


def test_map_batches_bundles_small_blocks(ray):
    """Ray: with batch_size=4 over ten 1-row blocks the function sees batches of 4, 4 and 2."""
    sizes = lambda b: {"n": np.array([len(b["id"])])}  # noqa: E731
    assert sorted(r["n"] for r in ray.data.range(10, override_num_blocks=10).map_batches(sizes, batch_size=4).take_all()) == [2, 4, 4]
    items = ray.data.from_items([{"id": i} for i in range(10)], override_num_blocks=10)
    assert sorted(r["n"] for r in items.map_batches(sizes, batch_size=4).take_all()) == [2, 4, 4]


def test_map_batches_fn_args(ray):
    def add(batch, a, b=0):
        return {"id": batch["id"] + a + b}

    ds = ray.data.range(3).map_batches(add, fn_args=(10,), fn_kwargs={"b": 100})
    assert _ids(ds.take_all()) == [110, 111, 112]


def test_map_batches_bad_output(ray):
    """Ray: returning a list raises a ValueError (as RayTaskError(ValueError)) saying how to fix it."""
    with pytest.raises(ValueError, match="Returning a list of objects from `map_batches` is not allowed"):
        ray.data.range(3).map_batches(lambda b: [1]).take_all()


def test_map_bad_output(ray):
    """Ray: map returning a non-dict raises ValueError: "Standalone Python objects are not allowed"."""
    with pytest.raises(ValueError, match="Standalone Python objects are not allowed in Ray >= 2.5"):
        ray.data.range(3).map(lambda r: 1).take_all()


def test_user_error_is_a_user_code_exception(ray):
    """Ray: an exception in a UDF surfaces as RayTaskError(UserCodeException) "UDF failed to
    process a data block.", caused by the user's exception (not an instance of it)."""

    def boom(row):
        raise KeyError("boom")

    for ds in (ray.data.range(3).map(boom), ray.data.range(3).map_batches(boom), ray.data.range(3).filter(boom)):
        with pytest.raises(ray.exceptions.UserCodeException, match="UDF failed to process a data block.") as info:
            ds.take_all()
        assert isinstance(info.value, ray.exceptions.RayTaskError)
        assert not isinstance(info.value, KeyError)
        assert "boom" in str(info.value)


def test_materialize_runs_the_plan_and_raises_its_error(ray):
    """Ray 2.60 (checked): ``materialize()`` executes the whole plan, so a UDF's error is
    raised by ``materialize`` itself (RayTaskError(UserCodeException)), not later."""

    def fails_on_three(row):
        if row["id"] == 3:
            raise KeyError("boom")
        return row

    with pytest.raises(ray.exceptions.UserCodeException, match="UDF failed to process a data block."):
        ray.data.range(8, override_num_blocks=4).map(fails_on_three).materialize()
    assert ray.data.range(8, override_num_blocks=4).map(lambda r: r).materialize().count() == 8


def test_select_missing_column(ray):
    """Ray: selecting a missing column fails when run, as a UserCodeException."""
    with pytest.raises(ray.exceptions.UserCodeException):
        ray.data.range(3).select_columns(["x"]).take_all()


def test_columns(ray):
    """Ray: select/drop/rename columns; add_column's fn gets a pandas batch by default."""
    ds = ray.data.from_items([{"a": 1, "b": 2, "c": 3}])
    assert ds.select_columns(["a", "c"]).take_all() == [{"a": 1, "c": 3}]
    assert ds.drop_columns(["b"]).take_all() == [{"a": 1, "c": 3}]
    assert ds.rename_columns({"a": "x"}).take_all() == [{"x": 1, "b": 2, "c": 3}]
    assert ray.data.range(3).add_column("d", lambda df: df["id"] * 2).take_all() == [
        {"id": 0, "d": 0}, {"id": 1, "d": 2}, {"id": 2, "d": 4}
    ]


def test_drop_missing_column(ray):
    """Ray: KeyError naming the missing columns and the available ones, when called."""
    with pytest.raises(KeyError, match=r"drop_columns: column\(s\) not found in dataset schema: \['x'\]. Available columns: \['id'\]"):
        ray.data.range(3).drop_columns(["x"]).take_all()


def test_limit_union_zip(ray):
    assert ray.data.range(10).limit(3).count() == 3
    assert _ids(ray.data.range(2).union(ray.data.range(2)).take_all()) == [0, 0, 1, 1]
    zipped = ray.data.range(3).zip(ray.data.range(3).map(lambda r: {"id": r["id"] * 10}))
    assert sorted(zipped.take_all(), key=lambda r: r["id"]) == [
        {"id": 0, "id_1": 0}, {"id": 1, "id_1": 10}, {"id": 2, "id_1": 20}
    ], "Ray names a duplicate column id_1"


def test_sort(ray):
    ds = ray.data.from_items([{"v": v} for v in [5, 3, 9, 1, 7, 2]]).repartition(3)
    assert [r["v"] for r in ds.sort("v").take_all()] == [1, 2, 3, 5, 7, 9]
    assert [r["v"] for r in ds.sort("v", descending=True).take_all()] == [9, 7, 5, 3, 2, 1]
    assert [r["id"] for r in ray.data.range(20, override_num_blocks=4).sort("id", descending=True).take(3)] == [19, 18, 17]


def test_random_shuffle_and_repartition(ray):
    ds = ray.data.range(40, override_num_blocks=4)
    assert _ids(ds.random_shuffle(seed=1).take_all()) == list(range(40))
    assert ds.repartition(3).materialize().num_blocks() == 3
    assert _ids(ds.repartition(3).take_all()) == list(range(40))


def test_groupby_aggregations(ray):
    """Ray names the results "count()", "sum(v)", "mean(v)", "std(v)", "min(v)", "max(v)"."""
    ds = ray.data.from_items([{"k": i % 2, "v": i} for i in range(6)])
    by_k = lambda rows: sorted(rows, key=lambda r: r["k"])  # noqa: E731
    assert by_k(ds.groupby("k").count().take_all()) == [{"k": 0, "count()": 3}, {"k": 1, "count()": 3}]
    assert by_k(ds.groupby("k").sum("v").take_all()) == [{"k": 0, "sum(v)": 6}, {"k": 1, "sum(v)": 9}]
    assert by_k(ds.groupby("k").mean("v").take_all()) == [{"k": 0, "mean(v)": 2.0}, {"k": 1, "mean(v)": 3.0}]
    assert by_k(ds.groupby("k").std("v").take_all()) == [{"k": 0, "std(v)": 2.0}, {"k": 1, "std(v)": 2.0}]
    assert by_k(ds.groupby("k").min("v").take_all()) == [{"k": 0, "min(v)": 0}, {"k": 1, "min(v)": 1}]
    assert by_k(ds.groupby("k").max(["v"]).take_all()) == [{"k": 0, "max(v)": 4}, {"k": 1, "max(v)": 5}]


def test_groupby_map_groups(ray):
    ds = ray.data.from_items([{"k": i % 3, "v": i} for i in range(9)])
    out = ds.groupby("k").map_groups(lambda b: {"k": b["k"][:1], "total": np.array([b["v"].sum()])})
    assert sorted(out.take_all(), key=lambda r: r["k"]) == [
        {"k": 0, "total": 9}, {"k": 1, "total": 12}, {"k": 2, "total": 15}
    ]


def test_unique(ray):
    assert sorted(ray.data.from_items([{"k": i % 3} for i in range(6)]).unique("k")) == [0, 1, 2]
    assert sorted(ray.data.from_items(["a", "b", "a"]).unique("item")) == ["a", "b"]


def test_split_and_train_test_split(ray):
    """Ray: split(3) of 5 blocks gives 4, 4, 2 rows of 10; train_test_split(0.3) gives 7 and 3."""
    ds = ray.data.range(10, override_num_blocks=5)
    parts = ds.split(3)
    assert [p.count() for p in parts] == [4, 4, 2]
    assert all(type(p).__name__ == "MaterializedDataset" for p in parts)
    train, test = ds.train_test_split(0.3)
    assert (train.count(), test.count()) == (7, 3)
    # Ray 2.60 does not keep block order here (preserve_order=False): which 7 rows varies.
    assert sorted(_ids(train.take_all()) + _ids(test.take_all())) == list(range(10))
    train, test = ds.train_test_split(test_size=3, shuffle=True, seed=1)
    assert (train.count(), test.count()) == (7, 3)
    assert [p.count() for p in ds.split(4, equal=True)] == [2, 2, 2, 2]


def test_streaming_split(ray):
    """Ray: each consumer iterates its share; Ray needs them consumed concurrently (threads)."""
    import threading

    its = ray.data.range(8, override_num_blocks=4).streaming_split(2, equal=True)
    seen = [[], []]

    def consume(i):
        for b in its[i].iter_batches(batch_size=None):
            seen[i].extend(b["id"].tolist())

    threads = [threading.Thread(target=consume, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(seen[0] + seen[1]) == list(range(8))
    assert len(seen[0]) == len(seen[1]) == 4


class AddConstant:
    def __init__(self, constant):
        self.constant = constant

    def __call__(self, batch):
        return {"id": batch["id"] + self.constant}


def test_callable_class_on_an_actor_pool(ray):
    """Ray: a callable class runs on a pool of actors (concurrency=n or ActorPoolStrategy),
    built with fn_constructor_args/kwargs; maps after it fuse into the same stage."""
    ds = ray.data.range(8, override_num_blocks=4)
    out = ds.map_batches(AddConstant, fn_constructor_args=(100,), concurrency=2).map(lambda r: {"id": r["id"] + 1})
    assert _ids(out.take_all()) == [101 + i for i in range(8)]
    out = ds.map_batches(AddConstant, fn_constructor_kwargs={"constant": 5}, compute=ray.data.ActorPoolStrategy(size=1))
    assert _ids(out.take_all()) == [5 + i for i in range(8)]


def test_callable_class_is_constructed_once_per_actor(ray):
    """Each actor builds the class once and keeps it across the blocks it processes."""

    class Counter:
        def __init__(self):
            self.calls = 0

        def __call__(self, batch):
            self.calls += 1
            return {"calls": np.full(len(batch["id"]), self.calls)}

    out = ray.data.range(6, override_num_blocks=6).map_batches(Counter, concurrency=1, batch_size=None).take_all()
    assert sorted(r["calls"] for r in out) == [1, 2, 3, 4, 5, 6]


class _LogBlocks:
    """Appends ``<pid> <first id>`` per batch to a file; block 0 is slow."""

    def __init__(self, path, slow=0.0):
        self.path, self.slow = path, slow

    def __call__(self, batch):
        import os
        import time

        if self.slow and batch["id"][0] == 0:
            time.sleep(self.slow)
        with open(self.path, "a") as f:
            f.write(f"{os.getpid()} {batch['id'][0]}\n")
        return batch


def _logged(path):
    return [line.split() for line in path.read_text().splitlines()] if path.exists() else []


def test_actor_pool_streams_take_reads_few_blocks(ray, tmp_path):
    """Ray streams blocks through the pool: take(1) of 60 blocks runs a handful of them
    (Ray 2.60: 3 to 8 here), not the whole dataset."""
    log = tmp_path / "calls"
    ds = ray.data.range(60, override_num_blocks=60).map_batches(
        _LogBlocks, fn_constructor_args=(str(log),), concurrency=1, batch_size=None)
    assert len(ds.take(1)) == 1
    assert 1 <= len(_logged(log)) <= 20, _logged(log)


def test_actor_pool_hands_blocks_to_free_actors(ray, tmp_path):
    """A block goes to an actor with room, not round-robin: while one actor is stuck on a
    slow block, the other takes nearly all the rest (Ray 2.60: 14 of 16 here, at most 2
    calls in flight per actor; the read is fused into the actor's call, so both actors
    start at once on 2 CPUs)."""
    import time

    # The pool of an earlier test may still hold a CPU on Ray for a while after its
    # dataset is done: wait until every CPU has been free for 2 s.
    deadline, free_since = time.monotonic() + 60, None
    while time.monotonic() < deadline:
        if ray.available_resources().get("CPU", 0) < ray.cluster_resources()["CPU"]:
            free_since = None
        elif free_since is None:
            free_since = time.monotonic()
        elif time.monotonic() - free_since > 2:
            break
        time.sleep(0.2)
    log = tmp_path / "calls"
    ds = ray.data.range(16, override_num_blocks=16).map_batches(
        _LogBlocks, fn_constructor_args=(str(log), 4.0), concurrency=2, batch_size=None)
    assert _ids(ds.materialize().take_all()) == list(range(16))
    calls = _logged(log)
    if ray.__name__ == "ray" and len({pid for pid, _ in calls}) < 2:
        # Seen in about 1 of 3 runs: Ray 2.60 ran every block on one actor, its second
        # one not up before the work was done (raycompat starts both at once).
        pytest.xfail("Ray 2.60 did not start the pool's second actor in time")
    slow_pid = next(pid for pid, first in calls if first == "0")
    others = [first for pid, first in calls if pid != slow_pid]
    assert len(others) >= 12, calls


def test_callable_class_refuses_task_pool(ray):
    """Ray 2.60: a callable class with compute=TaskPoolStrategy is a ValueError."""
    with pytest.raises(ValueError, match="can't schedule callable classes with the task pool"):
        ray.data.range(3).map_batches(AddConstant, fn_constructor_args=(1,),
                                      compute=ray.data.TaskPoolStrategy()).take_all()


def test_function_with_compute_actor_pool_is_refused(ray):
    """Ray refuses an ActorPoolStrategy for a plain function (a ValueError)."""
    with pytest.raises(ValueError):
        ray.data.range(3).map_batches(lambda b: b, compute=ray.data.ActorPoolStrategy(size=1)).take_all()


def test_groupby_several_keys_and_aggregate_fns(ray):
    """Ray: groupby(list of keys).aggregate(Count(), Sum("v")) keeps every key column."""
    from importlib import import_module

    agg = import_module(ray.__name__ + ".data.aggregate")
    ds = ray.data.from_items([{"a": i % 2, "b": i % 3, "v": i} for i in range(12)])
    rows = sorted(ds.groupby(["a", "b"]).aggregate(agg.Count(), agg.Sum("v")).take_all(), key=lambda r: (r["a"], r["b"]))
    assert len(rows) == 6
    assert rows[0] == {"a": 0, "b": 0, "count()": 2, "sum(v)": 6}
    assert sum(r["count()"] for r in rows) == 12


def test_sort_by_string_and_several_keys(ray):
    ds = ray.data.from_items([{"s": s, "n": n} for s, n in [("b", 2), ("a", 9), ("b", 1), ("c", 0), ("a", 3)]])
    assert [(r["s"], r["n"]) for r in ds.sort(["s", "n"]).take_all()] == [("a", 3), ("a", 9), ("b", 1), ("b", 2), ("c", 0)]


def test_ops_after_limit_and_union(ray):
    ds = ray.data.range(100, override_num_blocks=10).limit(15).map(lambda r: {"id": r["id"] * 2})
    assert _ids(ds.take_all()) == [2 * i for i in range(15)]
    both = ray.data.range(3).union(ray.data.from_items([{"id": 7}]))
    assert _ids(both.take_all()) == [0, 1, 2, 7]
    assert both.count() == 4


def test_iter_batches_default_batch_size(ray):
    """Ray: iter_batches' batch_size defaults to 256."""
    batches = list(ray.data.range(600).iter_batches())
    assert [len(b["id"]) for b in batches] == [256, 256, 88]


def test_with_column_and_filter_expressions(ray):
    """Ray 2.60: with_column(name, expr) and filter(expr=...) take ray.data.expressions
    (col, lit, arithmetic, comparisons, &, |) or a string predicate."""
    from importlib import import_module

    E = import_module(ray.__name__ + ".data.expressions")
    ds = ray.data.range(6)
    rows = sorted(ds.with_column("d", E.col("id") * 2 + E.lit(1)).take_all(), key=lambda r: r["id"])
    assert rows[:3] == [{"id": 0, "d": 1}, {"id": 1, "d": 3}, {"id": 2, "d": 5}]
    assert _ids(ds.filter(expr=(E.col("id") > 1) & (E.col("id") < 4)).take_all()) == [2, 3]
    assert _ids(ds.filter(expr="id >= 4").take_all()) == [4, 5]
    assert _ids(ds.filter(expr=E.col("id").is_in([0, 5])).take_all()) == [0, 5]
    # Ray maps "/" to Arrow's divide: integer division on int64 columns.
    assert sorted(r["h"] for r in ds.with_column("h", E.col("id") / 2).take_all()) == [0, 0, 1, 1, 2, 2]


def test_function_concurrency_bounds_tasks_in_flight(ray, tmp_path):
    """concurrency=1 on a function: its tasks never overlap (each marks itself running in a
    directory and records how many it saw)."""
    import os
    import time

    def step(batch):
        me = os.path.join(str(tmp_path), f"run-{batch['id'][0]}")
        open(me, "w").close()
        seen = len([f for f in os.listdir(str(tmp_path)) if f.startswith("run-")])
        time.sleep(0.2)  # widen the window in which a second task could overlap
        os.remove(me)
        return {"seen": np.array([seen])}

    out = ray.data.range(4, override_num_blocks=4).map_batches(step, concurrency=1).take_all()
    assert [r["seen"] for r in out] == [1, 1, 1, 1]


def test_callable_class_in_map_and_filter(ray):
    """Ray runs callable classes given to map/filter/flat_map on actors too."""

    class Offset:
        def __init__(self, k):
            self.k = k

        def __call__(self, row):
            return {"id": row["id"] + self.k}

    class Even:
        def __call__(self, row):
            return row["id"] % 2 == 0

    ds = ray.data.range(4)
    assert _ids(ds.map(Offset, fn_constructor_args=(10,), concurrency=1).take_all()) == [10, 11, 12, 13]
    assert _ids(ds.filter(Even, concurrency=1).take_all()) == [0, 2]


def test_blocks_left_empty_add_no_columns(ray):
    """Ray 2.60 (checked): a block a filter empties adds neither rows nor its old columns
    to what comes after (here a map_batches that renames the column), and aggregations and
    sorts over such blocks work."""
    ds = ray.data.range(10, override_num_blocks=2).filter(lambda r: r["id"] < 5)
    renamed = ds.map_batches(lambda b: {"x": b["id"]})
    df = renamed.to_pandas()
    assert list(df.columns) == ["x"] and sorted(df["x"]) == [0, 1, 2, 3, 4]
    mapped = ds.map(lambda r: {"x": r["id"]})
    assert mapped.sum("x") == 10
    assert [r["x"] for r in mapped.sort("x", descending=True).take_all()] == [4, 3, 2, 1, 0]


def test_zip_of_different_row_counts_raises(ray):
    """Ray 2.60: ``ValueError: Cannot zip datasets of different number of rows: 3, 4``."""
    with pytest.raises(ValueError, match="Cannot zip datasets of different number of rows: 3, 4"):
        ray.data.range(3).zip(ray.data.range(4)).take_all()


def test_to_pandas_runs_the_plan_once(ray, tmp_path):
    """``to_pandas`` of a plan whose row count is not known up front (a filter) runs each
    block's UDF once (Ray 2.60, checked), not once to count and again to collect."""
    calls = tmp_path / "calls"
    calls.mkdir()

    def keep_even(row):
        with open(calls / f"{row['id']}", "a") as f:
            f.write("x")
        return row["id"] % 2 == 0

    df = ray.data.range(6, override_num_blocks=3).filter(keep_even).to_pandas()
    assert sorted(df["id"]) == [0, 2, 4]
    assert sorted(p.read_text() for p in calls.iterdir()) == ["x"] * 6


@pytest.mark.parametrize("descending", [False, True])
def test_sort_puts_nulls_and_nans_last(ray, descending):
    """Ray 2.60 sorts NaN then null after every value, in both directions, across blocks."""
    floats = [3.0, None, 1.0, float("nan"), 7.0, 2.0, None, 5.0, float("nan"), 0.5, 9.0, 4.0]
    out = [r["x"] for r in ray.data.from_items([{"x": v} for v in floats], override_num_blocks=4)
           .sort("x", descending=descending).take_all()]
    values = sorted([0.5, 1.0, 2.0, 3.0, 4.0, 5.0, 7.0, 9.0], reverse=descending)
    assert out[:8] == values
    assert [v != v for v in out[8:10]] == [True, True] and out[10:] == [None, None]
    strings = ["b", None, "a", "d", None, "c", "e", "f"]
    out = [r["x"] for r in ray.data.from_items([{"x": v} for v in strings], override_num_blocks=3)
           .sort("x", descending=descending).take_all()]
    assert out == sorted("abcdef", reverse=descending) + [None, None]


def test_random_sample_seed_differs_per_block(ray):
    """Ray seeds each task with (seed, task index): the same seed repeats the sample, and
    blocks of the same length are not sampled with the same mask."""
    ds = ray.data.range(1000, override_num_blocks=10)
    first = _ids(ds.random_sample(0.5, seed=3).take_all())
    assert first == _ids(ds.random_sample(0.5, seed=3).take_all())
    assert 350 < len(first) < 650
    masks = [[i - 100 * k for i in first if 100 * k <= i < 100 * (k + 1)] for k in range(10)]
    assert len({tuple(m) for m in masks}) == 10


def test_repartition_modes_and_errors(ray):
    """Ray 2.60: target_num_rows_per_block caps block sizes; keys hash-partition into
    num_blocks; the argument errors are Ray's ValueErrors."""
    ds = ray.data.range(10, override_num_blocks=3).repartition(target_num_rows_per_block=4)
    sizes = [len(b["id"]) for b in ds.iter_batches(batch_size=None)]
    assert sum(sizes) == 10 and max(sizes) <= 4, sizes
    assert _ids(ds.take_all()) == list(range(10))
    keyed = ray.data.range(10, override_num_blocks=3).repartition(3, keys=["id"], sort=True).materialize()
    assert keyed.num_blocks() == 3 and _ids(keyed.take_all()) == list(range(10))
    with pytest.raises(ValueError, match="Either `num_blocks` or `target_num_rows_per_block` must be set"):
        ray.data.range(3).repartition()
    with pytest.raises(ValueError, match="but not both"):
        ray.data.range(3).repartition(2, target_num_rows_per_block=3)
    with pytest.raises(ValueError, match="`shuffle` must be False"):
        ray.data.range(3).repartition(target_num_rows_per_block=3, shuffle=True)


def test_train_test_split_stratified_and_proportions(ray):
    """Ray 2.60's stratified split takes each group's last int(n * test_size) rows as test
    rows (checked: these exact rows); split_proportionately's sizes; argument errors."""
    items = [{"label": i % 3, "v": i} for i in range(30)]
    train, test = ray.data.from_items(items).train_test_split(0.2, stratify="label")
    assert sorted((r["label"], r["v"]) for r in test.take_all()) == [(0, 24), (0, 27), (1, 25), (1, 28), (2, 26), (2, 29)]
    assert train.count() == 24 and train.columns() == ["label", "v"]
    train, test = ray.data.from_items(items).train_test_split(4, stratify="label")
    assert sorted(r["v"] for r in test.take_all()) == [27, 28, 29] and train.count() == 27
    assert [d.count() for d in ray.data.range(10).split_proportionately([0.5, 0.2])] == [5, 2, 3]
    with pytest.raises(ValueError, match="Cannot specify both 'shuffle=True' and 'stratify'"):
        ray.data.range(3).train_test_split(0.5, shuffle=True, stratify="id")
    with pytest.raises(TypeError, match="`test_size` must be int or float"):
        ray.data.range(3).train_test_split("x")


def test_local_shuffle_buffer_mixes_blocks(ray):
    """Ray's local shuffle buffer draws each batch from every row waiting (at least the
    buffer size), so a batch mixes rows of several blocks; every row comes once."""
    ds = ray.data.range(200, override_num_blocks=20)
    batches = list(ds.iter_batches(batch_size=10, local_shuffle_buffer_size=50, local_shuffle_seed=0))
    assert sorted(np.concatenate([b["id"] for b in batches]).tolist()) == list(range(200))
    assert all(len(b["id"]) == 10 for b in batches)
    spans = [len({int(i) // 10 for i in b["id"]}) for b in batches]
    assert max(spans) > 2, spans  # rows of more than two blocks of 10 in one batch


def test_streaming_split_runs_again_each_epoch_and_travels_to_tasks(ray):
    """Ray: every epoch of a streaming split runs the dataset again (a random_shuffle
    reshuffles), once all splits have started it; the iterators can be passed to tasks
    (how Ray Train hands shards to workers)."""

    @ray.remote(num_cpus=0)  # Ray 2.60 hangs when the consumers hold both CPUs (checked)
    def consume(it, epochs):
        return [[int(i) for b in it.iter_batches(batch_size=None) for i in b["id"]] for _ in range(epochs)]

    its = ray.data.range(200, override_num_blocks=10).random_shuffle().streaming_split(2, equal=True)
    a, b = ray.get([consume.remote(its[0], 2), consume.remote(its[1], 2)], timeout=120)
    for epoch in range(2):
        assert len(a[epoch]) == len(b[epoch]) == 100
        assert sorted(a[epoch] + b[epoch]) == list(range(200))
    assert a[0] != a[1]  # shuffled again


class _GroupTotal:
    def __init__(self, offset):
        self.offset = offset

    def __call__(self, batch):
        return {"k": batch["k"][:1], "total": np.array([batch["v"].sum() + self.offset])}


def test_map_groups_callable_class_and_options(ray):
    """Ray runs map_groups through map_batches: a callable class on an actor pool with its
    constructor arguments, a function with concurrency/num_cpus. (Ray 2.60 hangs with
    concurrency=2 for the class on 2 CPUs: its shuffle actors hold the CPUs.)"""
    ds = ray.data.from_items([{"k": i % 3, "v": i} for i in range(12)])
    out = ds.groupby("k").map_groups(_GroupTotal, fn_constructor_args=(1000,), concurrency=1).take_all()
    assert sorted((r["k"], r["total"]) for r in out) == [(0, 1018), (1, 1022), (2, 1026)]
    out = ds.groupby("k").map_groups(lambda b: {"k": b["k"][:1], "total": np.array([b["v"].sum()])},
                                     concurrency=1, num_cpus=0.5).take_all()
    assert sorted((r["k"], r["total"]) for r in out) == [(0, 18), (1, 22), (2, 26)]


def test_ray_remote_args_pass_through_or_raise(ray):
    """Ray passes map_batches' extra keywords to .options(): a task option works, any
    other keyword is Ray's ValueError naming it."""
    assert ray.data.range(4).map_batches(lambda b: b, max_retries=2).count() == 4
    with pytest.raises(ValueError, match="Invalid option keyword bogus_option for remote functions"):
        ray.data.range(4).map_batches(lambda b: b, bogus_option=2).count()


def test_aggregates_nulls_std_and_repeated_names(ray):
    """Ray 2.60 (checked): ignore_nulls=False makes a result None when its column (or
    group) has a null; std of no more values than ddof is NaN, globally and per group; a
    repeated aggregation name gets "_2"; add_column replaces a column of the same name."""
    import math

    ds = ray.data.from_items([{"k": i % 2, "x": (None if i == 3 else float(i))} for i in range(6)], override_num_blocks=2)
    for name, expected in (("sum", 12.0), ("min", 0.0), ("max", 5.0), ("mean", 2.4)):
        assert getattr(ds, name)("x") == expected
        assert getattr(ds, name)("x", ignore_nulls=False) is None
    assert ds.std("x", ignore_nulls=False) is None
    rows = sorted(ds.groupby("k").sum("x", ignore_nulls=False).take_all(), key=lambda r: r["k"])
    assert rows == [{"k": 0, "sum(x)": 6.0}, {"k": 1, "sum(x)": None}]
    Count = ray.data.aggregate.Count
    assert ds.aggregate(Count("x", ignore_nulls=True), Count("x", ignore_nulls=False), Count()) == {
        "count(x)": 5, "count(x)_2": 6, "count()": 6}
    one = ray.data.from_items([{"x": 1.0}])
    assert math.isnan(one.std("x")) and one.std("x", ddof=0) == 0.0
    assert math.isnan(ray.data.from_items([{"k": 1, "x": 1.0}]).groupby("k").std("x").take_all()[0]["std(x)"])
    assert ray.data.from_items([{"x": None}, {"x": None}]).std("x") is None
    replaced = ray.data.range(3).add_column("id", lambda t: pa.array([7] * t.num_rows), batch_format="pyarrow")
    assert replaced.take_all() == [{"id": 7}] * 3


def test_expression_udfs_and_generators(ray, tmp_path):
    """Ray 2.60's expression extras (checked, same output): @udf over functions and
    callable classes of Arrow columns, inside larger expressions; random(seed), ids with
    the task index in the upper bits, uuid(), download() of paths; DataType."""
    from importlib import import_module

    import pyarrow.compute as pc

    E = import_module(ray.__name__ + ".data.expressions")
    DataType = import_module(ray.__name__ + ".data.datatype").DataType

    @E.udf(return_dtype=DataType.int64())
    def add_one(x):
        return pc.add(x, 1)

    @E.udf(return_dtype=DataType.int64())
    class AddOffset:
        def __init__(self, offset=1):
            self.offset = offset

        def __call__(self, x):
            return pc.add(x, self.offset)

    ds = ray.data.from_items([{"v": 5}, {"v": 10}])
    assert ds.with_column("w", add_one(E.col("v")) * 2).take_all() == [{"v": 5, "w": 12}, {"v": 10, "w": 22}]
    assert ds.with_column("o", AddOffset(5)(E.col("v"))).take_all() == [{"v": 5, "o": 10}, {"v": 10, "o": 15}]
    values = [r["r"] for r in ray.data.range(6, override_num_blocks=3).with_column("r", E.random(seed=1)).take_all()]
    assert len(set(values)) == 6 and all(0 <= v < 1 for v in values)
    ids = sorted(r["m"] for r in ray.data.range(6, override_num_blocks=3).with_column("m", E.monotonically_increasing_id()).take_all())
    assert ids == [0, 1, 1 << 33, (1 << 33) + 1, 2 << 33, (2 << 33) + 1]
    assert len({r["u"] for r in ray.data.range(3).with_column("u", E.uuid()).take_all()}) == 3
    (tmp_path / "blob.bin").write_bytes(b"hello")
    rows = ray.data.from_items([{"p": str(tmp_path / "blob.bin")}]).with_column("b", E.download("p")).take_all()
    assert rows[0]["b"] == b"hello"
    assert DataType.int64() == DataType.from_arrow(pa.int64())


def test_iter_torch_batches(ray):
    """Ray 2.60: dicts of CPU tensors of exactly batch_size rows, dtypes per column or
    one for all, collate_fn over numpy batches and not with dtypes (ValueError)."""
    torch = pytest.importorskip("torch")
    ds = ray.data.range(10, override_num_blocks=3).map(lambda r: {"id": r["id"], "x": float(r["id"])})
    batches = list(ds.iter_torch_batches(batch_size=4, dtypes={"id": torch.int32, "x": torch.float64}))
    assert [len(b["id"]) for b in batches] == [4, 4, 2]
    assert batches[0]["id"].dtype == torch.int32 and batches[0]["x"].device.type == "cpu"
    assert sorted(torch.cat([b["id"] for b in batches]).tolist()) == list(range(10))
    stacked = list(ds.iter_torch_batches(batch_size=5, collate_fn=lambda b: torch.as_tensor(b["x"]) * 2))
    assert sorted(torch.cat(stacked).tolist()) == [2.0 * i for i in range(10)]
    with pytest.raises(ValueError, match="collate_fn cannot be used with dtypes"):
        next(iter(ds.iter_torch_batches(collate_fn=lambda b: b, dtypes=torch.float32)))


def test_groupby_null_keys_custom_aggregates_and_no_key(ray):
    """Ray 2.60 (checked, same output): a key with nulls in some blocks stays one group;
    count() puts nulls in one group but map_groups calls its function once per null-key
    row; Ray's custom AggregateFn per group and globally; AbsMax per group; groupby(None)
    is one group of everything; sum() with no column sums every non-key column."""
    A = __import__(ray.__name__ + ".data.aggregate", fromlist=["AggregateFn"])
    items = [{"k": k, "v": 1} for k in [1, None, 1, 2, None, 2, 1, None]]
    ds = ray.data.from_items(items, override_num_blocks=4)
    counts = sorted(ds.groupby("k").count().take_all(), key=lambda r: (r["k"] is None, r["k"] or 0))
    assert counts == [{"k": 1, "count()": 3}, {"k": 2, "count()": 2}, {"k": None, "count()": 3}]
    sizes = sorted(r["n"] for r in ds.groupby("k").map_groups(lambda b: {"n": np.array([len(b["v"])])}).take_all())
    assert sizes == [1, 1, 1, 2, 3]
    custom = A.AggregateFn(init=lambda k: 0, accumulate_row=lambda c, r: c + 1, merge=lambda a, b: a + b, name="custom_count")
    ds = ray.data.from_items([{"g": "A", "v": 1}, {"g": "B", "v": -5}, {"g": "A", "v": 3}], override_num_blocks=2)
    assert sorted(ds.groupby("g").aggregate(custom).take_all(), key=lambda r: r["g"]) == [
        {"g": "A", "custom_count": 2}, {"g": "B", "custom_count": 1}]
    assert ds.aggregate(custom) == {"custom_count": 3}
    assert sorted(ds.groupby("g").aggregate(A.AbsMax("v")).take_all(), key=lambda r: r["g"]) == [
        {"g": "A", "abs_max(v)": 3}, {"g": "B", "abs_max(v)": 5}]
    assert sorted(ds.groupby("g").sum().take_all(), key=lambda r: r["g"]) == [{"g": "A", "sum(v)": 4}, {"g": "B", "sum(v)": -5}]
    whole = ray.data.range(6, override_num_blocks=3).groupby(None).map_groups(lambda b: {"n": np.array([len(b["id"])])})
    assert whole.take_all() == [{"n": 6}]


def test_split_by_blocks_and_from_pandas_dtypes(ray):
    """Ray 2.60: split(n) hands out whole blocks (2 blocks in 4 splits: 5, 5, 0, 0 rows);
    from_pandas keeps the frame's own dtypes through to_pandas and pandas batches (so
    numpy-only operations such as % work there); string predicates take negative numbers."""
    assert [p.count() for p in ray.data.range(10, override_num_blocks=2).split(4)] == [5, 5, 0, 0]
    df = pd.DataFrame({"a": [1, 2, 3, 4]})
    ds = ray.data.from_pandas(df)
    assert str(ds.to_pandas().dtypes["a"]) == "int64"
    out = ds.map_batches(lambda b: pd.DataFrame({"a": b["a"] % 3}), batch_format="pandas").to_pandas()
    assert sorted(out["a"].tolist()) == [0, 1, 1, 2]
    assert ray.data.range(4).filter(expr="id > -1").count() == 4


def test_chained_default_actor_pools_finish(ray):
    """Two callable classes in a row with Ray's default (autoscaling) pools finish on a
    small cluster: neither pool takes the CPUs the other needs."""
    out = ray.data.range(200, override_num_blocks=20).map_batches(AddConstant, fn_constructor_args=(1,)) \
        .map_batches(AddConstant, fn_constructor_args=(10,)).take_all()
    assert _ids(out) == [i + 11 for i in range(200)]


def test_aggregate_fn_v2_subclass(ray):
    """Ray's recommended custom aggregation: subclass AggregateFnV2 with aggregate_block
    and combine (and finalize); globally and per group."""
    A = __import__(ray.__name__ + ".data.aggregate", fromlist=["AggregateFnV2"])

    class Prod(A.AggregateFnV2):
        def __init__(self, on):
            super().__init__(f"prod({on})", zero_factory=lambda: 1, on=on, ignore_nulls=True)

        def aggregate_block(self, block):
            return int(np.prod(np.asarray(block[self.get_target_column()])))

        def combine(self, current, new):
            return current * new

        def finalize(self, accumulator):
            return -accumulator

    ds = ray.data.from_items([{"g": i % 2, "v": i} for i in range(1, 7)], override_num_blocks=3)
    assert ds.aggregate(Prod("v")) == {"prod(v)": -720}
    assert sorted(ds.groupby("g").aggregate(Prod("v")).take_all(), key=lambda r: r["g"]) == [
        {"g": 0, "prod(v)": -48}, {"g": 1, "prod(v)": -15}]


def test_streaming_split_equal_streams_and_evens_out(ray):
    """equal=True hands blocks out as they come while the buffer can still even the
    splits out (Ray's OutputSplitter): with one consumer much slower than the other, both
    end with total // n rows of their own (Ray: the same)."""
    import threading
    import time

    its = ray.data.range(105, override_num_blocks=7).streaming_split(2, equal=True)
    seen = [[], []]

    def consume(i, pause):
        for b in its[i].iter_batches(batch_size=None):
            seen[i].extend(int(x) for x in b["id"])
            time.sleep(pause)

    threads = [threading.Thread(target=consume, args=(0, 0.0)), threading.Thread(target=consume, args=(1, 0.3))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert len(seen[0]) == len(seen[1]) == 52
    assert not set(seen[0]) & set(seen[1])
