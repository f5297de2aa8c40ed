"""Rows of a user's file -> Examples: format detection, refusals, problems, unused-key warnings.

Every container (JSONL lines, a JSON array, Parquet rows, a saved Hugging Face dataset) hands
its rows here, each with where it sits in the file. The format is detected once per file, from
the first row that fits exactly one format (`row_formats.fits`), or forced; every row must then
be of that format, since a file mixing formats is almost always two files concatenated by
mistake. Data that supervised tuning must not read (`refused`) is named once per file. Every
problem is collected and raised together as one `example.DataError`; every key the reader does
not use is warned about once per file, with the first line that has it.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence

from gemma_tune.data import example, fields, read_result, refused, row_formats

AUTO = "auto"


@dataclasses.dataclass(frozen=True)
class Row:
    """One row of a file and where it is.

    Attributes:
      line: the 1-based line where the row starts (for Parquet and saved datasets, the row
        number).
      value: the decoded row (an object, unless the file is wrong).
      index: the row's index in a JSON array or a table, named in messages; None for JSONL.
    """

    line: int
    value: object
    index: int | None = None

    def field(self, name: str) -> str:
        """`name` as the problem's field: `[index].name` when the row has an index."""
        if self.index is None:
            return name
        return f"[{self.index}]" if name == "row" else f"[{self.index}].{name}"


def check_format(format: str) -> None:
    """Raises ValueError naming the formats when `format` is neither "auto" nor one of them."""
    if format != AUTO and format not in row_formats.FORMATS:
        choices = ", ".join((AUTO, *row_formats.NAMES))
        raise ValueError(f"unknown format {format!r}; choose one of: {choices}")


def _detect(rows: Sequence[Row]) -> str | None:
    """The format of the first row that fits exactly one."""
    for row in rows:
        if isinstance(row.value, dict) and not refused.row_kind(row.value, images=True, tools=True):
            fit = row_formats.fits(row.value)
            if len(fit) == 1:
                return fit[0]
    return None


def read(
    path: str,
    rows: Sequence[Row],
    *,
    format: str = AUTO,
    keep_context: bool = False,
    problems: Sequence[example.Problem] = (),
    rows_read: int | None = None,
) -> read_result.ReadResult:
    """Reads and validates the rows of one file.

    Args:
      path: the file, for messages and each example's source ("path:line").
      rows: its rows in order.
      format: "auto" to detect the format, or one of `row_formats.NAMES` to force it.
      keep_context: for Dolly rows, keep rows with a context (see the `dolly` module).
      problems: problems the container already found (bad JSON, bad UTF-8, ...).
      rows_read: how many rows the file has, bad ones included (default: `len(rows)`).

    Returns:
      The examples, the rows skipped by reason, and a warning per unused key.

    Raises:
      ValueError: for an unknown `format`.
      example.DataError: with every problem, ordered by line.
    """
    check_format(format)
    problems = list(problems)
    result = read_result.ReadResult(rows_read=len(rows) if rows_read is None else rows_read)
    file_format = _detect(rows) if format == AUTO else format
    refused_kinds: set[str] = set()
    unused: dict[str, int] = {}
    # Relative image paths are relative to the folder holding the file (or saved dataset).
    folder = os.path.dirname(os.path.abspath(os.path.normpath(path)))
    for row in rows:

        def report(field: str, reason: str, row: Row = row) -> None:
            problems.append(example.Problem(path, row.line, row.field(field), reason))

        value = row.value
        if not isinstance(value, dict):
            report("row", f"expected a JSON object, got {fields.type_name(value)}")
            continue
        kind = refused.row_kind(value, images=True, tools=True)
        if kind:
            field, message = kind
            if message not in refused_kinds:  # Once per file: every row is the same.
                refused_kinds.add(message)
                report(field, message)
            continue
        fit = row_formats.fits(value)
        if file_format is None:
            if len(fit) > 1:
                report(
                    "row",
                    f"the keys ({', '.join(sorted(value))}) fit several formats "
                    f"({', '.join(fit)}); set data.format to choose one",
                )
            else:
                report("row", row_formats.closest(value))
            continue
        spec = row_formats.FORMATS[file_format]
        if fit and not spec.required <= value.keys():
            report(
                "row",
                f"the keys ({', '.join(sorted(value))}) are of the {' or '.join(fit)} format, "
                f"but the file is {file_format}",
            )
            continue
        checker = fields.Checker(folder=folder)
        checker.note_unused(value, spec.keys, "")
        try:
            result.examples.append(spec.parse(value, f"{path}:{row.line}", keep_context, checker))
        except fields.RowErrors as errors:
            for error in errors.errors:
                report(error.field, error.reason)
        except read_result.Skip as skip:
            result.drop(skip.reason)
        for key in checker.unused:
            unused.setdefault(key, row.line)
    if problems:
        problems.sort(key=lambda problem: problem.line)
        raise example.DataError(problems)
    result.warnings = [
        example.Problem(path, line, key, f"not used by the {file_format} format; ignored")
        for key, line in unused.items()
    ]
    return result
