"""LoRA adapter files keyed by layer path, not layer index.

An adapter is `adapter.npz` (one array per trainable variable, named by its Keras path, e.g.
`decoder_block_0/attention/query/lora_kernel_a`) plus `adapter.json` (schema version, base
preset, rank, gemma_tune version, and each array's shape). Unlike KerasHub's
`save_lora_weights`, which keys weights by position, a path-keyed file cannot silently land on
the wrong layer. The file names and the schema version are `gemma_tune.runs.run_dir`'s; both
files are written atomically through `run_dir.write_atomically`.

Schema versions of adapter.json: 1 (no `schema_version` field), 2 (the field added, nothing
else changed) and 3 (`layout`, which kernel axes LoRA's A factors span: "per_head" or "peft",
`model.lora`; versions 1 and 2 are "per_head") are read; a newer version is refused, naming the
file, rather than misread.
"""

from __future__ import annotations

import hashlib
import json
import os

import numpy as np

import gemma_tune
from gemma_tune.model import keras_compat, lora, vision_lora
from gemma_tune.runs import run_dir

WEIGHTS_FILE = run_dir.ADAPTER_WEIGHTS
METADATA_FILE = run_dir.ADAPTER_METADATA
SCHEMA_VERSION = run_dir.ADAPTER_SCHEMA_VERSION


def fingerprint(causal_lm) -> str:
    """A short hash of the frozen base weights (the first values of every non-LoRA variable).

    Stored with an adapter so that loading it onto a different base model, even one with the
    same architecture and shapes, is refused instead of silently producing nonsense.
    """
    digest = hashlib.sha256()
    for variable in sorted(causal_lm.weights, key=lambda v: v.path):
        if "lora" in variable.path:
            continue
        values = np.asarray(variable.numpy(), np.float32).reshape(-1)[:64]
        digest.update(variable.path.encode())
        digest.update(np.round(values, 4).tobytes())
    return digest.hexdigest()[:16]


def lora_settings(causal_lm) -> dict:
    """The model's LoRA rank, alpha and target layer names (e.g. "query", "value"), read from
    its LoRA-enabled layers, for an adapter's metadata; with LoRA on the vision tower also its
    `vision_targets` (`model.vision_lora`: "attention", "projector"), kept out of `targets`."""
    ranks, alphas, targets, layouts, dora = set(), set(), set(), set(), False
    for layer in keras_compat.all_layers(causal_lm.backbone):
        if vision_lora.is_adapter(layer):
            continue
        if getattr(layer, "lora_enabled", False):
            ranks.add(int(layer.lora_rank))
            alphas.add(float(layer.lora_alpha))
            targets.add(layer.name)
            layouts.add(lora.layout(layer))
            dora = dora or getattr(layer, "lora_dora", False)
    if not ranks:
        return {}
    if len(layouts) > 1:
        raise ValueError(f"LoRA layers of one model in several layouts: {sorted(layouts)}")
    settings = {
        "rank": max(ranks),
        "alpha": max(alphas),
        "targets": sorted(targets),
        "dora": dora,
        "layout": layouts.pop(),
    }
    vision_targets = vision_lora.targets_of(causal_lm.backbone)
    return {**settings, "vision_targets": vision_targets} if vision_targets else settings


def lora_layout(metadata: dict) -> str:
    """The LoRA layout (`lora.LAYOUTS`) an adapter's metadata says its factors have: its
    `layout` field, or "per_head" for schema versions 1 and 2, which predate the field.

    Raises:
      ValueError: for an unknown layout name, or a LoRA adapter of schema 3 or later without
        one.
    """
    if metadata.get("schema_version", 1) < 3:
        return run_dir.ADAPTER_LEGACY_LAYOUT
    layout = metadata.get("layout")
    if layout is None and metadata.get("method") == "full":
        return run_dir.ADAPTER_LEGACY_LAYOUT  # no factors to lay out
    if layout not in lora.LAYOUTS:
        raise ValueError(
            f"{METADATA_FILE}: LoRA layout {layout!r}; this gemma_tune "
            f"({gemma_tune.__version__}) reads {', '.join(lora.LAYOUTS)}"
        )
    return layout


