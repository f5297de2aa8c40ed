"""Reading a finished (or checkpointed) run directory back: its config and its tuned model.

Every tool that starts from `--run=RUN_DIR` (sample, evaluate, export) goes through here, so
they all rebuild the model the same way the run did: through `gemma_tune.model.prepare`, the
same function training prepared it with (same preset, same seed, quantized and adapted as the
adapter was trained: method, rank, alpha, targets), then its weights.
"""

from __future__ import annotations

import dataclasses
import os

from gemma_tune import model
from gemma_tune.model import adapters
from gemma_tune.model import prepare as prepare_lib
from gemma_tune.runs import integrity, run_dir


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
    return run_dir.read_config(run_path)


def adapter_path(run_path: str) -> str:
    """The run's adapter directory, checked (`integrity.check_adapter`) before any model loads.

    Raises:
      FileNotFoundError: the run saved no adapter yet (it has not finished).
      ValueError: the adapter's files are damaged or do not match each other, naming them.
    """
    path = run_dir.adapter_dir(run_path)
    if not os.path.exists(os.path.join(path, run_dir.ADAPTER_METADATA)):
        raise FileNotFoundError(f"{run_path} has no adapter yet (did the run finish?)")
    integrity.check_adapter(path)
    return path


def init_adapter_path(config) -> str | None:
    """The adapter a run starts from (`train.init_from`: another run's directory, e.g. a
    supervised run before DPO), checked before any model loads; None when unset. `config`:
    a resolved config, or a run's `config.json` as read.

    Raises:
      FileNotFoundError / ValueError: naming `train.init_from` when the directory is not a
        finished run or its adapter is damaged.
    """
    run = config["train"].get("init_from", "")
    if not run:
        return None
    try:
        return adapter_path(run)
    except (FileNotFoundError, ValueError) as error:
        raise type(error)(f"train.init_from={run}: {error}") from error


def load_base(preset: str, adapter_dir: str, dtype: str = "auto", seed: int = 0):
    """Loads `preset` prepared as the adapter was trained (quantization; LoRA/DoRA rank, alpha
    and targets, or every weight trainable for full fine-tuning) but the adapter not applied
    (LoRA's B factors start at zero and DoRA's magnitudes at the base's norms, so this is
    exactly the base). The float base's fingerprint is kept for `adapters.load`'s check.

    Raises:
      ValueError: when the adapter's schema version is newer than this gemma_tune reads.
    """
    settings = prepare_lib.Tuning.from_adapter(adapters.read_metadata(adapter_dir))
    return prepare_lib.prepare(preset, settings, dtype, seed=seed).loaded


def load_tuned(run_path: str, dtype: str | None = None) -> TunedRun:
    """Rebuilds a run's tuned model: its preset (seeded as the run was) plus its adapter.

    Args:
      run_path: a run directory written by `gemma_tune.train`.
      dtype: overrides the run's `model.dtype` ("float32" for exact export checks, say).
    """
    config = read_config(run_path)
    adapter_dir = adapter_path(run_path)
    prepared = prepare_lib.prepare(
        config["model"]["preset"],
        prepare_lib.Tuning.from_adapter(adapters.read_metadata(adapter_dir)),
        dtype or config["model"]["dtype"],
        seed=config.get("seed", 0),
        adapter_dir=adapter_dir,
    )
    return TunedRun(run_path, config, prepared.loaded, prepared.adapter_metadata)
