"""raycompat.data on Dask: what the scheduler runs for a Dataset.

Consecutive row/batch operations fuse with the read into one raycompat task per block (Ray's
operator fusion), visible in ``ray.timeline()`` as one task per block whose key carries
Ray's fused operator name (``->`` written ``→``: Dask's dashboard cuts names at ``-``); an
all-to-all op adds one map task per input block and one reduce task per output block.
"""

from __future__ import annotations

import pytest

pytest.importorskip("pyarrow")


def _task_keys(ray, since):
    return [e["args"]["key"] for e in ray.timeline() if e.get("cat") == "task" and e["ts"] >= since]


def _now_us(ray):
    events = ray.timeline()
    return max((e["ts"] + e.get("dur", 0) for e in events), default=0)


def test_row_and_batch_ops_fuse_into_one_task_per_block(ray):
    since = _now_us(ray)
    ds = ray.data.range(8, override_num_blocks=4).map(lambda r: r).filter(lambda r: True).map_batches(lambda b: b)
    assert ds.materialize().count() == 8
    keys = _task_keys(ray, since)
    # Ray's fused operator name, "->" written "→" so that the dashboard shows all of it.
    fused = "ReadRange→Map(<lambda>)→Filter(<lambda>)→MapBatches(<lambda>)-"
    assert sum(k.startswith(fused) for k in keys) == 4, keys
    assert len(keys) == 4, keys


def test_a_sort_is_one_map_and_one_reduce_task_per_block(ray):
    ds = ray.data.range(40, override_num_blocks=4).materialize()
    since = _now_us(ray)
    assert ds.sort("id", descending=True).materialize().take(1) == [{"id": 39}]
    keys = _task_keys(ray, since)
    assert sum(k.startswith("SortMap-") for k in keys) == 4, keys
    assert sum(k.startswith("SortReduce-") for k in keys) == 4, keys


def test_missing_pyarrow_says_what_to_install():
    """Without pyarrow, `import raycompat` works and ray.data says `pip install 'raycompat[data]'`."""
    import subprocess
    import sys

    code = (
        "import sys; sys.modules['pyarrow'] = None\n"
        "import raycompat\n"
        "try:\n"
        "    raycompat.data\n"
        "except ImportError as e:\n"
        "    print('ERR', e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert "ERR raycompat.data needs pyarrow and pandas (pyarrow is missing): pip install 'raycompat[data]'" in out.stdout, out


def test_arguments_raycompat_does_not_act_on_are_warned_about(ray, tmp_path):
    """A Ray Data argument raycompat.data accepts but ignores (here a
    partitioning scheme and a file-name provider) is named in a warning, once; Ray acts
    on them. The data is still read and written."""
    import warnings

    ray.data.range(4).write_parquet(str(tmp_path / "in"))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds = ray.data.read_parquet(str(tmp_path / "in"), partitioning="hive-like")
        ds.write_csv(str(tmp_path / "out"), filename_provider=object())
    texts = [str(w.message) for w in caught]
    assert "raycompat.data ignores these read_parquet arguments: partitioning." in texts
    assert "raycompat.data ignores these write_csv arguments: filename_provider." in texts
    assert sorted(r["id"] for r in ray.data.read_csv(str(tmp_path / "out")).take_all()) == [0, 1, 2, 3]


def test_each_execution_logs_its_start_plan_and_end(ray, caplog):
    """Ray 2.60 (checked) logs, for each execution of a dataset, "Starting execution of
    Dataset <name>", "Execution plan of Dataset <name>: InputDataBuffer[Input] ->
    TaskPoolMapOperator[ReadRange->Map(f)] -> ..." and "Dataset <name> execution finished
    in N seconds"; raycompat logs the same lines (logger ``raycompat.data``)."""
    import logging
    import re

    logger = logging.getLogger("raycompat.data")
    logger.addHandler(caplog.handler)
    old_level = logger.level
    logger.setLevel(logging.INFO)
    try:
        ray.data.range(10, override_num_blocks=2).map(lambda r: r).sort("id").take_all()
        ray.data.range(4).materialize()
    finally:
        logger.removeHandler(caplog.handler)
        logger.setLevel(old_level)
    messages = [r.getMessage() for r in caplog.records]
    starts = [m for m in messages if m.startswith("Starting execution of Dataset dataset_")]
    assert len(set(starts)) == 2  # (a record may reach caplog twice: its handler and the root's)
    name = re.match(r"Starting execution of Dataset (\S+)\.", starts[0]).group(1)
    assert (f"Execution plan of Dataset {name}: InputDataBuffer[Input] -> "
            "TaskPoolMapOperator[ReadRange->Map(<lambda>)] -> AllToAllOperator[Sort]") in messages
    assert any(re.fullmatch(rf"✔️  Dataset {name} execution finished in \d+\.\d\d seconds", m) for m in messages)


def test_stats_belong_to_each_derived_dataset(ray):
    """``stats()`` of a dataset shows its own executions, not a sibling's (a shared record
    also grew over a long-running driver's life)."""
    base = ray.data.range(4)
    base.map(lambda r: r).filter(lambda r: True).take_all()
    other = base.map_batches(lambda b: b)
    other.take_all()
    assert "Filter" not in other.stats() and "MapBatches" in other.stats()


def test_from_pandas_override_num_blocks(ray):
    """from_pandas(df, override_num_blocks=k) cuts the frame into k blocks of (almost)
    equal rows, as Ray documents; Ray 2.60 itself fails there with pandas 3
    (AttributeError: 'numpy.ndarray' object has no attribute 'columns', checked), so this
    lives with the Dask-only tests."""
    import pandas as pd

    ds = ray.data.from_pandas(pd.DataFrame({"a": range(10)}), override_num_blocks=3)
    assert ds.num_blocks() == 3
    assert [len(b["a"]) for b in ds.iter_batches(batch_size=None)] == [3, 3, 4]
    assert sorted(r["a"] for r in ds.take_all()) == list(range(10))
