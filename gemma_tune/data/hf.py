"""Hugging Face `datasets` source: Dolly-style and SQuAD-style datasets.

The row layout is chosen from the dataset's columns: `instruction` and `response` (and an
optional `context`) are Dolly's, `question`, `context` and `answers` SQuAD's. A public
dataset's rows cannot be fixed by the user, so a row that cannot become an Example is skipped
and counted by reason instead of failing the run; the summary reports how many.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

from gemma_tune.data import dolly, example, fields, read_result, squad

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


def _layout(name: str, columns: Iterable[str]) -> Callable[[Mapping, str, bool], example.Example]:
    """Picks the row mapper that fits `columns`."""
    columns = set(columns)
    if set(DOLLY_COLUMNS) <= columns:
        return _dolly_row
    if set(squad.COLUMNS) <= columns:
        return _squad_row
    raise ValueError(
        f"{name}: the columns ({', '.join(sorted(columns))}) fit no supported layout: "
        f"Dolly ({', '.join(DOLLY_COLUMNS)}, optional context) or "
        f"SQuAD ({', '.join(squad.COLUMNS)})"
    )


def load_hf(
    name: str = "databricks/databricks-dolly-15k",
    split: str = "train",
    *,
    keep_context: bool = False,
    rows: Iterable[Mapping] | None = None,
) -> read_result.ReadResult:
    """Reads a Hugging Face dataset split into Examples.

    Args:
      name: the dataset's Hub name, used to load it and in each example's source.
      split: the split to load, e.g. "train" or "train[:1000]".
      keep_context: for Dolly rows, keep rows with a context (True) or skip and count them
        under "has context" (False, as in Google's Gemma LoRA tutorial).
      rows: already loaded rows (e.g. a `datasets.Dataset`, or a list of dicts); when given,
        nothing is downloaded.

    Returns:
      The examples, each with `source="name[index]"`, and the rows skipped by reason.

    Raises:
      ValueError: when the columns fit neither the Dolly nor the SQuAD layout.
    """
    if rows is None:
        import datasets  # Heavy: only imported when a dataset is really loaded.

        rows = datasets.load_dataset(name, split=split)
    columns = getattr(rows, "column_names", None)
    result = read_result.ReadResult()
    if columns is None:
        rows = list(rows)
        if not rows:
            return result
        columns = rows[0].keys()
    mapper = _layout(name, columns)
    return read_result.from_public_rows(
        rows, name, lambda row, source: mapper(row, source, keep_context)
    )
