"""ray.data: creating Datasets, consuming them, their reprs and laziness (pinned on Ray 2.60)."""

from __future__ import annotations

import os

import numpy as np
import pytest

pd = pytest.importorskip("pandas")
pa = pytest.importorskip("pyarrow")


def test_range_rows_schema_and_defaults(ray):
    """Ray: range(n) has one column "id" of int64; take() defaults to 20 rows, rows are dicts."""
    ds = ray.data.range(30)
    schema = ds.schema()
    assert schema.names == ["id"]
    assert [str(t) for t in schema.types] == ["int64"]
    assert ds.columns() == ["id"]
    # Ray keeps no block order by default (preserve_order=False): compare as sets.
    rows = ds.take()
    assert len(rows) == 20 and all(set(r) == {"id"} and 0 <= r["id"] < 30 for r in rows)
    assert len({r["id"] for r in ds.take(3)}) == 3
    assert ds.count() == 30


def test_schema_repr(ray):
    """Ray: Schema's repr is a two-column Column/Type listing."""
    assert repr(ray.data.range(3).schema()) == "Column  Type\n------  ----\nid      int64"


def test_repr_of_a_source_and_of_a_plan(ray):
    """Ray 2.60 draws a known schema as a table; an unknown one as the plan over the source."""
    assert repr(ray.data.range(10)) == (
        "shape: (10, 1)\n"
        "╭───────╮\n"
        "│ id    │\n"
        "│ ---   │\n"
        "│ int64 │\n"
        "╰───────╯\n"
        "(Dataset isn't materialized)"
    )
    assert repr(ray.data.range(10).map(lambda r: r)) == (
        "Map(<lambda>)\n+- Dataset(num_rows=10, schema={id: int64})"
    )


def test_repr_of_a_materialized_dataset(ray):
    """Ray: a MaterializedDataset shows up to 10 rows (5 first, an ellipsis row, 5 last)."""
    text = repr(ray.data.range(30, override_num_blocks=1).materialize())
    lines = text.splitlines()
    assert lines[0] == "shape: (30, 1)"
    assert [ln.strip("│ ") for ln in lines[6:17]] == ["0", "1", "2", "3", "4", "…", "25", "26", "27", "28", "29"]
    assert lines[-1] == "(Showing 10 of 30 rows)"
    assert type(ray.data.range(3).materialize()).__name__ == "MaterializedDataset"
    assert type(ray.data.range(3)).__name__ == "Dataset"


def test_from_items(ray):
    """Ray: dict items become columns; other items a column "item"; from_items is materialized."""
    ds = ray.data.from_items([1, 2, 3])
    assert ds.take_all() == [{"item": 1}, {"item": 2}, {"item": 3}]
    assert type(ds).__name__ == "MaterializedDataset"
    rows = ray.data.from_items([{"a": 1, "b": "x"}, {"a": 2, "b": "y"}]).take_all()
    assert rows == [{"a": 1, "b": "x"}, {"a": 2, "b": "y"}]
    assert repr(ray.data.from_items([{"a": 1, "b": "x"}])).splitlines()[:5] == [
        "shape: (1, 2)",
        "╭───────┬────────╮",
        "│ a     ┆ b      │",
        "│ ---   ┆ ---    │",
        "│ int64 ┆ string │",
    ]


def test_from_numpy_pandas_arrow(ray):
    """Ray: from_numpy's column is "data" (rows of a 2-d array are 1-d arrays)."""
    rows = ray.data.from_numpy(np.arange(6).reshape(3, 2)).take_all()
    assert [r["data"].tolist() for r in rows] == [[0, 1], [2, 3], [4, 5]]
    assert ray.data.from_numpy(np.arange(3)).take_all() == [{"data": 0}, {"data": 1}, {"data": 2}]
    df = pd.DataFrame({"a": [1, 2], "b": ["x", "y"]}, index=[10, 11])
    assert ray.data.from_pandas(df).take_all() == [{"a": 1, "b": "x"}, {"a": 2, "b": "y"}]
    assert ray.data.from_pandas([df, df]).count() == 4
    assert ray.data.from_arrow(pa.table({"x": [1.5]})).take_all() == [{"x": 1.5}]


def test_range_tensor(ray):
    """Ray: range_tensor(n, shape) has column "data": arrays of ``shape`` filled with i."""
    rows = ray.data.range_tensor(3, shape=(2, 2)).take_all()
    assert len(rows) == 3
    assert rows[2]["data"].shape == (2, 2)
    assert rows[2]["data"].tolist() == [[2, 2], [2, 2]]


