"""Writing blocks to files (``write_parquet``/``write_csv``/``write_json``) and converting
blocks for ``to_numpy_refs``/``to_pandas_refs``, each one raycompat task per block.

Ray writes one file per block into the output directory, named
``{write uuid}_{block index:06}_{task index:06}-0.{ext}``; so does raycompat.
"""

from __future__ import annotations

import json
import os
import uuid

import numpy as np

import raycompat
from raycompat.data import _blocks


def _write_block(table, path, kind):
    if kind == "parquet":
        import pyarrow.parquet as pq

        pq.write_table(table, path)
    elif kind == "csv":
        import pyarrow.csv as pcsv

        pcsv.write_csv(table, path)
    else:
        with open(path, "w") as f:
            for row in _blocks.rows_of(table):
                f.write(json.dumps({k: v.tolist() if isinstance(v, np.ndarray) else v for k, v in row.items()}) + "\n")


_write_remote = raycompat.remote(_write_block)


def write(blocks, path: str, kind: str) -> None:
    os.makedirs(path, exist_ok=True)
    prefix = uuid.uuid4().hex
    name = {"parquet": "WriteParquet", "csv": "WriteCSV", "json": "WriteJSON"}[kind]
    refs = [
        _write_remote.options(name=name).remote(b.ref, os.path.join(path, f"{prefix}_{i:06d}_000000-0.{kind}"), kind)
        for i, b in enumerate(blocks)
    ]
    raycompat.get(refs)


def _convert(table, fmt, column=None):
    batch = _blocks.to_batch(table, fmt)
    return batch[column] if column is not None else batch


convert_remote = raycompat.remote(_convert)
