"""Datasets saved with Hugging Face `datasets`' `save_to_disk`: a folder, read as a user's file.

`Dataset.save_to_disk` writes `state.json` and Arrow shards; `DatasetDict.save_to_disk` writes
`dataset_dict.json` and a folder per split. Either is loaded with `datasets.load_from_disk`;
the rows then go through the same format detection and checks as a JSONL file's
(`rows.read`), each located by its row number and index. Columns `datasets` would decode
(an `Image` feature) are read as stored, `{"bytes", "path"}` objects, so images are checked
by the same reader as any file's (`image_parts`) and not held decoded in memory.
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Callable

from gemma_tune.data import read_result, rows

_SPLIT = re.compile(r"^([\w.-]+)(?:\[(-?\d*):(-?\d*)\])?$")


def is_saved_dataset(path: str) -> bool:
    """Whether `path` is a folder written by `save_to_disk`."""
    return any(
        os.path.isfile(os.path.join(path, name)) for name in ("state.json", "dataset_dict.json")
    )


def load(path: str, split: str = "train"):
    """Loads a saved dataset's split as a `datasets.Dataset`.

    Args:
      path: the folder.
      split: for a saved `DatasetDict`, the split ("train", or a slice "train[:100]"); a
        saved `Dataset` is one split already (a slice still applies).

    Raises:
      ValueError: for a folder that is not a saved dataset, or a split it does not have.
    """
    if not is_saved_dataset(path):
        raise ValueError(
            f"{path}: a folder, but not one written by datasets' save_to_disk "
            "(no state.json or dataset_dict.json)"
        )
    import datasets  # Heavy: only imported when a dataset is really loaded.

    match = _SPLIT.match(split or "train")
    if not match:
        raise ValueError(f"{path}: cannot read the split {split!r}; use NAME or NAME[A:B]")
    name, start, stop = match.groups()
    loaded = datasets.load_from_disk(path)
    if isinstance(loaded, datasets.DatasetDict):
        if name not in loaded:
            splits = ", ".join(loaded) or "none"
            raise ValueError(f"{path}: no split {name!r}; the splits are: {splits}")
        loaded = loaded[name]
    if start or stop:
        indices = range(len(loaded))[
            slice(int(start) if start else None, int(stop) if stop else None)
        ]
        loaded = loaded.select(indices)
    return loaded


def _rows(dataset) -> list[dict]:
    """The rows of a `datasets.Dataset`, columns that `datasets` decodes (images) as stored."""
    from datasets.features import features

    if any(features.require_decoding(feature) for feature in dataset.features.values()):
        return dataset.with_format("arrow")[:].to_pylist()
    return list(dataset)


def read_saved(
    path: str,
    *,
    split: str = "train",
    format: str = rows.AUTO,
    keep_context: bool = False,
    row_reader: Callable | None = None,
) -> read_result.ReadResult:
    """Reads and validates every row of a saved dataset, as a user's file; `row_reader`,
    when given, reads the rows in place of `rows.read` (see `jsonl.read_jsonl`).

    Raises:
      ValueError: see `load`.
      gemma_tune.data.example.DataError: with every problem of the rows.
    """
    dataset = load(path, split)
    found = [rows.Row(index + 1, row, index=index) for index, row in enumerate(_rows(dataset))]
    if row_reader is None:
        row_reader = functools.partial(rows.read, format=format, keep_context=keep_context)
    return row_reader(path, found)