def test_take_batch_and_formats(ray):
    """Ray: take_batch defaults to 20 rows as a dict of numpy arrays; "pandas"/"pyarrow" too.
    (One block: Ray keeps no block order by default.)"""
    ds = ray.data.range(30, override_num_blocks=1)
    batch = ds.take_batch()
    assert isinstance(batch, dict) and isinstance(batch["id"], np.ndarray)
    assert batch["id"].tolist() == list(range(20))
    assert ds.take_batch(3, batch_format="numpy")["id"].tolist() == [0, 1, 2]
    df = ds.take_batch(2, batch_format="pandas")
    assert isinstance(df, pd.DataFrame) and df["id"].tolist() == [0, 1]
    assert isinstance(ds.take_batch(2, batch_format="pyarrow"), pa.Table)


def test_take_batch_on_empty_data(ray):
    """Ray: ValueError("The dataset is empty.")."""
    with pytest.raises(ValueError, match="^The dataset is empty.$"):
        ray.data.range(0).take_batch()
    with pytest.raises(ValueError, match="^The dataset is empty.$"):
        ray.data.range(5).filter(lambda r: False).take_batch()


def test_take_all_limit(ray):
    """Ray: take_all(limit) raises ValueError when there are more rows than the limit."""
    assert len(ray.data.range(5).take_all(limit=5)) == 5
    with pytest.raises(ValueError, match="The dataset has more than the given limit of 4 records."):
        ray.data.range(5).take_all(limit=4)


def test_show_prints_rows(ray, capsys):
    """Ray: show() prints each row dict on its own line, 20 by default."""
    ray.data.range(3).show()
    assert capsys.readouterr().out.splitlines() == ["{'id': 0}", "{'id': 1}", "{'id': 2}"]
    ray.data.range(50).show()
    assert len(capsys.readouterr().out.splitlines()) == 20


def test_iter_batches_exact_sizes_across_blocks(ray):
    """Ray: iter_batches cuts exact batch_size batches across block boundaries (Ray keeps
    no block order by default, so rows are compared as sets)."""
    ds = ray.data.range(10, override_num_blocks=3)
    batches = [b["id"].tolist() for b in ds.iter_batches(batch_size=4)]
    assert [len(b) for b in batches] == [4, 4, 2]
    assert sorted(sum(batches, [])) == list(range(10))
    assert [len(b["id"]) for b in ds.iter_batches(batch_size=4, drop_last=True)] == [4, 4]
    dfs = list(ds.iter_batches(batch_size=5, batch_format="pandas"))
    assert sorted(sum((df["id"].tolist() for df in dfs), [])) == list(range(10))
    assert [list(df.index) for df in dfs] == [[0, 1, 2, 3, 4], [0, 1, 2, 3, 4]]


def test_iter_rows_and_to_pandas(ray):
    ds = ray.data.range(4, override_num_blocks=2)
    assert sorted(r["id"] for r in ds.iter_rows()) == [0, 1, 2, 3]
    df = ds.to_pandas()
    assert sorted(df["id"].tolist()) == [0, 1, 2, 3] and list(df.index) == [0, 1, 2, 3]


def test_to_numpy_refs(ray):
    """Ray: one ObjectRef per block, each a dict of numpy arrays."""
    refs = ray.data.range(4, override_num_blocks=2).to_numpy_refs()
    assert len(refs) == 2
    values = ray.get(refs)
    assert sorted(v["id"].tolist() for v in values) == [[0, 1], [2, 3]]


def test_aggregates_return_shapes(ray):
    """Ray: one column gives a scalar (also as a one-item list); several a dict "sum(a)"...;
    an empty dataset gives None; std uses ddof=1."""
    ds = ray.data.range(10)
    assert ds.sum("id") == 45 and ds.sum(["id"]) == 45
    assert ds.min("id") == 0 and ds.max("id") == 9 and ds.mean("id") == 4.5
    assert ds.std("id") == pytest.approx(3.0276503540974917)
    assert ds.std("id", ddof=0) == pytest.approx(2.8722813232690143)
    two = ray.data.from_items([{"a": 1, "b": 2}, {"a": 3, "b": 4}])
    assert two.sum(["a", "b"]) == {"sum(a)": 4, "sum(b)": 6}
    assert two.mean(["a", "b"]) == {"mean(a)": 2.0, "mean(b)": 3.0}
    assert ray.data.range(0).sum("id") is None


def test_aggregate_with_aggregate_fns(ray):
    """Ray: aggregate() returns a dict keyed "count()", "sum(id)", "mean(id)"..."""
    from importlib import import_module

    agg = import_module(ray.__name__ + ".data.aggregate")
    result = ray.data.range(10).aggregate(agg.Count(), agg.Sum("id"), agg.Mean("id"), agg.Max("id"))
    assert result == {"count()": 10, "sum(id)": 45, "mean(id)": 4.5, "max(id)": 9}


