"""Preference files -> `PreferencePair`s: the entry point of the preference reader.

`read_file` reads any file the supervised reader reads (JSONL, a JSON array, Parquet, a
`save_to_disk` folder, gzip/bzip2/xz of those, and CSV with prompt, chosen and rejected
columns, plus an optional system column), through the same container readers (`files.read`),
and hands the rows to `read` here instead of the supervised `rows.read`. As there, the format is
detected once per file from the first row that fits one (`preference_formats.fits`) or forced;
every row must be of it; every problem is collected, named `file:line: field: reason`, and
raised together as one `example.DataError`; a key no format reads is warned about once.

`load_hf` reads a Hugging Face dataset (a Hub name or a `save_to_disk` folder) by its columns,
skipping and counting the rows that cannot be read, as the supervised `hf.load_hf` does.

Supervised tuning keeps refusing these rows by name (`refused`); this reader in turn refuses
supervised rows, KTO rows, images and tool calls.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterable, Mapping, Sequence

from gemma_tune.data import (
    example,
    fields,
    files,
    hf_disk,
    preference,
    preference_formats,
    refused,
    row_formats,
    rows,
)

AUTO = rows.AUTO
CSV = files.CSV


def check_format(format: str) -> None:
    """Raises ValueError naming the choices when `format` is not a preference format, "auto"
    or "csv"."""
    if format not in (AUTO, CSV, *preference_formats.NAMES):
        choices = ", ".join((AUTO, CSV, *preference_formats.NAMES))
        raise ValueError(f"unknown preference format {format!r}; choose one of: {choices}")


def _detect(found: Sequence[rows.Row]) -> str | None:
    """The format of the first row that fits exactly one."""
    for row in found:
        if isinstance(row.value, dict):
            fit = preference_formats.fits(row.value)
            if len(fit) == 1:
                return fit[0]
    return None


def _not_preference(value: dict) -> str:
    """Why a row fits no preference format: what it looks like instead, and what each needs."""
    keys = ", ".join(sorted(value)) or "none"
    needs = "; ".join(
        f"{spec.name}: {', '.join(sorted(spec.required))}"
        for spec in preference_formats.FORMATS.values()
    )
    supervised = row_formats.fits(value)
    looks = f" (they are {' or '.join(supervised)} rows, supervised data)" if supervised else ""
    return f"the keys ({keys}) fit no preference format{looks}; each needs: {needs}"


def read(
    path: str,
    found: Sequence[rows.Row],
    *,
    format: str = AUTO,
    problems: Sequence[example.Problem] = (),
    rows_read: int | None = None,
) -> preference.PreferenceReadResult:
    """Reads and validates the rows of one preference file.

    Args:
      path: the file, for messages and each pair's source ("path:line").
      found: its rows in order.
      format: "auto" (or "csv") to detect the format, or one of `preference_formats.NAMES`.
      problems: problems the container already found (bad JSON, bad UTF-8, ...).
      rows_read: how many rows the file has, bad ones included (default: `len(found)`).

    Raises:
      example.DataError: with every problem, ordered by line.
    """
    check_format(format)
    problems = list(problems)
    forced = format in preference_formats.FORMATS
    file_format = format if forced else _detect(found)
    result = preference.PreferenceReadResult(
        rows_read=len(found) if rows_read is None else rows_read, format=file_format or ""
    )
    refused_kinds: set[str] = set()
    unused: dict[str, int] = {}
    # Rows of one key set that fit no format fail alike (every row of a CSV missing a column):
    # named once, at the first, with how many there are.
    unfit: dict[frozenset[str], list] = {}
    for row in found:

        def report(field: str, reason: str, row: rows.Row = row) -> None:
            problems.append(example.Problem(path, row.line, row.field(field), reason))

        value = row.value
        if not isinstance(value, dict):
            report("row", f"expected a JSON object, got {fields.type_name(value)}")
            continue
        kind = refused.row_kind(value, preference=True)
        if kind:
            if kind[1] not in refused_kinds:  # Once per file: every row is the same.
                refused_kinds.add(kind[1])
                report(*kind)
            continue
        fit = preference_formats.fits(value)
        spec = preference_formats.FORMATS.get(file_format)
        present = {key for key, item in value.items() if item is not None}
        if spec is None or not (fit or spec.required & present):
            unfit.setdefault(frozenset(value), [row, 0])[1] += 1
            continue
        if fit and file_format not in fit:  # A missing key of its own format parses below.
            report(
                "row",
                f"the keys ({', '.join(sorted(value))}) are of the {' or '.join(fit)} format, "
                f"but the file is {file_format}",
            )
            continue
        checker = fields.Checker()
        checker.note_unused(value, spec.keys, "")
        try:
            result.pairs.append(spec.parse(value, f"{path}:{row.line}", checker))
        except fields.RowErrors as errors:
            for error in errors.errors:
                report(error.field, error.reason)
        for key in checker.unused:
            unused.setdefault(key, row.line)
    for first, count in unfit.values():
        also = f" ({count} rows with these keys)" if count > 1 else ""
        reason = _not_preference(first.value) + also
        problems.append(example.Problem(path, first.line, first.field("row"), reason))
    if problems:
        problems.sort(key=lambda problem: problem.line)
        raise example.DataError(problems)
    result.warnings = [
        example.Problem(path, line, key, f"not used by the {file_format} format; ignored")
        for key, line in unused.items()
    ]
    return result


def read_file(
    path: str | os.PathLike, *, format: str = AUTO, split: str = "train"
) -> preference.PreferenceReadResult:
    """Reads and validates every preference pair of a local file or saved dataset folder.

    Args:
      path: the file or folder (see the module docstring for the kinds read).
      format: "auto" to detect the row format (a ".csv" name reads as CSV), "csv" to read any
        name as CSV, or one of `preference_formats.NAMES` to force a row format.
      split: for a saved `DatasetDict` folder, the split to read.

    Returns:
      The pairs, each with `source="path:line"`, the format read and a warning per unused key.

    Raises:
      ValueError: for an unknown format.
      example.DataError: for a file that cannot be read, or with every problem of its rows.
    """
    check_format(format)
    row_format = AUTO if format == CSV else format
    return files.read(
        path,
        format=CSV if format == CSV else AUTO,
        split=split,
        row_reader=functools.partial(read, format=row_format),
    )


def load_hf(
    name: str, split: str = "train", *, rows: Iterable[Mapping] | None = None
) -> preference.PreferenceReadResult:
    """Reads a Hugging Face dataset split of preference pairs, its format told by its columns.

    Args:
      name: the dataset's Hub name or a `save_to_disk` folder; each pair's source is
        `name[index]`.
      split: the split to load, e.g. "train" or "train[:1000]".
      rows: already loaded rows (a `datasets.Dataset` or a list of dicts); when given, nothing
        is downloaded.

    Returns:
      The pairs, the rows skipped by reason ("invalid row (field: reason)": a public dataset's
      rows cannot be fixed by its users), and a warning per column not read.

    Raises:
      ValueError: when the columns fit no preference format, or are of a refused kind.
    """
    if rows is None and os.path.isdir(name):
        rows = hf_disk.load(name, split)
    elif rows is None:
        import datasets  # Heavy: only imported when a dataset is really loaded.

        rows = datasets.load_dataset(name, split=split)
    columns = getattr(rows, "column_names", None)
    if columns is None:
        rows = list(rows)
        columns = list(rows[0]) if rows else []
    present = dict.fromkeys(columns, True)
    kind = refused.row_kind(present, preference=True)
    if kind:
        raise ValueError(f"{name}: {kind[1]} (columns: {', '.join(sorted(columns))})")
    fit = preference_formats.fits(present)
    if len(fit) != 1:
        raise ValueError(f"{name}: {_not_preference(present).replace('keys', 'columns', 1)}")
    spec = preference_formats.FORMATS[fit[0]]
    result = preference.PreferenceReadResult(format=spec.name)
    for index, row in enumerate(rows):
        result.rows_read += 1
        try:
            result.pairs.append(spec.parse(dict(row), f"{name}[{index}]", fields.Checker()))
        except fields.RowErrors as errors:
            reason = f"invalid row ({errors.errors[0]})"
            result.dropped[reason] = result.dropped.get(reason, 0) + 1
    result.warnings = [
        example.Problem(name, 0, column, "column not used; ignored")
        for column in columns
        if column not in spec.keys
    ]
    return result
