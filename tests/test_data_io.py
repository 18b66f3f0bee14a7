"""ray.data files and Dask: read_*/write_* round trips, text/binary columns, from_dask/to_dask
(pinned on Ray 2.60)."""

from __future__ import annotations

import os

import pytest

pd = pytest.importorskip("pandas")
pa = pytest.importorskip("pyarrow")


def _rows(ds, key):
    return sorted(ds.take_all(), key=lambda r: r[key])


def test_parquet_round_trip(ray, tmp_path):
    """write_parquet writes one file per block into the directory; read_parquet reads them back."""
    out = str(tmp_path / "pq")
    ray.data.range(6, override_num_blocks=2).map(lambda r: {"id": r["id"], "s": str(r["id"])}).write_parquet(out)
    files = [f for f in os.listdir(out) if f.endswith(".parquet")]
    assert len(files) >= 1
    back = ray.data.read_parquet(out)
    assert back.schema().names == ["id", "s"]
    assert _rows(back, "id") == [{"id": i, "s": str(i)} for i in range(6)]
    assert _rows(ray.data.read_parquet(out, columns=["s"]), "s") == [{"s": str(i)} for i in range(6)]


def test_csv_round_trip(ray, tmp_path):
    out = str(tmp_path / "csv")
    ray.data.from_items([{"a": 1, "b": "x"}, {"a": 2, "b": "y"}]).write_csv(out)
    assert _rows(ray.data.read_csv(out), "a") == [{"a": 1, "b": "x"}, {"a": 2, "b": "y"}]


def test_json_lines_round_trip(ray, tmp_path):
    out = str(tmp_path / "json")
    ray.data.from_items([{"a": 1, "b": "x"}, {"a": 2, "b": "y"}]).write_json(out)
    assert _rows(ray.data.read_json(out), "a") == [{"a": 1, "b": "x"}, {"a": 2, "b": "y"}]
    path = tmp_path / "one.jsonl"
    path.write_text('{"k": 1}\n{"k": 2}\n')
    assert _rows(ray.data.read_json(str(path)), "k") == [{"k": 1}, {"k": 2}]


def test_read_text(ray, tmp_path):
    """Ray: one row per line, column "text"."""
    path = tmp_path / "lines.txt"
    path.write_text("hello\nworld\n")
    assert ray.data.read_text(str(path)).take_all() == [{"text": "hello"}, {"text": "world"}]


def test_read_binary_files(ray, tmp_path):
    """Ray: one row per file, column "bytes"; include_paths adds "path"."""
    (tmp_path / "a.bin").write_bytes(b"\x00\x01")
    (tmp_path / "b.bin").write_bytes(b"zz")
    rows = ray.data.read_binary_files(str(tmp_path)).take_all()
    assert sorted(r["bytes"] for r in rows) == [b"\x00\x01", b"zz"]
    assert set(rows[0]) == {"bytes"}
    rows = ray.data.read_binary_files(str(tmp_path), include_paths=True).take_all()
    assert sorted(os.path.basename(r["path"]) for r in rows) == ["a.bin", "b.bin"]


def test_dask_round_trip(ray):
    """from_dask: one block per partition; to_dask: a dask.dataframe of the rows."""
    dd = pytest.importorskip("dask.dataframe")
    ddf = dd.from_pandas(pd.DataFrame({"x": range(6), "y": list("abcdef")}), npartitions=2)
    ds = ray.data.from_dask(ddf)
    assert _rows(ds, "x") == [{"x": i, "y": "abcdef"[i]} for i in range(6)]
    assert ds.num_blocks() == 2 and ds.count() == 6
    assert sorted(r["x"] for r in ds.map(lambda r: {"x": r["x"] + 1}).take_all()) == [1, 2, 3, 4, 5, 6]
    back = ray.data.range(6).map(lambda r: {"id": r["id"] * 2}).to_dask()
    assert str(back.dtypes["id"]) == "int64[pyarrow]"  # Ray 2.60's Arrow-backed pandas
    assert sorted(back.compute()["id"].tolist()) == [0, 2, 4, 6, 8, 10]