def test_count_without_running_user_code(ray, tmp_path):
    """count() of range(n) with row-preserving maps needs no task to run its function."""

    def touch(row):
        open(os.path.join(str(tmp_path), f"r{row['id']}"), "w").close()
        return row

    ds = ray.data.range(10).map(touch)
    assert os.listdir(tmp_path) == []  # nothing ran while building the plan
    # Ray does not keep the order of blocks unless preserve_order is set.
    assert sorted(r["id"] for r in ds.take_all()) == list(range(10))
    assert len(os.listdir(tmp_path)) == 10


def test_limit_computes_only_the_blocks_it_needs(ray, tmp_path):
    """take(1) of 50 blocks runs the function on far fewer than 50 of them (Ray: 1-2)."""

    def mark(batch):
        open(os.path.join(str(tmp_path), f"b{batch['id'][0]}"), "w").close()
        return batch

    ds = ray.data.range(100, override_num_blocks=50).map_batches(mark)
    assert len(ds.take(1)) == 1
    assert ds.limit(3).count() == 3
    assert 1 <= len(os.listdir(tmp_path)) < 25


def test_materialize_and_stats(ray):
    """Ray: stats() is a string; materialize() gives a MaterializedDataset of the same rows."""
    ds = ray.data.range(6).map(lambda r: {"id": r["id"] + 1}).materialize()
    assert type(ds).__name__ == "MaterializedDataset"
    assert isinstance(ds.stats(), str)
    assert ds.take_all() == [{"id": i + 1} for i in range(6)]


def test_len_and_iter_errors(ray):
    """Ray: len() and iter() of a Dataset raise, pointing at count()/iter_rows()."""
    ds = ray.data.range(3)
    with pytest.raises(AttributeError, match="Use `ds.count\\(\\)`"):
        len(ds)
    with pytest.raises(TypeError, match="`Dataset` objects aren't iterable"):
        iter(ds)


def test_data_context_accepts_settings(ray):
    """Ray: DataContext.get_current() is one object; settings, known or not, are kept."""
    ctx = ray.data.DataContext.get_current()
    assert ctx is ray.data.DataContext.get_current()
    assert ctx.target_max_block_size == 128 * 1024 * 1024
    ctx.enable_progress_bars = False
    ctx.some_unknown_setting = 7
    assert ray.data.DataContext.get_current().some_unknown_setting == 7
    assert ctx.execution_options.preserve_order is False
    ctx.execution_options.preserve_order = True
    ctx.execution_options.preserve_order = False
    ctx.enable_progress_bars = True


def test_actor_pool_strategy_repr(ray):
    """Ray's ActorPoolStrategy(size=2) repr."""
    assert repr(ray.data.ActorPoolStrategy(size=2)) == (
        "ActorPoolStrategy(min_size=2, max_size=2, initial_size=2, max_tasks_in_flight_per_actor=None, "
        "max_concurrent_calls_per_actor=None, num_workers=0, enable_true_multi_threading=False, "
        "ready_to_total_workers_ratio=0.8)"
    )


DATA_NAMES = [
    "ActorPoolStrategy", "DataContext", "DataIterator", "Dataset", "DatasetContext",
    "ExecutionOptions", "ExecutionResources", "Schema", "TaskPoolStrategy", "from_arrow",
    "from_arrow_refs", "from_blocks", "from_dask", "from_items", "from_numpy", "from_numpy_refs",
    "from_pandas", "from_pandas_refs", "range", "range_tensor", "read_binary_files", "read_csv",
    "read_images", "read_json", "read_numpy", "read_parquet", "read_text",
]


def test_public_names(ray):
    """Ray 2.60's ray.data.__all__ holds these, and the aggregate module is reachable; the
    classes live at Ray's module paths (GroupedData and MaterializedDataset only there)."""
    from importlib import import_module

    data = ray.data
    assert set(DATA_NAMES) <= set(data.__all__)
    assert all(hasattr(data, n) for n in DATA_NAMES + ["aggregate"])
    assert import_module(ray.__name__ + ".data.dataset").Dataset is data.Dataset
    assert import_module(ray.__name__ + ".data.grouped_data").GroupedData.__name__ == "GroupedData"
    assert import_module(ray.__name__ + ".data.dataset").MaterializedDataset.__name__ == "MaterializedDataset"
    assert import_module(ray.__name__ + ".data.context").DataContext is data.DataContext
    agg = import_module(ray.__name__ + ".data.aggregate")
    assert all(hasattr(agg, n) for n in ["AbsMax", "AggregateFn", "Count", "Max", "Mean", "Min", "Std", "Sum"])


