"""The one entry point from a data config to the training and validation sets.

`load` reads the configured source (a Hugging Face dataset, a TFDS dataset, a local file of any
kind `files.read` knows, or "tiny": the generated rows of `gemma_tune.testing` for offline
smoke runs), an optional
separate validation file, and hands both to `summary.prepare`. Problems in the training and the
validation file are raised together, so one run shows all of them.
"""

from __future__ import annotations

import functools
import os
from typing import Any

from gemma_tune.data import (
    example,
    files,
    hf,
    jsonl,
    read_result,
    row_formats,
    summary,
    tfds_source,
)

SOURCES = ("hf", "tfds", "file", "tiny")
CSV = files.CSV
FILE_FORMATS = (jsonl.AUTO, CSV, *row_formats.NAMES)


def default_config() -> Any:
    """A `ml_collections.ConfigDict` with every data field at its default: the experiment
    config's `data` section (`gemma_tune.config.base_config`), the one place defaults live."""
    from gemma_tune import config as config_lib

    return config_lib.base_config().data


@functools.cache
def _defaults() -> dict[str, Any]:
    """The data fields' defaults (`default_config()` as a dict), read once."""
    return default_config().to_dict()


def _check_format(file_format: str) -> None:
    """Raises ValueError naming the valid file formats if `file_format` is not one."""
    if file_format not in FILE_FORMATS:
        choices = ", ".join(FILE_FORMATS)
        raise ValueError(f"unknown file format {file_format!r}; choose one of: {choices}")


def _field(data_config: Any, name: str) -> Any:
    """The config's `name` field, or its default (`default_config()`) when the config does
    not have it (a partial config, or the config of a run older than the field)."""
    if hasattr(data_config, name):
        return getattr(data_config, name)
    return _defaults()[name]


def read_file(
    path: str | os.PathLike,
    *,
    format: str = jsonl.AUTO,
    input_column: str = "input",
    output_column: str = "output",
    context_column: str = "",
    system_column: str = "",
    keep_context: bool = False,
    split: str = "train",
    images: bool = False,
) -> read_result.ReadResult:
    """Reads a local data file or saved dataset folder, its kind told by its first bytes
    (`files.read`): JSONL, a JSON array, CSV (a ".csv" name or format "csv"), Parquet, a
    gzip/bzip2/xz-compressed one of these, or a `save_to_disk` folder.

    Rows with images are read and checked either way; unless `images` is set (a model with a
    vision encoder, or the data check summarizing them), a file that has any is then refused
    (`refuse_images`): a text-only model would train on their text alone.

    Args:
      path: the file or folder.
      format: "auto", "csv", or one of `row_formats.NAMES`.
      input_column: CSV only: the user's message column.
      output_column: CSV only: the model's reply column.
      context_column: CSV only: an optional passage column ("" = none).
      system_column: CSV only: an optional system prompt column ("" = none).
      keep_context: Dolly rows only: keep rows with a context rather than skip them.
      split: a saved `DatasetDict` folder only: the split to read.
      images: keep rows with images rather than refuse the file.

    Raises:
      ValueError: for an unknown format, or rows with images unless `images` is set.
      example.DataError: with every problem of the file.
    """
    _check_format(format)
    columns = {
        "input_column": input_column,
        "output_column": output_column,
        "context_column": context_column,
        "system_column": system_column,
    }
    read = files.read(
        path, format=format, split=split, keep_context=keep_context, csv_columns=columns
    )
    if not images:
        refuse_images(read.examples)
    return read


def refuse_images(examples: list[example.Example]) -> None:
    """Raises ValueError when any example has an image, for a model that cannot see them:
    training on the text alone would misuse them.

    The message counts the rows with images and names the first ("file:line").
    """
    with_images = [item for item in examples if item.images]
    if with_images:
        raise ValueError(
            f"image rows: this model does not read images (which models do: "
            f"docs/vision.md); {len(with_images)} rows have images, first at "
            f"{with_images[0].source} (python -m gemma_tune.data check FILE reads and "
            "summarizes them)"
        )


def _read_config_file(
    data_config: Any, path: str, split: str | None = None, images: bool = False
) -> read_result.ReadResult:
    """Reads `path` with the config's format and column settings; a saved `DatasetDict`
    folder at `split` (default `data.split`); image rows kept with `images`."""
    return read_file(
        path,
        format=_field(data_config, "format"),
        input_column=_field(data_config, "input_column"),
        output_column=_field(data_config, "output_column"),
        context_column=_field(data_config, "context_column"),
        system_column=_field(data_config, "system_column"),
        keep_context=_field(data_config, "keep_context"),
        split=split or _field(data_config, "split"),
        images=images,
    )


