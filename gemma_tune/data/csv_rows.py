"""Reads a CSV file of input/output pairs (e.g. Q&A exported from a chat) into Examples.

The columns are configurable; besides the required input and output columns a row can carry a
retrieved passage (`context_column`) and a system prompt (`system_column`). A column named
`image` or `image_path` (`IMAGE_COLUMNS`) holds an image for the user's message: a path,
relative to the CSV file's folder unless absolute; a blank cell means none. A missing column is
one error naming the columns the file has; empty required cells and unreadable images are
problems located by the physical line where their row starts (a quoted cell can span lines)
and the column's name.
"""

from __future__ import annotations

import codecs
import csv
import io
import os
import sys

from gemma_tune.data import example, images, read_result, rows

IMAGE_COLUMNS = ("image", "image_path")


def read_csv(
    path: str | os.PathLike,
    *,
    input_column: str = "input",
    output_column: str = "output",
    context_column: str = "",
    system_column: str = "",
    data: bytes | None = None,
) -> read_result.ReadResult:
    """Reads and validates every row of a CSV file with a header row; a cell may be of any
    size (Python's `csv` module stops at 128 KiB unless told otherwise).

    Args:
      path: the local file (UTF-8, an optional byte-order mark is ignored).
      input_column: the column holding the user's message.
      output_column: the column holding the model's reply.
      context_column: an optional column with a passage for the prompt ("" = none); blank
        cells mean no context.
      system_column: an optional column with a system prompt ("" = none); blank cells mean
        no system prompt.
      data: the file's bytes when already read (e.g. decompressed); None reads `path`.

    Returns:
      The examples, each with `source="path:line"`, and a warning per column not read.

    Raises:
      example.DataError: for a missing column, or with every problem of the rows.
    """
    path = os.fspath(path)
    if data is None:
        with open(path, "rb") as file:
            data = file.read()
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))  # Any cell the file holds.
    problems = [
        example.Problem(path, number, "line", f"invalid UTF-8 at byte {error.start + 1}")
        for number, error in _utf8_errors(data)
    ]
    text = data.decode("utf-8", errors="replace").removeprefix("\ufeff")
    reader = csv.reader(io.StringIO(text, newline=""))
    header = [name.strip() for name in next(reader, [])]
    wanted = [input_column, output_column] + [c for c in (context_column, system_column) if c]
    missing = [name for name in wanted if name not in header]
    if missing:
        existing = ", ".join(repr(name) for name in header) or "none"
        problems.append(
            example.Problem(
                path,
                1,
                "header",
                f"no column {', '.join(repr(n) for n in missing)}; the columns are: {existing}",
            )
        )
        raise example.DataError(problems)
    image_columns = [name for name in IMAGE_COLUMNS if name in header and name not in wanted]
    if len(image_columns) > 1:
        reason = f"both {' and '.join(image_columns)} columns; keep one image column"
        raise example.DataError([*problems, example.Problem(path, 1, "header", reason)])
    wanted += image_columns
    index = {name: header.index(name) for name in wanted}
    folder = os.path.dirname(os.path.abspath(path))
    result = read_result.ReadResult()
    result.warnings = [
        example.Problem(path, 1, name, "column not used (not one of the data.*_column settings)")
        for name in header
        if name and name not in wanted
    ]
    while True:
        start = reader.line_num + 1
        try:
            cells = next(reader)
        except StopIteration:
            break
        except csv.Error as error:
            problems.append(example.Problem(path, start, "row", f"invalid CSV: {error}"))
            break
        if not cells:
            continue
        result.rows_read += 1
        if len(cells) != len(header):
            problems.append(
                example.Problem(
                    path, start, "row", f"{len(cells)} cells, but the header has {len(header)}"
                )
            )

        def cell(name: str, cells: list[str] = cells) -> str:
            position = index[name]
            return cells[position] if position < len(cells) else ""

        empty = [name for name in (input_column, output_column) if not cell(name).strip()]
        for name in empty:
            problems.append(example.Problem(path, start, name, "empty cell"))
        parts = ()
        for name in image_columns:
            if cell(name).strip():
                try:
                    image = images.check(
                        f"{path}:{start}", name, path=os.path.join(folder, cell(name).strip())
                    )
                    parts = (image, cell(input_column))
                except example.RowError as error:
                    problems.append(example.Problem(path, start, error.field, error.reason))
                    empty.append(name)
        if empty:
            continue
        turns = (
            example.Turn(example.USER, cell(input_column), parts=parts),
            example.Turn(example.MODEL, cell(output_column)),
        )
        result.examples.append(
            example.Example(
                turns=turns,
                system=_optional(cell(system_column)) if system_column else None,
                context=_optional(cell(context_column)) if context_column else None,
                source=f"{path}:{start}",
            )
        )
    if problems:
        raise example.DataError(problems)
    return result


def _optional(value: str) -> str | None:
    """A blank optional cell means the field is absent."""
    return value if value.strip() else None


def _utf8_errors(data: bytes) -> list[tuple[int, UnicodeDecodeError]]:
    """The 1-based line number and error of each line that is not valid UTF-8."""
    errors = []
    for number, raw in enumerate(data.split(b"\n"), start=1):
        if number == 1:
            raw = raw.removeprefix(codecs.BOM_UTF8)
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError as error:
            errors.append((number, error))
    return errors


def dict_rows(path: str, data: bytes) -> tuple[list, list[example.Problem]]:
    """A CSV file's rows as `{column: cell}` objects, for readers that take rows (the
    preference reader) rather than the input/output columns of `read_csv`.

    Each row keeps the physical line where it starts; a blank cell reads as "" (the reader
    reports it by column name).

    Returns:
      `(rows, problems)`: `rows.Row`s, and the lines that are not UTF-8 or not CSV.
    """
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))
    problems = [
        example.Problem(path, number, "line", f"invalid UTF-8 at byte {error.start + 1}")
        for number, error in _utf8_errors(data)
    ]
    text = data.decode("utf-8", errors="replace").removeprefix("\ufeff")
    reader = csv.reader(io.StringIO(text, newline=""))
    header = [name.strip() for name in next(reader, [])]
    found = []
    while True:
        start = reader.line_num + 1
        try:
            cells = next(reader)
        except StopIteration:
            break
        except csv.Error as error:
            problems.append(example.Problem(path, start, "row", f"invalid CSV: {error}"))
            break
        if not cells:
            continue
        if len(cells) != len(header):
            reason = f"{len(cells)} cells, but the header has {len(header)}"
            problems.append(example.Problem(path, start, "row", reason))
            continue
        found.append(
            rows.Row(start, {name: cell for name, cell in zip(header, cells, strict=True) if name})
        )
    return found, problems
