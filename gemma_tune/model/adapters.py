"""LoRA adapter files keyed by layer path, not layer index.

An adapter is `adapter.npz` (one array per trainable variable, named by its Keras path, e.g.
`decoder_block_0/attention/query/lora_kernel_a`) plus `adapter.json` (base preset, rank,
gemma_tune version, and each array's shape). Unlike KerasHub's `save_lora_weights`, which keys
weights by position, a path-keyed file cannot silently land on the wrong layer.
"""

from __future__ import annotations

import hashlib
import json
import os

import numpy as np

import gemma_tune

WEIGHTS_FILE = "adapter.npz"
METADATA_FILE = "adapter.json"


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
    its LoRA-enabled layers, for an adapter's metadata."""
    ranks, alphas, targets, dora = set(), set(), set(), False
    for layer in causal_lm.backbone._flatten_layers(include_self=False):
        if getattr(layer, "lora_enabled", False):
            ranks.add(int(layer.lora_rank))
            alphas.add(float(layer.lora_alpha))
            targets.add(layer.name)
            dora = dora or getattr(layer, "lora_dora", False)
    if not ranks:
        return {}
    return {
        "rank": max(ranks),
        "alpha": max(alphas),
        "targets": sorted(targets),
        "dora": dora,
    }


def save(causal_lm, directory: str, metadata: dict) -> str:
    """Writes the CausalLM's trainable variables (the LoRA/DoRA factors; every weight after
    full fine-tuning) to `directory`. `metadata["base_fingerprint"]`, when given, is the
    fingerprint taken before quantizing and tuning (required after full fine-tuning).

    Returns:
      The path of the weights file.
    """
    os.makedirs(directory, exist_ok=True)
    arrays = {v.path: np.asarray(v.numpy()) for v in causal_lm.trainable_variables}
    weights_path = os.path.join(directory, WEIGHTS_FILE)
    tmp_path = weights_path + ".tmp.npz"
    np.savez(tmp_path, **arrays)
    os.replace(tmp_path, weights_path)
    full_metadata = {
        **metadata,
        "base_fingerprint": metadata.get("base_fingerprint") or fingerprint(causal_lm),
        "gemma_tune_version": gemma_tune.__version__,
        "weights": {path: list(array.shape) for path, array in arrays.items()},
    }
    with open(os.path.join(directory, METADATA_FILE), "w") as f:
        json.dump(full_metadata, f, indent=2)
    return weights_path


def load(causal_lm, directory: str, base_fingerprint: str = "") -> dict:
    """Loads adapter weights into a CausalLM prepared like the trained one (same method and
    targets). `base_fingerprint` is the base's fingerprint taken before it was quantized
    (`model.LoadedModel.base_fingerprint`); by default it is computed from `causal_lm`.

    Raises:
      ValueError: when a variable is missing on either side or its shape differs, naming it.

    Returns:
      The adapter's metadata.
    """
    with open(os.path.join(directory, METADATA_FILE)) as f:
        metadata = json.load(f)
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