def test_read_parquet_count_schema_and_repr(ray, tmp_path):
    """count() and schema() of read_parquet (raycompat reads the footers up front); Ray's
    repr still shows the row count as "?" before reading."""
    import pyarrow.parquet as pq

    for i in range(2):
        pq.write_table(pa.table({"a": [1, 2, 3], "b": ["x", "y", "z"]}), str(tmp_path / f"p{i}.parquet"))
    ds = ray.data.read_parquet(str(tmp_path))
    assert ds.count() == 6
    assert ds.schema().names == ["a", "b"]
    assert repr(ds).splitlines()[0] == "shape: (?, 2)"


def test_read_numpy(ray, tmp_path):
    """Ray: rows of the .npy array, column "data"."""
    np = pytest.importorskip("numpy")
    np.save(str(tmp_path / "a.npy"), np.arange(4))
    assert sorted(r["data"] for r in ray.data.read_numpy(str(tmp_path / "a.npy")).take_all()) == [0, 1, 2, 3]


def test_read_images(ray, tmp_path):
    """Ray: one row per image, column "image" (H x W x C uint8); size=(h, w) resizes."""
    Image = pytest.importorskip("PIL.Image")
    Image.new("RGB", (4, 3), (255, 0, 0)).save(str(tmp_path / "red.png"))
    rows = ray.data.read_images(str(tmp_path)).take_all()
    assert len(rows) == 1
    assert rows[0]["image"].shape == (3, 4, 3)
    assert rows[0]["image"][0, 0].tolist() == [255, 0, 0]
    small = ray.data.read_images(str(tmp_path), size=(2, 2), include_paths=True).take_all()
    assert small[0]["image"].shape == (2, 2, 3)
    assert small[0]["path"].endswith("red.png")


def test_from_refs(ray):
    """Ray: from_pandas_refs / from_numpy_refs ("data") / from_arrow_refs build a dataset
    from ObjectRefs."""
    np = pytest.importorskip("numpy")
    df_ref = ray.put(pd.DataFrame({"a": [1, 2]}))
    assert ray.data.from_pandas_refs(df_ref).take_all() == [{"a": 1}, {"a": 2}]
    assert ray.data.from_numpy_refs([ray.put(np.array([5, 6]))]).take_all() == [{"data": 5}, {"data": 6}]
    assert ray.data.from_arrow_refs(ray.put(pa.table({"x": [1]}))).take_all() == [{"x": 1}]


