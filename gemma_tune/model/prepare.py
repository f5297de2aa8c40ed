"""The one path from a preset name to a model ready to train or to use: `prepare`.

Training (`gemma_tune.train`) and everything that rebuilds a run's model afterwards (sample,
evaluate, export, through `gemma_tune.runs.tuned_run`) call `prepare`, so a tuned model is
rebuilt exactly as it was trained: the same preset and seed, the same quantized base, the same
adapters on the same layers, and then the saved weights. Were the two written separately, a
change to one (a new method, a quantization setting) would silently make saved adapters load
onto a differently prepared model.
"""

from __future__ import annotations

import dataclasses

from gemma_tune import model
from gemma_tune.model import adapters, lora
from gemma_tune.model import quantize as quantize_lib


@dataclasses.dataclass(frozen=True)
class Tuning:
    """What a run trains and on what base: the tuning `method` ("lora", "dora" or "full"), the
    LoRA/DoRA settings (`rank`, `alpha`, `targets`, `dropout`, `layout`; `targets` empty means
    the default ones; `vision_targets`, LoRA on the vision tower: `model.vision_lora`), and the
    base's storage (`quantize` "none", "int8" or "int4", with
    `int4_block_size`). Its attributes are those `model.enable_tuning` reads from a config's
    `lora` section."""

    method: str = "lora"
    rank: int = 8
    alpha: float = 0.0
    targets: tuple[str, ...] = ()
    dropout: float = 0.0
    layout: str = lora.DEFAULT_LAYOUT
    vision_targets: tuple[str, ...] = ()
    quantize: str = "none"
    int4_block_size: int = quantize_lib.INT4_BLOCK_SIZE

    @classmethod
    def from_config(cls, config) -> Tuning:
        """The tuning an experiment config asks for (`method`, `lora.*`, `model.quantize`)."""
        return cls(
            method=config.method,
            rank=config.lora.rank,
            alpha=config.lora.alpha,
            targets=tuple(config.lora.targets),
            dropout=config.lora.dropout,
            # A run started before lora.layout existed (resumed with --resume) was per_head.
            layout=config.lora.get("layout", lora.LEGACY_LAYOUT),
            vision_targets=tuple(config.lora.get("vision_targets", ())),
            quantize=config.model.quantize,
            int4_block_size=config.model.int4_block_size,
        )

    @classmethod
    def from_adapter(cls, metadata: dict) -> Tuning:
        """The tuning a saved adapter was trained with (its `adapter.json`). Dropout is left
        out (0): it only acts while training. Adapters from before int4 block sizes were
        recorded used `quantize.LEGACY_INT4_BLOCK_SIZE`; adapters of schema 1 and 2 have no
        layout and are `per_head` (`adapters.lora_layout`)."""
        method = metadata.get("method")
        if method != "full":
            method = "dora" if metadata.get("dora", False) else "lora"
        return cls(
            method=method,
            rank=metadata.get("rank", 0),
            alpha=metadata.get("alpha", 0.0),
            targets=tuple(metadata.get("targets") or ()),
            layout=adapters.lora_layout(metadata),
            vision_targets=tuple(metadata.get("vision_targets") or ()),
            quantize=metadata.get("quantize", "none"),
            int4_block_size=metadata.get("int4_block_size", quantize_lib.LEGACY_INT4_BLOCK_SIZE),
        )


@dataclasses.dataclass
class Prepared:
    """A prepared model and what preparing it learnt along the way.

    Attributes:
      loaded: the model, quantized and made tunable (its `base_fingerprint` set).
      base_parameters: the float base's parameter count, before quantizing and tuning.
      adapter_metadata: the applied adapter's metadata (`adapter.json`), or None.
    """

    loaded: model.LoadedModel
    base_parameters: int
    adapter_metadata: dict | None = None


def prepare(
    preset: str,
    settings: Tuning,
    dtype: str = "auto",
    seed: int = 0,
    adapter_dir: str | None = None,
    remat: str = "none",
) -> Prepared:
    """Loads `preset` and prepares it for `settings`, optionally applying a saved adapter.

    In order: seed Keras and load the preset (tiny models are drawn from `seed`); fingerprint
    the float base (adapters are checked against it); quantize the base (QLoRA); seed again
    and enable LoRA/DoRA or make every weight trainable (so the adapters' initialisation does
    not depend on what loading drew); rematerialise the blocks as `remat` says; load the adapter
    in `adapter_dir` if given. Without an adapter the model computes exactly the base (LoRA's
    B factors start at zero, DoRA's magnitudes at the base's norms).

    Args:
      preset: a KerasHub preset, a preset directory, a GGUF file or `tiny:ARCH`.
      settings: what is tuned and how the base is stored (`Tuning.from_config` for a run,
        `Tuning.from_adapter` to rebuild a saved one).
      dtype: "float32", "bfloat16" or "auto".
      seed: the run's seed.
      adapter_dir: a saved adapter to apply (it must fit `settings`).
      remat: what each block recomputes in the backward pass (training only): "none",
        "matmuls" or "full" (`model.remat_mode` resolves `train.remat`).

    Raises:
      ValueError: unknown settings, or an adapter that does not fit (another base, other
        shapes, a newer schema).
    """
    import keras

    if adapter_dir is not None:
        _check_layout(settings, adapter_dir)
    keras.utils.set_random_seed(seed)
    loaded = model.load(preset, dtype, seed=seed)
    loaded.base_fingerprint = adapters.fingerprint(loaded.causal_lm)
    base_parameters, _ = model.parameter_counts(loaded)
    quantize_lib.quantize(loaded.backbone, settings.quantize, settings.int4_block_size)
    keras.utils.set_random_seed(seed)
    model.enable_tuning(loaded, settings.method, settings)
    model.enable_remat(loaded, remat)
    metadata = None
    if adapter_dir is not None:
        metadata = adapters.load(loaded.causal_lm, adapter_dir, loaded.base_fingerprint)
    return Prepared(loaded, base_parameters, metadata)


def _check_layout(settings: Tuning, adapter_dir: str) -> None:
    """Refuses, before anything loads, a LoRA/DoRA adapter whose factors are in another
    `lora.layout` than `settings` (its weights could not fit), saying which layout to set:
    runs made before `peft` became the default are `per_head`."""
    if settings.method == "full":
        return
    metadata = adapters.read_metadata(adapter_dir)
    if metadata.get("method") == "full":
        return
    saved = adapters.lora_layout(metadata)
    if saved != settings.layout:
        raise ValueError(
            f"the adapter in {adapter_dir} has LoRA factors in the {saved!r} layout and this "
            f"run asks for {settings.layout!r}: set lora.layout={saved} to start from it"
        )
