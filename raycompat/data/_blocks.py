"""Blocks and batches: Arrow tables as Ray Data's blocks, and the batch formats around them.

Ray Data stores each block as a ``pyarrow.Table`` (or a pandas frame) and hands user
functions *batches*: a dict of numpy arrays (``"default"``/``"numpy"``), a pandas
DataFrame (``"pandas"``) or an Arrow table (``"pyarrow"``). raycompat keeps every block
an Arrow table; pandas and numpy exist only at the user-function boundary. Columns of
multi-dimensional arrays are Arrow fixed-shape tensors (Ray's ``ArrowTensorType``), which
come back as numpy arrays of the same shape.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Optional

import numpy as np
import pyarrow as pa

from raycompat.data.context import DataContext

BATCH_FORMATS = ("default", "numpy", "pandas", "pyarrow")


def check_batch_format(batch_format) -> None:
    if batch_format not in BATCH_FORMATS and batch_format is not None:
        raise ValueError(
            f"The given batch format {batch_format} isn't allowed (must be one of "
            "['pandas', 'pyarrow', 'numpy', 'cudf', None])."
        )


@dataclasses.dataclass
class BlockMetadata:
    """What the driver knows of a block without fetching it (Ray's ``BlockMetadata``)."""

    num_rows: Optional[int]
    size_bytes: Optional[int]
    schema: Optional[pa.Schema]
    exec_seconds: float = 0.0


def metadata_of(table: pa.Table, exec_seconds: float = 0.0) -> BlockMetadata:
    return BlockMetadata(table.num_rows, table.nbytes, table.schema, exec_seconds)


def _is_tensor(t: pa.DataType) -> bool:
    return isinstance(t, pa.FixedShapeTensorType)


def column_to_numpy(col) -> np.ndarray:
    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks() if col.num_chunks != 1 else col.chunk(0)
    if _is_tensor(col.type):
        return col.to_numpy_ndarray()
    return col.to_numpy(zero_copy_only=False)


def array_from_numpy(values) -> pa.Array:
    """One column from a numpy array or a list: n-d arrays become fixed-shape tensors."""
    if isinstance(values, (pa.Array, pa.ChunkedArray)):
        return values
    if not isinstance(values, np.ndarray):
        values = list(values)
        if values and all(isinstance(v, np.ndarray) for v in values):
            shapes = {v.shape for v in values}
            if len(shapes) == 1 and values[0].ndim >= 1:
                return array_from_numpy(np.stack(values))
        return pa.array(values)
    if values.ndim > 1:
        if not values.flags.c_contiguous or len(values) == 1:
            # A fresh C-order copy: a length-1 axis added by ``[None]`` keeps a stride Arrow refuses.
            values = values.copy(order="C")
        return pa.FixedShapeTensorArray.from_numpy_ndarray(values)
    if values.dtype == object and len(values) and isinstance(values[0], np.ndarray):
        return array_from_numpy(list(values))
    return pa.array(values)


def table_from_columns(columns: dict) -> pa.Table:
    return pa.table({str(k): array_from_numpy(v) for k, v in columns.items()})


def table_from_rows(rows: list) -> pa.Table:
    """Dict rows to a table (rows may have their keys in any order)."""
    if not rows:
        return pa.table({})
    names = list(dict.fromkeys(k for r in rows for k in r))
    return table_from_columns({n: [r.get(n) for r in rows] for n in names})


def table_from_pandas(df) -> pa.Table:
    return pa.Table.from_pandas(df, preserve_index=False)


def arrow_backed_default() -> bool:
    """``DataContext.enable_arrow_backed_pandas_conversion`` (read in the driver; a stage
    carries the value to its tasks)."""
    return bool(DataContext.get_current().enable_arrow_backed_pandas_conversion)


def _arrow_backed_dtype(t: pa.DataType):
    """Ray's ``_arrow_backed_pandas_dtype``: standard Arrow types as ``pd.ArrowDtype``."""
    import pandas as pd

    if isinstance(t, pa.BaseExtensionType) or pa.types.is_dictionary(t) or pa.types.is_null(t):
        return None
    return pd.ArrowDtype(t)


def table_to_pandas(table: pa.Table, arrow_backed: Optional[bool] = None):
    """A block as a DataFrame, as Ray 2.60 converts it: Arrow-backed dtypes
    (``int64[pyarrow]``, ``string[pyarrow]``) unless the DataContext turns that off, or
    the block came from pandas (``from_pandas``/``from_dask``: Ray keeps those as pandas
    blocks; their schema carries pandas' metadata, which restores the frame's dtypes)."""
    if arrow_backed is None:
        arrow_backed = arrow_backed_default()
    if table.schema.metadata and b"pandas" in table.schema.metadata:
        arrow_backed = False
    df = table.to_pandas(types_mapper=_arrow_backed_dtype if arrow_backed else None).reset_index(drop=True)
    for name in table.column_names:
        if _is_tensor(table.schema.field(name).type):  # cells keep their shape, as in Ray
            df[name] = list(column_to_numpy(table.column(name)))
    return df


def to_batch(table: pa.Table, batch_format: Optional[str], arrow_backed: Optional[bool] = None):
    """A block (or slice) in the format a user function or consumer asked for."""
    if batch_format in ("default", "numpy"):
        return {name: column_to_numpy(table.column(name)) for name in table.column_names}
    if batch_format == "pandas":
        return table_to_pandas(table, arrow_backed)
    check_batch_format(batch_format)
    return table


def batch_to_table(batch: Any) -> pa.Table:
    """A ``map_batches`` output as a block, with Ray's errors for what it refuses."""
    import pandas as pd

    if isinstance(batch, pa.Table):
        return batch
    if isinstance(batch, pd.DataFrame):
        # Ray 2.60 turns a UDF's DataFrame into an Arrow block (batch_to_block_arrow_format):
        # no pandas metadata, so the next pandas batch is Arrow-backed again.
        batch = batch.reset_index(drop=True)
        tensors = [c for c in batch.columns if batch[c].dtype == object and len(batch)
                   and isinstance(batch[c].iloc[0], np.ndarray) and batch[c].iloc[0].ndim >= 1]
        if tensors:  # a column of equal-shape arrays goes back to a tensor column, as in Ray
            return pa.table({str(c): array_from_numpy(list(batch[c])) if c in tensors else pa.array(batch[c])
                             for c in batch.columns})
        return table_from_pandas(batch).replace_schema_metadata(None)
    if isinstance(batch, dict):
        for key, value in batch.items():
            if not isinstance(value, (np.ndarray, list, pa.Array, pa.ChunkedArray, pd.Series)):
                raise ValueError(
                    f"Error validating {_short(batch)}: The `fn` you passed to `map_batches` "
                    f"returned a `dict`. `map_batches` expects all `dict` values to be `list` "
                    f"or `np.ndarray` type, but the value corresponding to key {key!r} is of "
                    f"type {type(value)}. To fix this issue, convert the {type(value)} to a "
                    "`np.ndarray`."
                )
        lengths = {len(v) for v in batch.values()}
        if len(lengths) > 1:
            raise ValueError(f"Error validating {_short(batch)}: all columns must have the same length")
        return table_from_columns(
            {k: v.to_numpy() if isinstance(v, pd.Series) else v for k, v in batch.items()}
        )
    if isinstance(batch, list):
        raise ValueError(
            f"Error validating {_short(batch)}: Returning a list of objects from `map_batches` is "
            "not allowed in Ray 2.5. To return Python objects, wrap them in a named dict field, "
            "e.g., return `{'results': objects}` instead of just `objects`."
        )
    raise ValueError(
        f"Error validating {_short(batch)}: The `fn` you passed to `map_batches` returned a "
        f"value of type {type(batch)}. This isn't allowed -- `map_batches` expects `fn` to "
        "return a `pandas.DataFrame`, `pyarrow.Table`, `numpy.ndarray`, `list`, or "
        "`dict[str, numpy.ndarray]`."
    )


def check_row(row: Any, op: str = "map") -> dict:
    if not isinstance(row, dict):
        raise ValueError(
            f"Error validating {_short(row)}: Standalone Python objects are not allowed in Ray "
            f">= 2.5. To return Python objects from {op}(), wrap them in a dict, e.g., return "
            "`{'item': item}` instead of just `item`."
        )
    return row


def _short(value) -> str:
    text = str(value)
    return text if len(text) <= 200 else text[:200] + "..."


def rows_of(table: pa.Table) -> list:
    """The table's rows as dicts: Python scalars, tensor cells as numpy arrays."""
    tensors = [n for n, t in zip(table.column_names, table.schema.types) if _is_tensor(t)]
    if not tensors:
        return table.to_pylist()
    plain = table.drop_columns(tensors).to_pylist() if len(tensors) < table.num_columns else [
        {} for _ in range(table.num_rows)
    ]
    arrays = {n: column_to_numpy(table.column(n)) for n in tensors}
    rows = []
    for i, base in enumerate(plain):
        row = {}
        for name in table.column_names:
            row[name] = arrays[name][i] if name in arrays else base[name]
        rows.append(row)
    return rows


def concat(tables: list) -> pa.Table:
    """The tables' rows in order; tables without rows add nothing (not even columns)."""
    tables = [t for t in tables if t is not None]
    non_empty = [t for t in tables if t.num_columns and t.num_rows]
    if not non_empty:
        with_columns = [t for t in tables if t.num_columns]
        return with_columns[0] if with_columns else pa.table({})
    if len(non_empty) == 1:
        return non_empty[0]
    return pa.concat_tables(non_empty, promote_options="default")