def save(causal_lm, directory: str, metadata: dict) -> str:
    """Writes the CausalLM's trainable variables (the LoRA/DoRA factors; every weight after
    full fine-tuning) to `directory`. `metadata["base_fingerprint"]`, when given, is the
    fingerprint taken before quantizing and tuning (required after full fine-tuning). The
    LoRA layout is recorded from the model itself, so no LoRA adapter is written without it.

    Returns:
      The path of the weights file.
    """
    os.makedirs(directory, exist_ok=True)
    arrays = {v.path: np.asarray(v.numpy()) for v in causal_lm.trainable_variables}
    weights_path = os.path.join(directory, WEIGHTS_FILE)
    run_dir.write_atomically(weights_path, lambda f: np.savez(f, **arrays))
    layout = lora_settings(causal_lm).get("layout")
    full_metadata = {
        **metadata,
        **({"layout": layout} if layout else {}),
        "schema_version": SCHEMA_VERSION,
        "base_fingerprint": metadata.get("base_fingerprint") or fingerprint(causal_lm),
        "gemma_tune_version": gemma_tune.__version__,
        "weights": {path: list(array.shape) for path, array in arrays.items()},
    }
    metadata_text = json.dumps(full_metadata, indent=2)
    run_dir.write_atomically(os.path.join(directory, METADATA_FILE), metadata_text)
    return weights_path


def read_metadata(directory: str) -> dict:
    """The adapter's metadata (`adapter.json`): how it was trained (method, rank, alpha,
    targets, quantization), its base's fingerprint and its arrays' shapes.

    Raises:
      FileNotFoundError: when `directory` holds no adapter.
      ValueError: when the file's schema version is newer than this gemma_tune reads, or
        its LoRA layout is unknown (or missing from a LoRA adapter of schema 3).
    """
    path = os.path.join(directory, METADATA_FILE)
    with open(path) as f:
        metadata = json.load(f)
    version = metadata.get("schema_version", 1)
    if not isinstance(version, int) or not 1 <= version <= SCHEMA_VERSION:
        raise ValueError(
            f"{path} is adapter schema version {version!r}; this gemma_tune "
            f"({gemma_tune.__version__}) reads versions 1 to {SCHEMA_VERSION}: upgrade gemma_tune "
            "to load it"
        )
    try:
        lora_layout(metadata)
    except ValueError as error:
        raise ValueError(f"{path}: {error}") from None
    return metadata


def load(causal_lm, directory: str, base_fingerprint: str = "") -> dict:
    """Loads adapter weights into a CausalLM prepared like the trained one (same method and
    targets). `base_fingerprint` is the base's fingerprint taken before it was quantized
    (`model.LoadedModel.base_fingerprint`); by default it is computed from `causal_lm`.

    Raises:
      ValueError: when a variable is missing on either side or its shape differs, naming it,
        or when the adapter's schema version is newer than this gemma_tune reads.

    Returns:
      The adapter's metadata.
    """
    metadata = read_metadata(directory)
    expected = metadata.get("base_fingerprint")
    if expected and expected != (base_fingerprint or fingerprint(causal_lm)):
        raise ValueError(
            f"adapter in {directory} was trained on {metadata.get('base_preset')!r} "
            f"(fingerprint {expected}); the model it is being loaded onto has other base weights"
        )
    with np.load(os.path.join(directory, WEIGHTS_FILE)) as arrays:
        variables = {v.path: v for v in causal_lm.trainable_variables}
        missing = sorted(set(arrays.files) - set(variables))
        extra = sorted(set(variables) - set(arrays.files))
        if missing or extra:
            raise ValueError(
                f"adapter in {directory} does not fit this model: "
                f"not in the model: {missing[:5]}; not in the adapter: {extra[:5]}"
            )
        for path, variable in variables.items():
            if tuple(arrays[path].shape) != tuple(variable.shape):
                raise ValueError(
                    f"adapter weight {path} has shape {arrays[path].shape}, "
                    f"the model expects {tuple(variable.shape)}"
                )
            variable.assign(arrays[path])
    return metadata
