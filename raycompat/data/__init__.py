"""raycompat.data: Ray Data's core API (``ray.data``) on Dask.

    import raycompat as ray

    ds = ray.data.range(1000).map_batches(lambda b: {"id": b["id"] * 2})
    print(ds.sum("id"))

A Dataset is a lazy plan over blocks (Arrow tables) held as raycompat ObjectRefs; each
block's read and row/batch operations run as one raycompat task, all-to-all operations
(sort, shuffle, groupby, repartition) as a map/reduce exchange of tables, callable
classes on a pool of raycompat actors. Needs pyarrow and pandas:
``pip install 'raycompat[data]'``.
"""

from __future__ import annotations

try:
    import pandas  # noqa: F401
    import pyarrow  # noqa: F401
except ImportError as e:  # pragma: no cover - depends on the environment
    raise ImportError(
        f"raycompat.data needs pyarrow and pandas ({e.name} is missing): "
        "pip install 'raycompat[data]'"
    ) from e

from raycompat.data import aggregate, datatype, expressions  # noqa: F401 - Ray's submodules
from raycompat.data._actor_pool import ActorPoolStrategy, TaskPoolStrategy
from raycompat.data.context import DataContext, DatasetContext, ExecutionOptions, ExecutionResources
from raycompat.data import grouped_data  # noqa: F401 - Ray's ray.data.grouped_data
from raycompat.data.dataset import Dataset, Schema
from raycompat.data.iterator import DataIterator
from raycompat.data.read_api import (
    from_arrow,
    from_arrow_refs,
    from_blocks,
    from_dask,
    from_items,
    from_numpy,
    from_numpy_refs,
    from_pandas,
    from_pandas_refs,
    range,
    range_tensor,
    read_binary_files,
    read_csv,
    read_images,
    read_json,
    read_numpy,
    read_parquet,
    read_text,
)

ActorPoolStrategy.__module__ = TaskPoolStrategy.__module__ = __name__

__all__ = [
    "ActorPoolStrategy",
    "DataContext",
    "DataIterator",
    "Dataset",
    "DatasetContext",
    "ExecutionOptions",
    "ExecutionResources",
    "Schema",
    "TaskPoolStrategy",
    "from_arrow",
    "from_arrow_refs",
    "from_blocks",
    "from_dask",
    "from_items",
    "from_numpy",
    "from_numpy_refs",
    "from_pandas",
    "from_pandas_refs",
    "range",
    "range_tensor",
    "read_binary_files",
    "read_csv",
    "read_images",
    "read_json",
    "read_numpy",
    "read_parquet",
    "read_text",
]