def test_schema_of_a_plan_runs_it(ray):
    """Ray: schema() of a plan without a known schema runs it and reports the output's."""
    ds = ray.data.range(3).map(lambda r: {"a": float(r["id"]), "b": str(r["id"])})
    assert ds.schema().names == ["a", "b"]
    assert [str(t) for t in ds.schema().types] == ["double", "string"]
    assert ds.columns() == ["a", "b"]


def test_empty_datasets(ray):
    """Ray: range(0) and from_items([]) know no schema; their reprs say so."""
    assert ray.data.range(0).schema() is None
    assert repr(ray.data.range(0)) == "Dataset(num_rows=0, schema=Unknown schema)"
    assert repr(ray.data.from_items([])) == "MaterializedDataset(num_rows=0, schema=Unknown schema)"
    assert ray.data.from_items([]).take_all() == []
    assert ray.data.range(0).mean("id") is None


def test_bad_batch_format(ray):
    """Ray's ValueError lists the formats it takes."""
    msg = r"The given batch format bogus isn't allowed \(must be one of \['pandas', 'pyarrow', 'numpy', 'cudf', None\]\)."
    with pytest.raises(ValueError, match=msg):
        ray.data.range(3).map_batches(lambda b: b, batch_format="bogus").take_all()
    with pytest.raises(ValueError, match=msg):
        list(ray.data.range(3).iter_batches(batch_format="bogus"))


def test_argument_errors(ray):
    """Ray's ValueErrors for bad splits, to_pandas limits and missing groupby keys."""
    ds = ray.data.range(3)
    with pytest.raises(ValueError, match="^The number of splits 0 is not positive.$"):
        ds.split(0)
    with pytest.raises(ValueError, match=r"If `test_size` is a float, it must be bigger than 0 and smaller than 1. Got 1.5."):
        ds.train_test_split(1.5)
    with pytest.raises(ValueError, match=r"If `test_size` is an int, it must be bigger than 0 and smaller than the size of the dataset \(3\). Got 3."):
        ds.train_test_split(3)
    with pytest.raises(ValueError, match="the dataset has more than the given limit of 2 rows: 3."):
        ds.to_pandas(limit=2)
    with pytest.raises(ValueError, match=r"You specified the column 'x', but there's no such column in the dataset. The dataset has columns: \['id'\]"):
        ds.groupby("x").count().take_all()
    with pytest.raises(ValueError, match="as your UDF with the compute ActorPoolStrategy"):
        ds.map_batches(lambda b: b, compute=ray.data.ActorPoolStrategy(size=1)).take_all()


def test_strategy_reprs_and_context_alias(ray):
    """Ray: TaskPoolStrategy(size=2) repr; DatasetContext is DataContext."""
    assert repr(ray.data.TaskPoolStrategy(size=2)) == "TaskPoolStrategy(size=2)"
    assert ray.data.DatasetContext is ray.data.DataContext
    ds = ray.data.range(4).map_batches(lambda b: b, compute=ray.data.TaskPoolStrategy(size=1))
    assert sorted(r["id"] for r in ds.take_all()) == [0, 1, 2, 3]
    assert ray.data.from_blocks([pa.table({"x": [1]}), pa.table({"x": [2]})]).take_all() == [{"x": 1}, {"x": 2}]


def test_range_default_blocks_follow_size(ray):
    """Ray 2.60 sizes range's blocks by its bytes (8 per row): min(200, size / 1 MiB) read
    tasks of n // k rows plus one for the remainder: 10**7 rows -> 77 blocks, 10**6 -> 8
    (when 2 x CPUs is below that)."""
    assert ray.data.range(10**7).materialize().num_blocks() == 77
    if 2 * ray.cluster_resources()["CPU"] <= 7:
        assert ray.data.range(10**6).materialize().num_blocks() == 8


def test_num_blocks_and_ref_bundles(ray):
    """Ray 2.60: num_blocks() only on a MaterializedDataset (NotImplementedError before);
    iter_internal_ref_bundles yields RefBundles of (ref, metadata) block entries."""
    ds = ray.data.range(10, override_num_blocks=2)
    with pytest.raises(NotImplementedError, match="only available for `MaterializedDataset`"):
        ds.num_blocks()
    bundles = list(ds.iter_internal_ref_bundles())
    assert sum(b.num_rows() for b in bundles) == 10
    ref, meta = bundles[0].blocks[0].ref, bundles[0].blocks[0].metadata
    assert isinstance(ref, ray.ObjectRef) and meta.num_rows == bundles[0].num_rows()
    assert bundles[0].block_refs == [ref] and bundles[0].size_bytes() > 0
    assert pa.Table.from_pylist(ray.get(ref).to_pylist()).column_names == ["id"]
