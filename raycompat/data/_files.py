"""Files: reading one file per block (``read_*``), writing one file per block
(``write_*``), and converting blocks for ``to_numpy_refs``/``to_pandas_refs``.

Ray lists the input files in the driver and reads each in a task; it writes one file per
block into the output directory, named ``{write uuid}_{block index:06}_{task index:06}-0.{ext}``;
so does raycompat. Directories are walked recursively, skipping hidden and ``_`` files.
"""

from __future__ import annotations

import glob
import json
import os
import uuid
from typing import List

import numpy as np
import pyarrow as pa

import raycompat
from raycompat.data import _blocks
from raycompat.data import _execution as ex


def expand(paths, suffixes=None) -> List[str]:
    """The files to read, as Ray lists them: a directory's files recursively, sorted within
    each directory, skipping any path under it with a part starting with ``.`` or ``_``
    (``.ipynb_checkpoints/``, ``_temporary/``); given paths keep their order."""
    paths = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    files = []
    for p in map(os.fspath, paths):
        if os.path.isdir(p):
            for root, dirs, names in os.walk(p):
                dirs[:] = sorted(d for d in dirs if not d.startswith((".", "_")))
                files.extend(os.path.join(root, name) for name in sorted(names) if not name.startswith((".", "_")))
        elif any(ch in p for ch in "*?["):
            files.extend(sorted(glob.glob(p)))
        elif os.path.exists(p):
            files.append(p)
        else:
            raise FileNotFoundError(f"No such file or directory: '{p}'")
    if suffixes:
        wanted = tuple(suffixes) + tuple(f"{x}.{c}" for x in suffixes for c in _COMPRESSED)
        files = [f for f in files if f.endswith(wanted)] or files
    return files


#: Compressed forms of a format's extension that Ray's readers also take (``.csv.gz``).
_COMPRESSED = ("gz", "br", "zst", "lz4", "bz2", "snappy")


class FileRead:
    """Reads one file as one block (a read task)."""

    def __init__(self, path, kind, include_paths=False, options=None):
        self.path, self.kind, self.include_paths, self.options = path, kind, include_paths, options or {}

    def __call__(self):
        if self.kind == "parquet":
            import pyarrow.parquet as pq

            table = pq.read_table(self.path, **self.options)
        elif self.kind == "csv":
            import pyarrow.csv as pcsv

            table = pcsv.read_csv(self.path, **self.options)
        elif self.kind == "json":
            import pyarrow.json as pjson

            try:
                table = pjson.read_json(self.path, **self.options)
            except pa.ArrowInvalid:
                # Ray falls back to json.load, which reads a file holding one JSON array
                # of objects (or one object) that pyarrow's JSON-lines reader refuses.
                with open(self.path, "rb") as f:
                    parsed = json.load(f)
                table = pa.Table.from_pylist(parsed if isinstance(parsed, list) else [parsed])
        elif self.kind == "text":
            with open(self.path, encoding=self.options.get("encoding", "utf-8")) as f:
                lines = f.read().splitlines()
            if self.options.get("drop_empty_lines", True):
                lines = [ln for ln in lines if ln.strip()]
            table = pa.table({"text": pa.array(lines, type=pa.string())})
        elif self.kind == "numpy":
            table = _blocks.table_from_columns({"data": np.load(self.path, allow_pickle=False)})
        elif self.kind == "image":
            table = _blocks.table_from_columns({"image": _image(self.path, **self.options)[None]})
        else:
            with open(self.path, "rb") as f:
                table = pa.table({"bytes": pa.array([f.read()], type=pa.binary())})
        if self.include_paths:
            table = table.append_column("path", pa.array([self.path] * table.num_rows, type=pa.string()))
        return table


def _image(path, size=None, mode=None) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as img:
        if mode is not None:
            img = img.convert(mode)
        if size is not None:
            img = img.resize((size[1], size[0]))
        return np.asarray(img)


def parquet_footer(paths, columns=None, include_paths=False):
    """The files' schema (the first file's) and total row count, from their footers."""
    import pyarrow.parquet as pq

    if not paths:
        return None, 0
    rows = 0
    for p in paths:
        rows += pq.read_metadata(p).num_rows
    schema = pq.read_schema(paths[0])
    schema = pa.schema([f for f in schema if not f.name.startswith("__index_level_")])
    if columns is not None:
        schema = pa.schema([schema.field(c) for c in columns])
    if include_paths:
        schema = schema.append(pa.field("path", pa.string()))
    return schema, rows


def _write_block(table, path, kind):
    if kind == "parquet":
        import pyarrow.parquet as pq

        pq.write_table(table, path)
    elif kind == "csv":
        import pyarrow.csv as pcsv

        pcsv.write_csv(table, path)
    else:  # Ray writes JSON lines through pandas (dates, decimals, bytes, NaN as null)
        _blocks.table_to_pandas(table, False).to_json(path, orient="records", lines=True)


_write_remote = raycompat.remote(_write_block)


def write(blocks, path: str, kind: str) -> None:
    os.makedirs(path, exist_ok=True)
    prefix = uuid.uuid4().hex
    name = {"parquet": "WriteParquet", "csv": "WriteCSV", "json": "WriteJSON"}[kind]
    blocks = [b for b, m in zip(blocks, ex.metas(blocks)) if m.num_rows]  # Ray writes no empty files
    refs = [
        _write_remote.options(name=name).remote(b.ref, os.path.join(path, f"{prefix}_{i:06d}_000000-0.{kind}"), kind)
        for i, b in enumerate(blocks)
    ]
    raycompat.get(refs)


def _convert(table, fmt, column=None, arrow_backed=None):
    batch = _blocks.to_batch(table, fmt, arrow_backed)
    return batch[column] if column is not None else batch


convert_remote = raycompat.remote(_convert)
