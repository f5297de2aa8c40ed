"""What kind of file a data path is, told by its first bytes rather than trusted from its name.

A Parquet file named `.jsonl`, a gzipped JSONL or a folder saved by `datasets` would otherwise
be read as text and fail as "invalid UTF-8". `read` looks at the magic bytes first:

  gzip, bzip2, xz         decompressed in memory, then read as the file inside
                          (`train.jsonl.gz` -> `train.jsonl`)
  zip, zstd, 7z           refused: "compressed files (zip) are not supported"
  Parquet (`PAR1`)        `parquet.read_parquet`
  UTF-16 text             refused: "save the file as UTF-8" (spreadsheets export it)
  a `save_to_disk` folder `hf_disk.read_saved`
  text                    CSV for a `.csv` name or `format="csv"`; a JSON array when it starts
                          with `[`; otherwise JSONL
"""

from __future__ import annotations

import bz2
import functools
import gzip
import lzma
import os
from collections.abc import Callable

from gemma_tune.data import (
    csv_rows,
    example,
    hf_disk,
    json_array,
    jsonl,
    parquet,
    read_result,
    rows,
)

CSV = "csv"

_DECOMPRESSORS = {
    b"\x1f\x8b": ("gzip", gzip.decompress, ".gz"),
    b"BZh": ("bzip2", bz2.decompress, ".bz2"),
    b"\xfd7zXZ\x00": ("xz", lzma.decompress, ".xz"),
}
_UNSUPPORTED = {
    b"PK\x03\x04": "zip",
    b"\x28\xb5\x2f\xfd": "zstd",
    b"7z\xbc\xaf\x27\x1c": "7z",
    b"ARROW1": "Arrow IPC",
}
PARQUET_MAGIC = b"PAR1"


def kind(data: bytes) -> str:
    """The kind of file `data` starts like: a compression's name, "parquet" or "text"."""
    for magic, (name, _, _) in _DECOMPRESSORS.items():
        if data.startswith(magic):
            return name
    for magic, name in _UNSUPPORTED.items():
        if data.startswith(magic):
            return name
    return "parquet" if data.startswith(PARQUET_MAGIC) else "text"


def _fail(path: str, reason: str) -> example.DataError:
    return example.DataError([example.Problem(path, 1, "file", reason)])


def read(
    path: str | os.PathLike,
    *,
    format: str = rows.AUTO,
    split: str = "train",
    keep_context: bool = False,
    csv_columns: dict[str, str] | None = None,
    row_reader: Callable | None = None,
) -> read_result.ReadResult:
    """Reads a local data file or saved dataset folder, whatever its kind.

    Args:
      path: the file or folder.
      format: "auto", "csv", or one of `row_formats.NAMES`.
      split: for a saved `DatasetDict` folder, the split to read.
      keep_context: for Dolly rows, keep rows with a context.
      csv_columns: keyword arguments of `csv_rows.read_csv` (the column names).
      row_reader: `(path, rows, problems=, rows_read=) -> result` reading the file's rows in
        place of the supervised formats' `rows.read` (the preference reader passes its own);
        with it, a CSV file's rows are its cells by column name (`csv_rows.dict_rows`), and
        `format` only says "auto" or "csv".

    Raises:
      ValueError: for an unknown format, or a folder that is not a saved dataset.
      example.DataError: for a file that cannot be read, or with every problem of its rows.
    """
    path = os.fspath(path)
    supervised = row_reader is None
    if format != CSV and supervised:
        rows.check_format(format)
    if supervised:
        row_reader = functools.partial(rows.read, format=format, keep_context=keep_context)
    if os.path.isdir(path):
        return hf_disk.read_saved(path, split=split, row_reader=row_reader)
    with open(path, "rb") as file:
        data = file.read()
    name = path
    file_kind = kind(data)
    if file_kind in {compression for compression, _, _ in _DECOMPRESSORS.values()}:
        _, decompress, suffix = next(v for v in _DECOMPRESSORS.values() if v[0] == file_kind)
        try:
            data = decompress(data)
        except (OSError, EOFError, lzma.LZMAError) as error:
            raise _fail(path, f"a {file_kind} file that cannot be decompressed: {error}") from None
        name = path.removesuffix(suffix).removesuffix(suffix.upper())
        file_kind = kind(data)
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise _fail(path, "UTF-16 text is not supported; save the file as UTF-8")
    if file_kind not in ("text", "parquet"):
        raise _fail(
            path,
            f"compressed files ({file_kind}) are not supported; decompress it first "
            "(gzip, bzip2 and xz files are read as they are)",
        )
    if file_kind == "parquet":
        if format == CSV:
            raise _fail(path, "a Parquet file, not CSV; leave data.format at auto")
        return parquet.read_parquet(path, data, row_reader=row_reader)
    if format == CSV or (format == rows.AUTO and name.lower().endswith(".csv")):
        if supervised:
            return csv_rows.read_csv(path, data=data, **(csv_columns or {}))
        found, problems = csv_rows.dict_rows(path, data)
        return row_reader(path, found, problems=problems)
    if json_array.is_array(data) and not name.lower().endswith(".jsonl"):
        found, problems = json_array.parse_array(path, data)
        return row_reader(path, found, problems=problems)
    return jsonl.read_jsonl(path, data=data, row_reader=row_reader)