def test_example_data_pipeline(ray):
    """examples/data_pipeline.py runs (small) and counts the rows it wrote back."""
    from pathlib import Path

    from conftest import run_script

    source = (Path(__file__).resolve().parent.parent / "examples" / "data_pipeline.py").read_text()
    # The engine under test (run_script sets RAYCOMPAT_TEST_ENGINE): the same program on both.
    engine = "import importlib, os; ray = importlib.import_module(os.environ['RAYCOMPAT_TEST_ENGINE'])"
    source = source.replace("import raycompat as ray", engine)
    result = run_script("import sys; sys.argv = ['data_pipeline.py', '1000']\n" + source, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().splitlines()[-1] == "900"


def test_empty_blocks_are_not_written(ray, tmp_path):
    """Ray 2.60 (checked): a block a filter emptied writes no file; the rest read back."""
    out = str(tmp_path / "csv")
    ray.data.range(10, override_num_blocks=2).filter(lambda r: r["id"] < 5).write_csv(out)
    assert len(os.listdir(out)) == 1
    assert sorted(r["id"] for r in ray.data.read_csv(out).take_all()) == [0, 1, 2, 3, 4]


def test_pandas_conversions_are_arrow_backed(ray):
    """Ray 2.60 (checked) converts blocks to pandas with Arrow-backed dtypes (to_pandas,
    pandas batches, to_dask); DataContext.enable_arrow_backed_pandas_conversion=False
    brings numpy dtypes back."""
    ds = ray.data.range(3).map(lambda r: {"id": r["id"], "s": str(r["id"])})
    assert {k: str(v) for k, v in ds.to_pandas().dtypes.items()} == {"id": "int64[pyarrow]", "s": "string[pyarrow]"}

    def dtypes(df):
        return pd.DataFrame({"d": [f"{df['id'].dtype}/{df['s'].dtype}"] * len(df)})

    assert set(ds.map_batches(dtypes, batch_format="pandas").to_pandas()["d"]) == {"int64[pyarrow]/string[pyarrow]"}
    ctx = ray.data.DataContext.get_current()
    ctx.enable_arrow_backed_pandas_conversion = False
    try:
        plain = ray.data.range(3).map(lambda r: {"id": r["id"], "s": str(r["id"])})
        numpy_str = str(pd.Series(["a"]).dtype)  # object, or str in pandas 3
        assert set(plain.map_batches(dtypes, batch_format="pandas").to_pandas()["d"]) == {f"int64/{numpy_str}"}
        assert str(plain.to_pandas().dtypes["id"]) == "int64"
    finally:
        ctx.enable_arrow_backed_pandas_conversion = True


def test_read_json_array_files(ray, tmp_path):
    """Ray 2.60 reads a file holding a JSON array of objects (or one object) besides JSON
    lines (it falls back to json.load when pyarrow's reader refuses)."""
    (tmp_path / "arr.json").write_text('[{"a": 1, "b": "x"}, {"a": 2, "b": "y"}]')
    (tmp_path / "lines.json").write_text('{"a": 3, "b": "z"}\n{"a": 4, "b": "w"}\n')
    (tmp_path / "one.json").write_text('{"a": 5, "b": "v"}')
    assert ray.data.read_json(str(tmp_path / "arr.json")).take_all() == [{"a": 1, "b": "x"}, {"a": 2, "b": "y"}]
    assert sorted(r["a"] for r in ray.data.read_json(str(tmp_path)).take_all()) == [1, 2, 3, 4, 5]


def test_directory_reads_skip_hidden_parts_and_write_json_types(ray, tmp_path):
    """Ray 2.60 skips paths under a directory with a part starting with "." or "_"
    (.ipynb_checkpoints/, _temporary/), reads compressed files by their double extension,
    and writes JSON lines through pandas (NaN as null, which JSON readers take; Ray 2.60
    cannot write date columns, checked)."""
    import gzip

    (tmp_path / "d" / ".ipynb_checkpoints").mkdir(parents=True)
    (tmp_path / "d" / "_temporary").mkdir()
    (tmp_path / "d" / "a.csv").write_text("x\n1\n")
    (tmp_path / "d" / ".ipynb_checkpoints" / "a-checkpoint.csv").write_text("x\n100\n")
    (tmp_path / "d" / "_temporary" / "part.csv").write_text("x\n200\n")
    with gzip.open(tmp_path / "d" / "b.csv.gz", "wt") as f:
        f.write("x\n2\n")
    assert sorted(r["x"] for r in ray.data.read_csv(str(tmp_path / "d")).take_all()) == [1, 2]
    ds = ray.data.from_items([{"i": 1, "f": float("nan")}, {"i": 2, "f": 1.5}])
    ds.write_json(str(tmp_path / "out"))
    back = sorted(ray.data.read_json(str(tmp_path / "out")).take_all(), key=lambda r: r["i"])
    assert [r["f"] for r in back] == [None, 1.5]


def test_tensor_columns_keep_their_shape_through_pandas(ray):
    """Ray 2.60 (checked): a tensor column's cells are arrays of the tensor's shape in
    to_pandas and in pandas batches, and a pandas batch of such cells becomes a tensor
    column again (numpy batches of shape (n, 2, 2))."""
    import numpy as np

    ds = ray.data.range_tensor(4, shape=(2, 2))
    df = ds.to_pandas()
    assert isinstance(df["data"][0], np.ndarray) and df["data"][1].tolist() == [[1, 1], [1, 1]]
    assert ds.map_batches(lambda b: b, batch_format="pandas").take_batch(4)["data"].shape == (4, 2, 2)
