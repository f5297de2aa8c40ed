"""Reads a local JSONL file, in any of the `jsonl_formats` dialects, into Examples.

The dialect is detected once per file, from the keys of the first row that fits exactly one
dialect (or forced with `format=`), and every row must then be of that dialect: a file mixing
dialects is almost always two files concatenated by mistake. Every problem of the file is
collected (bad UTF-8, bad JSON, a row that is not an object, missing, empty or mistyped fields,
unknown roles, turns out of order) and raised together as one `example.DataError`, so users can
fix their file in one pass instead of one error per run.
"""

from __future__ import annotations

import codecs
import json
import os

from gemma_tune.data import example, fields, jsonl_formats, read_result

AUTO = "auto"


def read_jsonl(
    path: str | os.PathLike, *, format: str = AUTO, keep_context: bool = False
) -> read_result.ReadResult:
    """Reads and validates every row of a JSONL file.

    Args:
      path: the local file; blank lines are skipped.
      format: "auto" to detect the dialect, or one of `jsonl_formats.FORMATS` to force it.
      keep_context: for Dolly rows, keep rows with a context in `Example.context` (True) or
        skip them and count them under "has context" (False), as Google's Gemma LoRA
        tutorial does.

    Returns:
      The examples, each with `source="path:line"`, and the rows skipped by reason.

    Raises:
      ValueError: for an unknown `format`.
      example.DataError: with every problem found, each with its 1-based line and field.
    """
    if format != AUTO and format not in jsonl_formats.PARSERS:
        choices = ", ".join((AUTO, *jsonl_formats.FORMATS))
        raise ValueError(f"unknown JSONL format {format!r}; choose one of: {choices}")
    path = os.fspath(path)
    with open(path, "rb") as file:
        data = file.read()
    file_format = None if format == AUTO else format
    result = read_result.ReadResult()
    problems: list[example.Problem] = []
    for number, raw in enumerate(data.split(b"\n"), start=1):
        if number == 1 and raw.startswith(codecs.BOM_UTF8):
            raw = raw[len(codecs.BOM_UTF8) :]
        if not raw.strip():
            continue
        result.rows_read += 1

        def report(field: str, reason: str, number: int = number) -> None:
            problems.append(example.Problem(path, number, field, reason))

        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as error:
            report("line", f"invalid UTF-8 at byte {error.start + 1} of the line")
            continue
        try:
            row = json.loads(text)
        except json.JSONDecodeError as error:
            report("line", f"invalid JSON: {error.msg} (column {error.colno})")
            continue
        if not isinstance(row, dict):
            report("row", f"expected a JSON object, got {fields.type_name(row)}")
            continue
        fits = jsonl_formats.formats_of(row)
        if file_format is None:
            if len(fits) != 1:
                report("row", _undetectable(row, fits))
                continue
            file_format = fits[0]
        elif fits and file_format not in fits:
            report(
                "row",
                f"the keys ({', '.join(sorted(row))}) are of the {' or '.join(fits)} format, "
                f"but the file is {file_format}",
            )
            continue
        try:
            parsed = jsonl_formats.PARSERS[file_format](row, f"{path}:{number}", keep_context)
        except fields.RowErrors as errors:
            for error in errors.errors:
                report(error.field, error.reason)
            continue
        except read_result.Skip as skip:
            result.drop(skip.reason)
            continue
        result.examples.append(parsed)
    if problems:
        raise example.DataError(problems)
    return result


def _undetectable(row: dict, fits: list[str]) -> str:
    """Explains why a row's keys do not tell its dialect."""
    keys = ", ".join(sorted(row)) or "none"
    if fits:
        return (
            f"the keys ({keys}) fit several formats ({', '.join(fits)}); "
            "pass a format to choose one"
        )
    known = "; ".join(
        f"{name}: {', '.join(sorted(markers))}" for name, markers in jsonl_formats.MARKERS.items()
    )
    return f"the keys ({keys}) fit no known format ({known})"
