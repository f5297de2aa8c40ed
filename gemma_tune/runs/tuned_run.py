"""Reading a finished (or checkpointed) run directory back: its config and its tuned model.

Every tool that starts from `--run=RUN_DIR` (sample, evaluate, export) goes through here, so
they all rebuild the model the same way the run did: same preset, same seed (tiny models are
drawn from it), quantized and adapted as the adapter was trained (method, rank, alpha,
targets), then its weights.
"""

from __future__ import annotations

import dataclasses
import json
import os

from gemma_tune import model
from gemma_tune.model import adapters, quantize

CONFIG_FILE = "config.json"
ADAPTER_DIR = "adapter"


@dataclasses.dataclass
class TunedRun:
    """A run's resolved config (as saved, a plain dict), its model with the adapter loaded,
    and the adapter's metadata."""

    path: str
    config: dict
    loaded: model.LoadedModel
    adapter_metadata: dict


def read_config(run_path: str) -> dict:
    """The run's resolved config as written at its start (`config.json`).

    Raises:
      FileNotFoundError: when `run_path` is not a run directory.
    """
    config_path = os.path.join(run_path, CONFIG_FILE)
    if not os.path.exists(config_path):
        raise FileNotFoundError(f"{run_path} is not a run directory (no {CONFIG_FILE})")
    with open(config_path) as f:
        return json.load(f)


def adapter_path(run_path: str) -> str:
    """The run's adapter directory; raises FileNotFoundError when the run saved none yet."""
    path = os.path.join(run_path, ADAPTER_DIR)
    if not os.path.exists(os.path.join(path, adapters.METADATA_FILE)):
        raise FileNotFoundError(f"{run_path} has no adapter yet (did the run finish?)")
    return path


def load_base(preset: str, adapter_dir: str, dtype: str = "auto", seed: int = 0):
    """Loads `preset` prepared as the adapter was trained (quantization; LoRA/DoRA rank, alpha
    and targets, or every weight trainable for full fine-tuning) but the adapter not applied
    (LoRA's B factors start at zero and DoRA's magnitudes at the base's norms, so this is
    exactly the base). The float base's fingerprint is kept for `adapters.load`'s check."""
    with open(os.path.join(adapter_dir, adapters.METADATA_FILE)) as f:
        metadata = json.load(f)
    loaded = model.load(preset, dtype, seed=seed)
    loaded.base_fingerprint = adapters.fingerprint(loaded.causal_lm)
    quantize.quantize(
        loaded.backbone,
        metadata.get("quantize", "none"),
        metadata.get("int4_block_size", quantize.LEGACY_INT4_BLOCK_SIZE),
    )
    if metadata.get("method") == "full":
        model.enable_full(loaded)
        return loaded
    model.enable_lora(
        loaded,
        metadata["rank"],
        alpha=metadata.get("alpha", 0.0),
        targets=metadata.get("targets") or None,
        dora=metadata.get("dora", False),
    )
    return loaded


def load_tuned(run_path: str, dtype: str | None = None) -> TunedRun:
    """Rebuilds a run's tuned model: its preset (seeded as the run was) plus its adapter.

    Args:
      run_path: a run directory written by `gemma_tune.train`.
      dtype: overrides the run's `model.dtype` ("float32" for exact export checks, say).
    """
    config = read_config(run_path)
    adapter_dir = adapter_path(run_path)
    loaded = load_base(
        config["model"]["preset"],
        adapter_dir,
        dtype or config["model"]["dtype"],
        seed=config.get("seed", 0),
    )
    metadata = adapters.load(loaded.causal_lm, adapter_dir, loaded.base_fingerprint)
    return TunedRun(run_path, config, loaded, metadata)
