"""What a Gemma family module provides: the `Family` record every other module asks.

A family module (`gemma1.py`, `gemma2.py`, `gemma3.py`, ...) defines `FAMILY = Family(...)` and
is listed in `families/__init__.py`. It must provide:

- `name` (`tiny:NAME`, logs) and `title`, and its KerasHub classes: backbone, CausalLM,
  CausalLM preprocessor, tokenizer; `matches(backbone)` when several families share a
  backbone class (Gemma 1 and 2 are both `GemmaBackbone`).
- `tiny_backbone(common)` and `tiny_tokenizer(proto)`: a tiny random model with every
  architectural feature of the family, for tests and smoke runs (`gemma_tune.testing`).
- `lora_targets`: the LoRA target names (the projection layers' KerasHub names) and their
  `attention` / `mlp` groups.
- `chat`: the chat-template markers and roles (`training.template`), and `hf_chat_template`,
  the same format as a Jinja template for exported tokenizers, and `hf_tokenizer_class`,
  transformers' tokenizer class for it.
- Hugging Face export: `hf_config(backbone, tokenizer, dtype)` (transformers' config.json) and
  `hf_weights(backbone)` (the float32 state dict), and `peft_modules`: target name ->
  (transformers module under `model.layers.{i}.`, whether the kernel's first axis is heads).
- `cache_arguments`: how many extra (None) arguments its CausalLM's cache builder takes
  (`keras_compat.build_cache`), for generation with a KV cache.
- `position_ids`: whether its backbone takes `position_ids` as an input (Gemma 4); every
  forward pass builds its inputs with `Family.backbone_inputs`.
- `kernel_read_targets`: LoRA targets whose kernel its decoder blocks multiply by directly
  (`ops.matmul(x, layer.kernel)`) instead of calling the layer; only what the layer's `kernel`
  returns takes effect there (`model.lora`, `model.quantize`, `model.tuning`).
- `encoders`: the backbone arguments that hold non-text encoders (Gemma 3's
  `vision_encoder`; Gemma 4's vision and audio encoders). `model.load` sets them to None when
  it loads a preset, so a multimodal preset loads as its language model alone, except the
  vision encoder of a family with `vision` (Gemma 3 and 4), which it loads to read images.
- Optionally `gguf`: how to import llama.cpp GGUF files of this family (`model.gguf_convert`).
- Optionally `vision`: how its backbone sees images (`Vision`: the image tokens, the tiny
  vision model, the image converter), for vision tuning (`model.vision`).
- Optionally `tools`: how its chat template writes tool declarations, calls and results
  (`ToolFormat`, Gemma 4); a family without one refuses examples that use tools.

Sharding needs nothing per family: `training.sharding` lays weights out by shape. Packing needs
the decoder blocks' attention mask (`keras_compat.narrowed_attention_masks`), which every
KerasHub Gemma block has; `tests/keras_compat_test.py` checks it per family.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any


@dataclasses.dataclass(frozen=True)
class ChatMarkers:
    """How a family's chat template marks turns.

    Attributes:
      start_of_turn / end_of_turn: the special tokens around each turn.
      user_role / model_role: the role names written after `start_of_turn`.
      system_role: the role of a system turn, for a family that has one (Gemma 4); None folds
        a system prompt into the first user turn (Gemma 1-3).
    """

    start_of_turn: str
    end_of_turn: str
    user_role: str = "user"
    model_role: str = "model"
    system_role: str | None = None


@dataclasses.dataclass(frozen=True)
class GgufImport:
    """How to read a family's model from a GGUF file, and write one (`export.gguf_export`).

    Attributes:
      architecture: GGUF `general.architecture` (e.g. "gemma3").
      backbone_config: (metadata, source name) -> backbone keyword arguments (no vocabulary).
      tensor_targets: backbone -> {GGUF tensor name: (variable, Hugging Face layout -> Keras)}.
      tokenizer_arguments: extra keyword arguments for the tokenizer class.
      tensor_name: Hugging Face weight name -> (GGUF tensor name, whether GGUF stores the
        weight plus one, as llama.cpp does for Gemma's norms).
      metadata: the family's Hugging Face config dict -> GGUF `ARCH.*` metadata, keys without
        the architecture prefix (`{"block_count": 18, ...}`).
    """

    architecture: str
    backbone_config: Callable[[Mapping[str, Any], str], dict]
    tensor_targets: Callable[[Any], dict]
    tensor_name: Callable[[str], tuple[str, bool]]
    metadata: Callable[[Mapping[str, Any]], dict]
    tokenizer_arguments: Mapping[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class Vision:
    """How a family's backbone sees images (Gemma 3's `Gemma3VisionEncoder`, Gemma 4's
    `Gemma4VisionEncoder`).

    A prompt holds each image as `span_prefix`, `start_of_image`, `tokens_per_image(...)`
    copies of `placeholder`, `end_of_image` and `span_suffix`; the backbone replaces the
    placeholders' embeddings by the vision encoder's output for the image. Its inputs are the
    image arrays `image_arrays` names (one row of images each: Gemma 3's `images`, Gemma 4's
    `pixel_values` and `pixel_position_ids`) plus `vision_indices` and `vision_mask`, which
    `model.vision` builds for every family alike.

    Attributes:
      start_of_image / placeholder / end_of_image: the image tokens of the vocabulary.
      tiny_backbone: (common tiny shape) -> a tiny backbone with a vision encoder.
      tiny_tokenizer: (SentencePiece proto) -> its tokenizer with the image tokens.
      image_converter: (backbone) -> the family's image converter for its encoder's size (the
        tiny model's, and a preset's that saved none).
      image_size: (backbone, image converter) -> the square side in pixels an image is
        cropped and resized to.
      tokens_per_image: (backbone, image converter) -> the placeholder tokens of one image.
      image_arrays: (backbone, image converter or None) -> `{input name: (shape of one
        image's array, dtype)}`; with None (a batch without images) only the names, the
        shapes' last axes and the dtypes count.
      convert: (image converter, `[height, width, 3]` RGB pixels 0-255, float32) -> `{input
        name: one image's array}`, the image center-cropped to a square and converted.
      encoder: (backbone) -> its vision encoder (projector included), None when it has none.
      cache_arguments: (backbone, image arrays of `model.vision.batch_arrays`) -> the keyword
        arguments of its CausalLM's `call_with_cache` that put the images in a prefill.
      hf_processor_files: (backbone, image converter) -> `{file name: JSON}` of transformers'
        processor for the exported model (`export.hf_export`).
      hf_tokenizer_entries: (this record) -> the exported tokenizer config's image tokens.
      hf_language_model_prefix: where transformers' image-text-to-text class keeps the
        language model's modules (`model.language_model.`), for PEFT module names.
      lora_targets: `lora.vision_targets` names ("attention", "projector") -> the names of the
        encoder's `keras.layers.Dense` layers they adapt (`model.vision_lora`); empty: the
        family's vision tower takes no LoRA.
      span_prefix / span_suffix: the text around an image's tokens, as the family's processor
        writes it (Gemma 3: blank lines; Gemma 4: nothing).
    """

    start_of_image: str
    placeholder: str
    end_of_image: str
    tiny_backbone: Callable[[dict], Any]
    tiny_tokenizer: Callable[[bytes], Any]
    image_converter: Callable[[Any], Any]
    image_size: Callable[[Any, Any], int]
    tokens_per_image: Callable[[Any, Any], int]
    image_arrays: Callable[[Any, Any], Mapping[str, tuple[tuple[int, ...], str]]]
    convert: Callable[[Any, Any], Mapping[str, Any]]
    encoder: Callable[[Any], Any]
    cache_arguments: Callable[[Any, Mapping[str, Any]], dict]
    hf_processor_files: Callable[[Any, Any], dict]
    hf_tokenizer_entries: Callable[[Any], dict]
    hf_language_model_prefix: str
    lora_targets: Mapping[str, tuple[str, ...]] = dataclasses.field(default_factory=dict)
    span_prefix: str = "\n\n"
    span_suffix: str = "\n\n"

    @property
    def tokens(self) -> tuple[str, str, str]:
        """The three image tokens, for a vocabulary."""
        return (self.start_of_image, self.placeholder, self.end_of_image)


@dataclasses.dataclass(frozen=True)
class ToolFormat:
    """How a family's chat template writes tool calling (Gemma 4's `<|tool_call>` ...).

    Each function returns text holding the family's tool tokens, which `training.template`
    inserts by id.

    Attributes:
      tokens: the special tokens the texts hold (for a vocabulary, and to insert by id).
      declarations: (`example.Tool`s) -> the text closing the system turn.
      calls: (a turn's `example.ToolCall`s) -> the model's calls.
      responses: (a turn's `example.ToolResponse`s) -> the tool results after the calls,
        starting with `awaiting_response`.
      awaiting_response: the token the model writes after its calls to hand over to the tools
        (generation stops there; it carries the calls' loss when no result follows in a row).
    """

    tokens: tuple[str, ...]
    declarations: Callable[[Any], str]
    calls: Callable[[Any], str]
    responses: Callable[[Any], str]
    awaiting_response: str


@dataclasses.dataclass(frozen=True)
class Family:
    """Everything that differs between Gemma families (see the module docstring)."""

    name: str
    title: str
    backbone_class: type
    causal_lm_class: type
    preprocessor_class: type
    tokenizer_class: type
    tiny_backbone: Callable[[dict], Any]
    tiny_tokenizer: Callable[[bytes], Any]
    lora_targets: tuple[str, ...]
    lora_target_groups: Mapping[str, tuple[str, ...]]
    default_lora_targets: tuple[str, ...]
    chat: ChatMarkers
    hf_chat_template: str
    hf_tokenizer_class: str
    hf_config: Callable[[Any, Any, str], dict]
    hf_weights: Callable[[Any], dict]
    peft_modules: Mapping[str, tuple[str, bool]]
    cache_arguments: int = 0
    matches: Callable[[Any], bool] | None = None
    gguf: GgufImport | None = None
    position_ids: bool = False
    kernel_read_targets: tuple[str, ...] = ()
    encoders: tuple[str, ...] = ()
    vision: Vision | None = None
    tools: ToolFormat | None = None

    def owns(self, backbone) -> bool:
        """Whether `backbone` is a model of this family."""
        if not isinstance(backbone, self.backbone_class):
            return False
        return self.matches is None or self.matches(backbone)

    def backbone_inputs(self, token_ids, padding_mask, positions=None) -> dict:
        """The input dict of this family's backbone (and CausalLM) for one forward pass.

        Args:
          token_ids / padding_mask: `[batch, length]` arrays (NumPy or traced).
          positions: `[batch, length]` position ids, for a family whose backbone takes them
            (`position_ids`); None means 0..length-1 in every row. Ignored otherwise (Gemma
            1-3 count positions themselves).
        """
        inputs = {"token_ids": token_ids, "padding_mask": padding_mask}
        if self.position_ids:
            if positions is None:
                positions = _default_positions(token_ids)
            inputs["position_ids"] = positions
        return inputs


def _default_positions(token_ids):
    """0..length-1 in every row, as NumPy for NumPy ids (Keras refuses a mix of arrays and
    tensors in one call) and as a tensor otherwise."""
    import numpy as np

    if isinstance(token_ids, np.ndarray):
        return np.broadcast_to(np.arange(token_ids.shape[1], dtype=np.int32), token_ids.shape)
    from keras import ops

    shape = ops.shape(token_ids)
    return ops.broadcast_to(ops.arange(shape[1], dtype="int32")[None], shape)
