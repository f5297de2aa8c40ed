"""Hugging Face `datasets` source: Hub datasets and `save_to_disk` folders, by their columns.

The row layout is chosen from the dataset's columns: `instruction` and `response` (and an
optional `context`) are Dolly's, `question`, `context` and `answers` SQuAD's; otherwise any of
the file formats (`row_formats`: a `messages`, `conversations`, `text` or prompt/completion
column, Alpaca's columns, ...). Data supervised tuning must not read (`refused`: preference,
KTO, tools, images) is refused by its columns. A public dataset's rows cannot be fixed by the
user, so a row that cannot become an Example is skipped and counted by reason instead of
failing the run; the summary reports how many. `data.name` may be a local `save_to_disk`
folder (`hf_disk`).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping

from gemma_tune.data import (
    dolly,
    example,
    fields,
    hf_disk,
    read_result,
    refused,
    row_formats,
    squad,
)

DOLLY_COLUMNS = ("instruction", "response")


def _dolly_row(row: Mapping, source: str, keep_context: bool) -> example.Example:
    """Maps a Dolly-style row, applying the `dolly` module's context policy."""
    checker = fields.Checker()
    instruction = checker.text(row, "instruction")
    response = checker.text(row, "response")
    context = checker.text(row, "context", required=False)
    checker.done()
    return dolly.to_example(
        instruction, response, context, keep_context=keep_context, source=source
    )


def _squad_row(row: Mapping, source: str, keep_context: bool) -> example.Example:
    """Maps a SQuAD-style row (`answers` is {"text": [...], "answer_start": [...]})."""
    del keep_context  # The passage is what a SQuAD question is about: it is always kept.
    answers = row.get("answers")
    texts = answers.get("text") if isinstance(answers, Mapping) else None
    return squad.to_example(row.get("question"), row.get("context"), texts, source=source)


def _column_mapper(mapping: Mapping[str, str]) -> Callable[[Mapping, str, bool], example.Example]:
    """A row mapper reading the columns the user named (`data.input_column` etc.)."""

    def make(row: Mapping, source: str, keep_context: bool) -> example.Example:
        del keep_context  # A named context column is always kept.
        checker = fields.Checker()
        prompt = checker.text(row, mapping["input_column"])
        response = checker.text(row, mapping["output_column"])
        optional = {}
        for key in ("context_column", "system_column"):
            column = mapping.get(key)
            text = checker.text(row, column, required=False) if column else None
            optional[key] = text if text and text.strip() else None
        checker.done()
        turns = (example.Turn(example.USER, prompt), example.Turn(example.MODEL, response))
        return example.Example(
            turns=turns,
            context=optional["context_column"],
            system=optional["system_column"],
            source=source,
        )

    return make


def _layout(
    name: str, columns: Iterable[str], mapping: Mapping[str, str] | None = None
) -> tuple[Callable[[Mapping, str, bool], example.Example], frozenset[str]]:
    """Picks the row mapper that fits `columns`: the named columns when `mapping` is given,
    else the layout the columns fit. Returns it with the columns it reads."""
    columns = set(columns)
    if mapping:
        named = [column for column in mapping.values() if column]
        missing = [column for column in named if column not in columns]
        if missing:
            raise ValueError(
                f"{name}: no column {', '.join(repr(c) for c in missing)}; the columns are: "
                f"{', '.join(sorted(columns))}"
            )
        return _column_mapper(mapping), frozenset(named)
    kind = refused.row_kind(dict.fromkeys(columns, True), tools=True)
    if kind:
        raise ValueError(f"{name}: {kind[1]} (columns: {', '.join(sorted(columns))})")
    if set(DOLLY_COLUMNS) <= columns:
        return _dolly_row, frozenset({*DOLLY_COLUMNS, "context", "category"})
    if set(squad.COLUMNS) <= columns:
        return _squad_row, frozenset(squad.COLUMNS)
    fit = row_formats.fits(dict.fromkeys(columns))
    if len(fit) == 1:
        spec = row_formats.FORMATS[fit[0]]
        mapper = lambda row, source, keep_context: spec.parse(  # noqa: E731
            dict(row), source, keep_context, fields.Checker()
        )
        return mapper, spec.keys
    if fit:
        reason = f"fit several layouts ({', '.join(fit)})"
    else:
        reason = row_formats.closest(dict.fromkeys(columns)).removeprefix(
            f"the keys ({', '.join(sorted(columns))}) "
        )
    raise ValueError(
        f"{name}: the columns ({', '.join(sorted(columns))}) {reason}; the supported "
        f"layouts are SQuAD ({', '.join(squad.COLUMNS)}) and the file formats "
        f"({', '.join(row_formats.NAMES)}), see docs/data_formats.md; or name the prompt and "
        "answer columns with data.input_column and data.output_column"
    )


def load_hf(
    name: str = "databricks/databricks-dolly-15k",
    split: str = "train",
    *,
    keep_context: bool = False,
    rows: Iterable[Mapping] | None = None,
    columns: Mapping[str, str] | None = None,
) -> read_result.ReadResult:
    """Reads a Hugging Face dataset split into Examples.

    Args:
      name: the dataset's Hub name or a `save_to_disk` folder, used to load it and in each
        example's source.
      split: the split to load, e.g. "train" or "train[:1000]".
      keep_context: for Dolly rows, keep rows with a context (True) or skip and count them
        under "has context" (False, as in Google's Gemma LoRA tutorial).
      rows: already loaded rows (e.g. a `datasets.Dataset`, or a list of dicts); when given,
        nothing is downloaded.
      columns: the columns to read instead of a detected layout: `input_column` and
        `output_column` (required), `context_column` and `system_column` ("" = none).

    Returns:
      The examples, each with `source="name[index]"`, and the rows skipped by reason.

    Raises:
      ValueError: when the columns fit no layout, or are of a refused kind of data.
    """
    if rows is None and os.path.isdir(name):
        rows = hf_disk.load(name, split)
    elif rows is None:
        import datasets  # Heavy: only imported when a dataset is really loaded.

        rows = datasets.load_dataset(name, split=split)
    dataset_columns = getattr(rows, "column_names", None)
    result = read_result.ReadResult()
    if dataset_columns is None:
        rows = list(rows)
        if not rows:
            return result
        dataset_columns = rows[0].keys()
    mapper, used = _layout(name, dataset_columns, columns)
    result = read_result.from_public_rows(
        rows, name, lambda row, source: mapper(row, source, keep_context)
    )
    result.warnings = [
        example.Problem(name, 0, column, "column not used; ignored")
        for column in dataset_columns
        if column not in used
    ]
    return result
