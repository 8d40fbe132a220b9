"""Hugging Face `datasets` files as inputs: Arrow (`save_to_disk`, the Graph200K release) and Parquet
(the Hub's layout, `graph200k export --format parquet`).

Planning needs each file's row count, its columns and, when it has a `__key__`
column, the keys; ingest needs rows [start, stop) as Python values with image
cells left undecoded (`{"bytes", "path"}` dicts, as `datasets.Image(decode=False)`
gives them). Both are read with pyarrow alone: an Arrow file memory-mapped
(`datasets` writes the IPC stream format), a Parquet file by the row groups
that hold the rows asked for, so a shard of a large file reads only its part.

A folder is searched recursively; a `save_to_disk` folder (one with
`state.json`) contributes only the data files its state names, not the
`cache-*.arrow` files that `.map()` leaves beside them.
"""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa

TABLE_SUFFIXES = (".arrow", ".parquet")
KEY_COLUMN = "__key__"  # the sample key (Hugging Face's webdataset loader, `graph200k export`)


class TableError(Exception):
    """A table file cannot be read; the message says which and why."""


def is_table(path: Path) -> bool:
    return path.suffix in TABLE_SUFFIXES


def table_files(folder: Path) -> list[Path]:
    """The Arrow and Parquet data files under `folder`, sorted by path."""
    files = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and is_table(p)):
        state = path.parent / "state.json"
        if path.suffix == ".arrow" and state.is_file():
            try:
                named = {f["filename"] for f in json.loads(state.read_text(encoding="utf-8"))["_data_files"]}
            except (OSError, ValueError, KeyError, TypeError):
                named = None
            if named is not None and path.name not in named:
                continue
        files.append(path)
    return files


def _arrow_table(path: Path) -> pa.Table:
    source = pa.memory_map(str(path))
    try:
        return pa.ipc.open_stream(source).read_all()
    except pa.ArrowInvalid:
        return pa.ipc.open_file(source).read_all()


def _what(path: Path) -> str:
    return f"{'Parquet' if path.suffix == '.parquet' else 'Arrow'} file {str(path)!r}"


def schema(path: Path) -> pa.Schema:
    try:
        if path.suffix == ".parquet":
            import pyarrow.parquet as pq

            return pq.ParquetFile(path).schema_arrow
        return _arrow_table(path).schema
    except (OSError, pa.ArrowException) as err:
        raise TableError(f"{_what(path)} cannot be read: {err}") from None


def num_rows(path: Path) -> int:
    try:
        if path.suffix == ".parquet":
            import pyarrow.parquet as pq

            return pq.ParquetFile(path).metadata.num_rows
        return _arrow_table(path).num_rows
    except (OSError, pa.ArrowException) as err:
        raise TableError(f"{_what(path)} cannot be read: {err}") from None


def read_column(path: Path, column: str) -> list:
    """One column's values, in row order."""
    try:
        if path.suffix == ".parquet":
            import pyarrow.parquet as pq

            return pq.read_table(path, columns=[column]).column(column).to_pylist()
        return _arrow_table(path).column(column).to_pylist()
    except (OSError, pa.ArrowException, KeyError) as err:
        raise TableError(f"{_what(path)} cannot be read: {err}") from None


def read_rows(path: Path, start: int, stop: int) -> list[dict]:
    """Rows [start, stop) as dicts of Python values (image cells: `{"bytes", "path"}`)."""
    if path.suffix != ".parquet":
        return _arrow_table(path).slice(start, stop - start).to_pylist()
    import pyarrow.parquet as pq

    parquet = pq.ParquetFile(path)
    groups, offset, first = [], 0, None
    for i in range(parquet.metadata.num_row_groups):
        rows = parquet.metadata.row_group(i).num_rows
        if offset < stop and offset + rows > start:
            groups.append(i)
            first = offset if first is None else first
        offset += rows
    if not groups:
        return []
    table = parquet.read_row_groups(groups)
    return table.slice(start - first, stop - start).to_pylist()


def holds_images(kind: pa.DataType) -> bool:
    """A column type whose cells are image files: `datasets.Image()` (struct of bytes and path) or bytes."""
    if pa.types.is_struct(kind):
        names = {kind.field(i).name for i in range(kind.num_fields)}
        return {"bytes", "path"} <= names
    return pa.types.is_binary(kind) or pa.types.is_large_binary(kind)


def holds_text(kind: pa.DataType) -> bool:
    return pa.types.is_string(kind) or pa.types.is_large_string(kind)
