"""Whether a run's files are whole, checked before any model is loaded for them.

    integrity.check_adapter("runs/mine/adapter")   # ValueError naming a damaged file

A truncated `adapter.json` or `adapter.npz`, or an `adapter.json` whose list of arrays does not
match `adapter.npz`, is reported as such, naming the file, instead of surfacing later as a
JSON, zip or shape error from deep inside loading. `sample`, `evaluate` and `export` call it
(through `tuned_run.adapter_path` or directly) before they load a model.
"""

from __future__ import annotations

import os
import zipfile

import numpy as np

from gemma_tune.runs import run_dir


def check_adapter(directory: str) -> dict:
    """Checks an adapter directory before a model is loaded for it, and returns its metadata:
    `adapter.json` must be valid JSON and `adapter.npz` must hold exactly the arrays, of the
    shapes, that `adapter.json` lists.

    Raises:
      FileNotFoundError: either file is missing, naming it.
      ValueError: either file is damaged (cut short, not JSON or not an .npz), or they do not
        match each other, naming the file and the first difference.
    """
    metadata_path = os.path.join(directory, run_dir.ADAPTER_METADATA)
    weights_path = os.path.join(directory, run_dir.ADAPTER_WEIGHTS)
    for path in (metadata_path, weights_path):
        if not os.path.exists(path):
            raise FileNotFoundError(f"{path} is missing (was the adapter written completely?)")
    metadata = run_dir.read_json(directory, run_dir.ADAPTER_METADATA)
    if not isinstance(metadata, dict):
        raise ValueError(f"{metadata_path} is damaged: not a JSON object")
    shapes = _array_shapes(weights_path)
    listed = metadata.get("weights")
    if isinstance(listed, dict):
        listed = {name: tuple(shape) for name, shape in listed.items()}
        for name in sorted(set(listed) | set(shapes)):
            if listed.get(name) != shapes.get(name):
                raise ValueError(
                    f"{weights_path} does not match {metadata_path}: {name} is "
                    f"{_shape_text(shapes.get(name))} in the weights and "
                    f"{_shape_text(listed.get(name))} in the metadata"
                )
    return metadata


def _array_shapes(path: str) -> dict[str, tuple]:
    """The name and shape of each array in an .npz file (an adapter's are small)."""
    try:
        with np.load(path) as arrays:
            return {name: tuple(arrays[name].shape) for name in arrays.files}
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as error:
        raise ValueError(f"{path} is damaged: not a complete .npz file ({error})") from None


def _shape_text(shape) -> str:
    return "absent" if shape is None else f"shape {list(shape)}"