def _named_columns(data_config: Any) -> dict[str, str] | None:
    """The `data.*_column` fields when the user changed any from its default (then a Hugging
    Face dataset is read by those columns instead of a detected layout), else None."""
    names = ("input_column", "output_column", "context_column", "system_column")
    columns = {name: _field(data_config, name) for name in names}
    if all(columns[name] == _defaults()[name] for name in names):
        return None
    return columns


def _read_source(data_config: Any, images: bool = False) -> read_result.ReadResult:
    """Reads the training source the config names (a local file's image rows kept with
    `images`)."""
    source = _field(data_config, "source")
    name = _field(data_config, "name")
    split = _field(data_config, "split")
    if source == "hf":
        if not name:
            raise ValueError("data.source='hf' needs data.name (a Hugging Face dataset)")
        if os.path.isfile(name):  # A local data file: read as the user's own file.
            return _read_config_file(data_config, name, images=images)
        return hf.load_hf(
            name,
            split,
            keep_context=_field(data_config, "keep_context"),
            columns=_named_columns(data_config),
        )
    if source == "tfds":
        if not name:
            raise ValueError("data.source='tfds' needs data.name (a TFDS dataset)")
        return tfds_source.load_tfds(name, split, instruction=_field(data_config, "instruction"))
    if source == "tiny":
        from gemma_tune import testing  # Imports KerasHub: only for the offline smoke run.

        rows = testing.tiny_conversations(seed=_field(data_config, "seed"))
        keep_context = _field(data_config, "keep_context")
        return hf.load_hf("tiny", split, keep_context=keep_context, rows=rows)
    path = _field(data_config, "path")
    if not path:
        raise ValueError(
            "data.source='file' needs data.path "
            "(a JSONL, JSON, CSV or Parquet file, or a save_to_disk folder)"
        )
    return _read_config_file(data_config, path, images=images)


def load(
    data_config: Any, images: bool = False
) -> tuple[list[example.Example], list[example.Example], summary.Summary]:
    """Reads, validates, deduplicates and splits the data a config describes.

    Args:
      data_config: an attribute-access config (e.g. `ml_collections.ConfigDict`) with the
        fields of `default_config()`: `source` ("hf", "tfds", "file" or "tiny"), `name`,
        `split`, `path`, `format`, `input_column`, `output_column`, `context_column`,
        `system_column`, `keep_context`, `max_examples`, `max_field_chars`, `validation_path`
        ("" = split off `validation_fraction` of the training data), `validation_fraction`,
        `dedup`, `seed` and `instruction`. Missing fields take their defaults (`default_config()`).
      images: keep rows with images (for a model with a vision encoder) rather than refuse
        them (`refuse_images`).

    Returns:
      (train, validation, summary).

    Raises:
      ValueError: for an unknown source or format, a missing name or path, or no training
        examples at all.
      example.DataError: with the problems of the training and validation files together.
    """
    source = _field(data_config, "source")
    if source not in SOURCES:
        raise ValueError(f"unknown data source {source!r}; choose one of: {', '.join(SOURCES)}")
    _check_format(_field(data_config, "format"))
    problems: list[example.Problem] = []
    train_read = validation_read = None
    try:
        train_read = _read_source(data_config, images)
    except example.DataError as error:
        problems.extend(error.problems)
    validation_path = _field(data_config, "validation_path")
    if validation_path:
        try:
            validation_read = _read_config_file(
                data_config, validation_path, "validation", images=images
            )
        except example.DataError as error:
            problems.extend(error.problems)
    if problems:
        raise example.DataError(problems)
    train, validation, result = summary.prepare(
        train_read,
        dedup=_field(data_config, "dedup"),
        validation_fraction=_field(data_config, "validation_fraction"),
        seed=_field(data_config, "seed"),
        max_examples=_field(data_config, "max_examples"),
        validation_examples=validation_read,
        max_field_chars=_field(data_config, "max_field_chars"),
    )
    if not train:
        summary_line = result.format().replace("\n", "; ")
        raise ValueError(f"no training examples left from the data source ({summary_line})")
    return train, validation, result
