"""Creating Datasets (Ray's ``ray.data.read_api``): ``range``, ``from_*`` and ``read_*``.

``range``/``range_tensor`` and the file readers are lazy: one read task per block (a
range slice, a file), run when the Dataset is consumed, fused with the operations after
it. ``from_items``/``from_pandas``/``from_numpy``/``from_arrow`` put their blocks into the
object store at once and return a ``MaterializedDataset``, as Ray does. Files are read with
pyarrow (Parquet, CSV, JSON lines), numpy, Pillow (images) or plain Python (text,
binary); ``from_*_refs`` convert ObjectRefs in one task each.
"""

from __future__ import annotations

import builtins
from typing import Optional

import numpy as np
import pyarrow as pa

import raycompat
from raycompat._dask import data_bridge
from raycompat.data import _blocks, _files
from raycompat.data import _execution as ex
from raycompat.data._ignored import warn_ignored
from raycompat.data.dataset import Dataset, MaterializedDataset
from raycompat.data.context import DataContext


def _num_blocks(n_rows: int, override_num_blocks: Optional[int], nbytes: Optional[int] = None) -> int:
    """Ray's default block count: for a source of known size (``range``) Ray's
    ``_autodetect_parallelism``, ``max(min(200, size / 1 MiB), size / 128 MiB, 2 x CPUs)``;
    otherwise ``min(200, 2 x CPUs)`` (Ray's 200 alone would cut small inputs into blocks
    that cost more to schedule than to compute). Never more blocks than rows."""
    if override_num_blocks is not None:
        return max(1, override_num_blocks)
    ctx = DataContext.get_current()
    cpus = 2 * ex.cluster_cpus()
    if nbytes is None:
        k = min(200, cpus)
    else:
        k = max(min(ctx.read_op_min_num_blocks, max(1, nbytes // ctx.target_min_block_size)),
                nbytes // ctx.target_max_block_size, cpus)
    return max(1, min(n_rows, int(k)))


def _bounds(n: int, k: int) -> list:
    edges = np.linspace(0, n, k + 1).astype(int)
    return [(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:])]


def _range_bounds(n: int, k: int) -> list:
    """Ray's range read tasks: ``n // k`` rows each, the remainder in one more."""
    size = max(1, n // k)
    return [(a, min(a + size, n)) for a in builtins.range(0, n, size)]


class _RangeRead:
    def __init__(self, start, stop, shape=None):
        self.start, self.stop, self.shape = start, stop, shape
        self.num_rows = stop - start

    def __call__(self):
        ids = np.arange(self.start, self.stop, dtype=np.int64)
        if self.shape is None:
            return pa.table({"id": ids})
        data = np.ones((len(ids),) + tuple(self.shape), dtype=np.int64) * ids.reshape(
            (-1,) + (1,) * len(self.shape)
        )
        return _blocks.table_from_columns({"data": data})


def range(n: int, *, parallelism: int = -1, concurrency=None, override_num_blocks=None) -> Dataset:
    """Rows ``{"id": i}`` for ``i`` in ``[0, n)`` (int64), read lazily in blocks."""
    k = _num_blocks(n, override_num_blocks, 8 * n)
    tasks = [_RangeRead(a, b) for a, b in _range_bounds(n, k)]
    # Ray knows no schema for range(0) (its repr says "Unknown schema").
    schema = pa.schema([("id", pa.int64())]) if n > 0 else None
    return Dataset(ex.ReadSource("ReadRange", tasks, schema, n))


def range_tensor(n: int, *, shape=(1,), parallelism: int = -1, concurrency=None, override_num_blocks=None) -> Dataset:
    """Rows ``{"data": array of shape, all i}`` for ``i`` in ``[0, n)``."""
    k = _num_blocks(n, override_num_blocks, 8 * n * int(np.prod(shape)))
    tasks = [_RangeRead(a, b, tuple(shape)) for a, b in _range_bounds(n, k)]
    schema = pa.schema([("data", pa.fixed_shape_tensor(pa.int64(), list(shape)))])
    return Dataset(ex.ReadSource("ReadRange", tasks, schema, n))


def _materialized(tables) -> MaterializedDataset:
    return MaterializedDataset(ex.RefSource([ex.put_block(t) for t in tables]))


def from_items(items: list, *, parallelism: int = -1, override_num_blocks=None) -> MaterializedDataset:
    """Dict items become rows; other items become ``{"item": x}``."""
    if not isinstance(items, list):
        raise TypeError(f"Argument `items` must be a list, got {type(items)}.")
    k = _num_blocks(len(items), override_num_blocks)
    tables = []
    for a, b in _bounds(len(items), k):
        if b <= a:
            continue
        chunk = items[a:b]
        rows = [it if isinstance(it, dict) else {"item": it} for it in chunk]
        tables.append(_blocks.table_from_rows(rows))
    return _materialized(tables)


def from_blocks(blocks: list) -> MaterializedDataset:
    """Each block (an Arrow table or a pandas DataFrame) as one block, unchanged in number."""
    return _materialized([b if isinstance(b, pa.Table) else _blocks.table_from_pandas(b.reset_index(drop=True)) for b in blocks])


def from_pandas(dfs, override_num_blocks=None) -> MaterializedDataset:
    """One block per DataFrame (its index dropped); ``override_num_blocks`` cuts them into
    that many blocks of (almost) equal rows, as Ray does."""
    import pandas as pd

    dfs = [dfs] if isinstance(dfs, pd.DataFrame) else list(dfs)
    if override_num_blocks is not None and dfs:
        whole = pd.concat(dfs, ignore_index=True) if len(dfs) > 1 else dfs[0]
        edges = np.linspace(0, len(whole), max(1, override_num_blocks) + 1).astype(int)
        dfs = [whole.iloc[a:b] for a, b in zip(edges[:-1], edges[1:])]
    return _materialized([_blocks.table_from_pandas(df.reset_index(drop=True)) for df in dfs])


def from_numpy(ndarrays) -> MaterializedDataset:
    """One block per array, in column ``"data"`` (rows of n-d arrays are tensors)."""
    arrays = [ndarrays] if isinstance(ndarrays, np.ndarray) else list(ndarrays)
    return _materialized([_blocks.table_from_columns({"data": a}) for a in arrays])


def from_arrow(tables) -> MaterializedDataset:
    tables = [tables] if isinstance(tables, (pa.Table, bytes)) else list(tables)
    return _materialized(tables)


def from_dask(df) -> MaterializedDataset:
    """A ``dask.dataframe`` as a Dataset: one block per partition, computed now on the
    cluster (as Ray's ``from_dask`` does), converted to Arrow next to it."""
    pairs = data_bridge.partitions_as_refs(df, _blocks.metadata_of)
    return MaterializedDataset(ex.RefSource([ex.BlockRef(t, m) for t, m in pairs]))


# Files ---------------------------------------------------------------------------------
def _read(name, paths, kind, include_paths=False, suffixes=None, **options) -> Dataset:
    files = _files.expand(paths, suffixes)
    tasks = [_files.FileRead(f, kind, include_paths, options) for f in files]
    return Dataset(ex.ReadSource(name, tasks))


def read_parquet(paths, *, columns=None, include_paths=False, **kwargs) -> Dataset:
    """One block per Parquet file; the row count and schema come from the files' footers,
    read here as Ray reads them before running anything."""
    warn_ignored("read_parquet", kwargs)
    opts = {"columns": columns} if columns is not None else {}
    ds = _read("ReadParquet", paths, "parquet", include_paths, (".parquet",), **opts)
    source = ds._node
    schema, rows = _files.parquet_footer([t.path for t in source.read_tasks], columns, include_paths)
    source.schema, source.num_rows = schema, rows
    source.rows_hidden_in_repr = True  # Ray's repr says "shape: (?, n)" before reading
    return ds


def read_csv(paths, *, include_paths=False, **arrow_csv_args) -> Dataset:
    return _read("ReadCSV", paths, "csv", include_paths, (".csv",), **_arrow_opts(arrow_csv_args, "read_csv"))


def read_json(paths, *, include_paths=False, lines=None, **arrow_json_args) -> Dataset:
    """JSON lines files (one object per line)."""
    return _read("ReadJSON", paths, "json", include_paths, (".json", ".jsonl"), **_arrow_opts(arrow_json_args, "read_json"))


def _arrow_opts(kw: dict, api: str) -> dict:
    allowed = {"read_options", "parse_options", "convert_options"}
    warn_ignored(api, {k: v for k, v in kw.items() if k not in allowed})
    return {k: v for k, v in kw.items() if k in allowed}


def read_text(paths, *, encoding: str = "utf-8", drop_empty_lines: bool = True, include_paths=False, **kwargs) -> Dataset:
    """One row per line, column ``"text"``."""
    warn_ignored("read_text", kwargs)
    return _read("ReadText", paths, "text", include_paths, None, encoding=encoding, drop_empty_lines=drop_empty_lines)


def read_binary_files(paths, *, include_paths: bool = False, **kwargs) -> Dataset:
    """One row per file, column ``"bytes"`` (and ``"path"`` with ``include_paths``)."""
    warn_ignored("read_binary_files", kwargs)
    return _read("ReadBinary", paths, "binary", include_paths)


def read_numpy(paths, *, include_paths: bool = False, **kwargs) -> Dataset:
    """``.npy`` files, one row per first-axis entry, column ``"data"``."""
    warn_ignored("read_numpy", kwargs)
    return _read("ReadNumpy", paths, "numpy", include_paths, (".npy",))


def read_images(paths, *, size=None, mode=None, include_paths: bool = False, **kwargs) -> Dataset:
    """One row per image file, column ``"image"`` (an ``H x W x C`` uint8 array), resized to
    ``size=(height, width)`` and converted to Pillow ``mode`` when given. Needs Pillow."""
    warn_ignored("read_images", kwargs)
    return _read("ReadImage", paths, "image", include_paths,
                 (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".gif"), size=size, mode=mode)


# Object refs -------------------------------------------------------------------------------
def _refs(refs) -> list:
    return list(refs) if isinstance(refs, (list, tuple)) else [refs]


def _as_block(value):
    import pandas as pd

    if isinstance(value, pd.DataFrame):
        table = _blocks.table_from_pandas(value.reset_index(drop=True))
    elif isinstance(value, np.ndarray):
        table = _blocks.table_from_columns({"data": value})
    elif isinstance(value, pa.Table):
        table = value
    else:
        raise TypeError(f"Expected a pandas DataFrame, a numpy ndarray or a pyarrow Table, got {type(value)}")
    return ex.timed(lambda: table)


_as_block_remote = raycompat.remote(num_returns=2)(_as_block)


def _from_refs(refs) -> MaterializedDataset:
    blocks = []
    for ref in _refs(refs):
        table_ref, meta_ref = _as_block_remote.options(name="FromRefs").remote(ref)
        blocks.append(ex.BlockRef(table_ref, meta_ref))
    return MaterializedDataset(ex.RefSource(blocks))


def from_pandas_refs(dfs) -> MaterializedDataset:
    """ObjectRefs of pandas DataFrames as blocks (converted to Arrow in a task each)."""
    return _from_refs(dfs)


def from_numpy_refs(ndarrays) -> MaterializedDataset:
    """ObjectRefs of numpy arrays as blocks, column ``"data"``."""
    return _from_refs(ndarrays)


def from_arrow_refs(tables) -> MaterializedDataset:
    """ObjectRefs of Arrow tables as blocks."""
    return _from_refs(tables)


__all__ = [
    "from_arrow", "from_arrow_refs", "from_blocks", "from_dask", "from_items", "from_numpy", "from_numpy_refs",
    "from_pandas", "from_pandas_refs", "range", "range_tensor", "read_binary_files", "read_csv",
    "read_images", "read_json", "read_numpy", "read_parquet", "read_text",
]
