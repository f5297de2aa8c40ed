"""Reads a local JSONL file, in any of the `row_formats`, into Examples.

Each non-blank line is one JSON object; a line that is not valid UTF-8 or JSON is a problem
located by its line (unless the whole file is a stream of pretty-printed objects, which are
read as rows), and the objects go to `rows.read`, which detects the format, names
refused kinds of data, collects every problem and warns about unused keys. Users fix their
file in one pass instead of one error per run.
"""

from __future__ import annotations

import codecs
import functools
import json
import os
from collections.abc import Callable

from gemma_tune.data import example, json_array, read_result, rows

AUTO = rows.AUTO


def parse_lines(path: str, data: bytes) -> tuple[list[rows.Row], list[example.Problem], int]:
    """Splits JSONL bytes into rows.

    Returns:
      `(rows, problems, rows_read)`: the decoded rows with their line numbers, the lines that
      are not UTF-8 or JSON, and how many non-blank lines there are.
    """
    found, problems, rows_read = [], [], 0
    for number, raw in enumerate(data.split(b"\n"), start=1):
        if number == 1:
            raw = raw.removeprefix(codecs.BOM_UTF8)
        if not raw.strip():
            continue
        rows_read += 1
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as error:
            reason = f"invalid UTF-8 at byte {error.start + 1} of the line"
            problems.append(example.Problem(path, number, "line", reason))
            continue
        try:
            found.append(rows.Row(number, json.loads(text)))
        except json.JSONDecodeError as error:
            reason = f"invalid JSON: {error.msg} (column {error.colno})"
            problems.append(example.Problem(path, number, "line", reason))
    return found, problems, rows_read


def read_jsonl(
    path: str | os.PathLike,
    *,
    format: str = AUTO,
    keep_context: bool = False,
    data: bytes | None = None,
    row_reader: Callable | None = None,
) -> read_result.ReadResult:
    """Reads and validates every row of a JSONL file.

    Args:
      path: the local file; blank lines are skipped.
      format: "auto" to detect the format, or one of `row_formats.NAMES` to force it.
      keep_context: for Dolly rows, keep rows with a context in `Example.context` (True) or
        skip them and count them under "has context" (False), as Google's Gemma LoRA
        tutorial does.
      data: the file's bytes when already read (e.g. decompressed); None reads `path`.
      row_reader: `(path, rows, problems=, rows_read=) -> result` reading the decoded rows
        in place of `rows.read` with `format` (the preference reader passes its own).

    Returns:
      The examples, each with `source="path:line"`, the rows skipped by reason and a warning
      per unused key.

    Raises:
      ValueError: for an unknown `format`.
      example.DataError: with every problem found, each with its 1-based line and field.
    """
    rows.check_format(format)
    path = os.fspath(path)
    if data is None:
        with open(path, "rb") as file:
            data = file.read()
    found, problems, rows_read = parse_lines(path, data)
    if any(problem.reason.startswith("invalid JSON") for problem in problems):
        # Pretty-printed objects are not JSONL, but they are rows: read them as a stream.
        stream = json_array.parse_stream(path, data)
        if stream is not None:
            found, problems, rows_read = stream, [], len(stream)
    if row_reader is None:
        row_reader = functools.partial(rows.read, format=format, keep_context=keep_context)
    return row_reader(path, found, problems=problems, rows_read=rows_read)
