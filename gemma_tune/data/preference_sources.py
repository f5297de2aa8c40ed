"""The entry point from a data config to training and validation preference pairs.

What `sources.load` is for supervised data, `load` is for `train.objective=dpo`: it reads the
configured source (`data.source=file`: `data.path`, any file the preference reader reads, in
`data.format`; `data.source=hf`: a Hugging Face dataset or a `save_to_disk` folder,
`data.name` / `data.split`; `data.source=tiny`: generated pairs for smoke runs,
`gemma_tune.testing.tiny_preference_pairs`), an optional `data.validation_path`, removes
repeated pairs, keeps the first `data.max_examples`, and holds out whole prompts for validation
(`preference_split`), accounting for every row in a `summary.Summary` (counted in pairs).
Problems in the training and the validation file are raised together.
"""

from __future__ import annotations

import os
from typing import Any

from gemma_tune.data import example, preference, preference_rows, preference_split, summary

SOURCES = ("file", "hf", "tiny")


def _read_source(data_config: Any) -> preference.PreferenceReadResult:
    """Reads the training pairs the config names."""
    source, name = data_config.source, data_config.name
    if source not in SOURCES:
        raise ValueError(
            f"data.source={source!r} cannot hold preference pairs (train.objective=dpo); "
            f"choose one of: {', '.join(SOURCES)}"
        )
    if source == "tiny":
        from gemma_tune import testing  # Imports KerasHub: only for offline smoke runs.

        rows = testing.tiny_preference_pairs(seed=data_config.seed)
        return preference_rows.load_hf("tiny", data_config.split, rows=rows)
    if source == "hf":
        if not name:
            raise ValueError("data.source='hf' needs data.name (a Hugging Face dataset)")
        if os.path.isfile(name):
            return preference_rows.read_file(name, format=data_config.format)
        return preference_rows.load_hf(name, data_config.split)
    if not data_config.path:
        raise ValueError(
            "data.source='file' needs data.path (a JSONL, JSON, CSV or Parquet file of "
            "preference pairs, or a save_to_disk folder)"
        )
    return preference_rows.read_file(
        data_config.path, format=data_config.format, split=data_config.split
    )


def _account(result: summary.Summary, read: preference.PreferenceReadResult) -> None:
    """Adds one reader's rows, skipped rows and warnings to the summary."""
    result.rows_read += read.rows_read
    for reason, count in read.dropped.items():
        result.dropped[reason] = result.dropped.get(reason, 0) + count
    result.warnings += [str(warning) for warning in read.warnings]


def load(
    data_config: Any,
) -> tuple[list[preference.PreferencePair], list[preference.PreferencePair], summary.Summary]:
    """Reads, validates, deduplicates and splits the preference pairs a config describes.

    Args:
      data_config: the experiment's `data` section (`gemma_tune.config.base_config`).

    Returns:
      `(train, validation, summary)`; `summary.unit` is "pairs".

    Raises:
      ValueError: a source that holds no pairs, a missing name or path, an unknown format, or
        no training pairs at all.
      example.DataError: with the problems of the training and validation files together.
    """
    preference_rows.check_format(data_config.format)
    problems: list[example.Problem] = []
    train_read = validation_read = None
    try:
        train_read = _read_source(data_config)
    except example.DataError as error:
        problems.extend(error.problems)
    if data_config.validation_path:
        try:
            validation_read = preference_rows.read_file(
                data_config.validation_path, format=data_config.format, split="validation"
            )
        except example.DataError as error:
            problems.extend(error.problems)
    if problems:
        raise example.DataError(problems)
    result = summary.Summary(unit="pairs")
    _account(result, train_read)
    train, result.duplicates_removed = preference_split.deduplicate(
        train_read.pairs, data_config.dedup
    )
    if data_config.max_examples and len(train) > data_config.max_examples:
        result.over_max_examples = len(train) - data_config.max_examples
        train = train[: data_config.max_examples]
    if validation_read is None:
        train, validation = preference_split.split(
            train, data_config.validation_fraction, data_config.seed
        )
        result.validation_from = "split" if validation else "none"
    else:
        _account(result, validation_read)
        validation, removed = preference_split.deduplicate(
            validation_read.pairs, data_config.dedup, seen=train
        )
        result.duplicates_removed += removed
        result.validation_from = "file"
    if not train:
        raise ValueError(f"no training pairs in {data_config.path or data_config.name}")
    result.train_count, result.validation_count = len(train), len(validation)
    return train, validation, result
