"""``DataType`` (Ray's ``ray.data.datatype``): a column type for expression UDFs' results.

Ray's ``DataType`` wraps an Arrow, numpy or Python type; raycompat keeps the Arrow type
(what every block holds) and offers Ray's factories (``DataType.int64()``,
``DataType.string()``, ``DataType.list(DataType.int64())``...) and conversions.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa

_FACTORIES = {
    "int8": pa.int8, "int16": pa.int16, "int32": pa.int32, "int64": pa.int64,
    "uint8": pa.uint8, "uint16": pa.uint16, "uint32": pa.uint32, "uint64": pa.uint64,
    "float16": pa.float16, "float32": pa.float32, "float64": pa.float64,
    "string": pa.string, "large_string": pa.large_string, "bool": pa.bool_, "binary": pa.binary,
    "null": pa.null,
}


class DataType:
    """An Arrow column type (Ray's ``DataType``)."""

    def __init__(self, arrow_type: pa.DataType):
        self._physical_dtype = arrow_type

    @classmethod
    def from_arrow(cls, arrow_type: pa.DataType) -> "DataType":
        return cls(arrow_type)

    @classmethod
    def from_numpy(cls, numpy_dtype) -> "DataType":
        return cls(pa.from_numpy_dtype(np.dtype(numpy_dtype)))

    @classmethod
    def infer_dtype(cls, value: Any) -> "DataType":
        return cls(pa.scalar(value).type)

    @classmethod
    def list(cls, value_type: "DataType") -> "DataType":
        return cls(pa.list_(value_type.to_arrow_dtype()))

    @classmethod
    def struct(cls, fields) -> "DataType":
        return cls(pa.struct([(name, t.to_arrow_dtype()) for name, t in fields]))

    def to_arrow_dtype(self, values=None) -> pa.DataType:
        return self._physical_dtype

    def to_numpy_dtype(self) -> np.dtype:
        return np.dtype(self._physical_dtype.to_pandas_dtype())

    def is_arrow_type(self) -> bool:
        return True

    def __repr__(self) -> str:
        return f"DataType(arrow:{self._physical_dtype})"

    def __eq__(self, other) -> bool:
        return isinstance(other, DataType) and self._physical_dtype == other._physical_dtype

    def __hash__(self) -> int:
        return hash(self._physical_dtype)


def _factory(make):
    return classmethod(lambda cls: cls(make()))


for _name, _make in _FACTORIES.items():
    setattr(DataType, _name, _factory(_make))

__all__ = ["DataType"]
