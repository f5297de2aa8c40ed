"""Reads a Parquet file (as Hugging Face datasets publish them) with pyarrow.

Each table row becomes a dict (nested lists and structs as lists and dicts) and goes through
the same format detection and checks as a JSONL row (`rows.read`); a problem is located by
the row's number and index (`train.parquet:4: [3].output: missing`). pyarrow comes with
`datasets`, a dependency of gemma_tune.
"""

from __future__ import annotations

import functools
import io
from collections.abc import Callable

from gemma_tune.data import example, read_result, rows


def read_parquet(
    path: str,
    data: bytes,
    *,
    format: str = rows.AUTO,
    keep_context: bool = False,
    row_reader: Callable | None = None,
) -> read_result.ReadResult:
    """Reads and validates every row of a Parquet file's bytes; `row_reader`, when given,
    reads the rows in place of `rows.read` (see `jsonl.read_jsonl`).

    Raises:
      example.DataError: when pyarrow cannot read the file, or with every problem of the rows.
    """
    import pyarrow
    import pyarrow.parquet as parquet

    try:
        table = parquet.read_table(io.BytesIO(data))
    except (pyarrow.ArrowException, OSError) as error:
        problem = example.Problem(path, 1, "file", f"unreadable Parquet file: {error}")
        raise example.DataError([problem]) from None
    found = [rows.Row(index + 1, row, index=index) for index, row in enumerate(table.to_pylist())]
    if row_reader is None:
        row_reader = functools.partial(rows.read, format=format, keep_context=keep_context)
    return row_reader(path, found)
