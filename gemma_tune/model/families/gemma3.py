"""Gemma 3 (`gemma3_1b`, `gemma3_270m`, `gemma3_4b`, ... text): KerasHub's `Gemma3Backbone`
with query/key norms and five sliding-window layers per global one; transformers'
`Gemma3ForCausalLM` (`gemma3_text`); llama.cpp's `gemma3` GGUF files."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

import keras
import keras_hub
import numpy as np

from gemma_tune.model.families import base, gemma3_vision_hf, shared

# Gemma3Backbone hard-codes Gemma 3's attention layout: every sixth layer is global with RoPE
# base 1e6, the other five use a sliding window with base 1e4. A GGUF that says otherwise is
# rejected.
_LOCAL_ROPE_BASE = 10_000.0
_GLOBAL_ROPE_BASE = 1_000_000.0
_SLIDING_WINDOW_PATTERN = 6


# Gemma 3's layer options, shared by the tiny text and vision backbones.
_TINY_LAYER_OPTIONS = dict(
    use_query_key_norm=True,
    use_post_ffw_norm=True,
    use_post_attention_norm=True,
    use_sliding_window_attention=True,
)


def tiny_backbone(common: dict):
    """Two random layers with query/key norms, post norms and a 16-token sliding window."""
    return keras_hub.models.Gemma3Backbone(
        **common, image_size=None, **_TINY_LAYER_OPTIONS, sliding_window_size=16
    )


# The tiny vision encoder: 32x32 images in 4x4 patches, pooled 2x2 into 16 image tokens.
TINY_IMAGE_SIZE = 32


def tiny_vision_backbone(common: dict):
    """`tiny_backbone` with a one-layer vision encoder (`Gemma3VisionEncoder`: 32x32 images,
    4x4 patches, 2x2 pooling, so 16 image tokens) projecting into the language model's width,
    and a 64-token sliding window."""
    encoder = keras_hub.models.Gemma3VisionEncoder(
        image_size=TINY_IMAGE_SIZE,
        patch_size=4,
        num_heads=2,
        hidden_dim=16,
        num_layers=1,
        intermediate_dim=32,
        output_dim=common["hidden_dim"],
        pool_size=2,
        dtype=common["dtype"],
    )
    backbone = keras_hub.models.Gemma3Backbone(
        **common,
        image_size=TINY_IMAGE_SIZE,
        vision_encoder=encoder,
        **_TINY_LAYER_OPTIONS,
        # Both tiny layers slide (Gemma 3's one global layer in six is the sixth); a window
        # of 64 lets an answer see an image at the start of a short prompt.
        sliding_window_size=64,
    )
    # KerasHub initialises the projector with std 0.01, which makes image embeddings ~100x
    # smaller than the tiny text embeddings (std 0.25 * sqrt(hidden)); a trained projector
    # matches them. Scale it up so that the tiny model's answers depend on the image.
    projection = backbone.vision_encoder.get_layer("vision_output_encoder").vision_input_projection
    kernel = projection.kernel  # Drawn after `testing.tiny_backbone` seeded Keras' generator.
    kernel.assign(keras.random.normal(kernel.shape, stddev=0.3, dtype=kernel.dtype))
    return backbone


def image_converter(backbone):
    """Gemma 3's image converter for `backbone`: resize to its square size, pixels to [-1, 1]
    (transformers' Gemma 3 processor: mean 0.5, std 0.5 after dividing by 255)."""
    return keras_hub.layers.Gemma3ImageConverter(
        image_size=(backbone.image_size, backbone.image_size), scale=1 / 127.5, offset=-1.0
    )


VISION = base.Vision(
    start_of_image="<start_of_image>",
    placeholder="<img>",
    end_of_image="<end_of_image>",
    tiny_backbone=tiny_vision_backbone,
    tiny_tokenizer=lambda proto: keras_hub.models.Gemma3Tokenizer(proto=proto),
    image_converter=image_converter,
    image_size=lambda backbone, converter: backbone.image_size,
    tokens_per_image=lambda backbone, converter: (
        backbone.vision_encoder.num_vision_tokens_per_image
    ),
    image_arrays=lambda backbone, converter: {
        "images": ((backbone.image_size, backbone.image_size, 3), "float32")
    },
    # KerasHub's converter crops to the square itself (`crop_to_aspect_ratio`).
    convert=lambda converter, pixels: {"images": converter(pixels)},
    encoder=lambda backbone: backbone.vision_encoder,
    hf_processor_files=gemma3_vision_hf.processor_files,
    hf_tokenizer_entries=gemma3_vision_hf.tokenizer_entries,
    hf_language_model_prefix=gemma3_vision_hf.LANGUAGE_MODEL_PREFIX,
    cache_arguments=lambda backbone, arrays: {
        "img_embeddings": backbone.vision_encoder(arrays["images"]),
        "vision_mask": arrays["vision_mask"],
        "vision_indices": arrays["vision_indices"],
    },
    # SigLIP's attention projections in every encoder layer (Dense, with biases) and the
    # projector into the language model's width (Dense, no bias).
    lora_targets={
        "attention": ("query_proj", "key_proj", "value_proj", "out_proj"),
        "projector": ("vision_input_projection",),
    },
)


def hf_config(backbone, tokenizer, dtype: str) -> dict:
    """transformers' `Gemma3TextConfig` as a dict; with a vision encoder, `Gemma3Config`
    around it (`gemma3_vision_hf`)."""
    text = _hf_text_config(backbone, tokenizer, dtype)
    if backbone.vision_encoder is None:
        return text
    return gemma3_vision_hf.hf_config(backbone, tokenizer, dtype, text, VISION)


def _hf_text_config(backbone, tokenizer, dtype: str) -> dict:
    blocks = shared.blocks(backbone)
    local = [
        b.attention.rope_wavelength for b in blocks if b.attention.use_sliding_window_attention
    ]
    full = [
        b.attention.rope_wavelength for b in blocks if not b.attention.use_sliding_window_attention
    ]
    global_factor = backbone.global_rope_scaling_factor
    if backbone.local_rope_scaling_factor != 1.0:
        raise ValueError("transformers' Gemma 3 has no RoPE scaling on sliding layers")
    return {
        "architectures": ["Gemma3ForCausalLM"],
        "model_type": "gemma3_text",
        **shared.hf_common_config(backbone, tokenizer, dtype),
        **shared.soft_caps(backbone),
        "hidden_activation": "gelu_pytorch_tanh",
        "max_position_embeddings": 131072,
        "query_pre_attn_scalar": shared.query_pre_attn_scalar(backbone),
        "sliding_window": backbone.sliding_window_size,
        "layer_types": shared.layer_types(backbone),
        "rope_theta": float(shared.uniform(full, "global RoPE base") if full else 1_000_000.0),
        "rope_local_base_freq": float(
            shared.uniform(local, "local RoPE base") if local else 10_000.0
        ),
        "rope_scaling": (
            {"rope_type": "linear", "factor": float(global_factor)}
            if global_factor != 1.0
            else None
        ),
        "use_bidirectional_attention": False,
    }


def hf_weights(backbone) -> dict:
    """transformers' `Gemma3ForCausalLM` state dict, float32; with a vision encoder,
    `Gemma3ForConditionalGeneration`'s (`gemma3_vision_hf`)."""
    text = shared.hf_weights(backbone, post_norms=True, query_key_norms=True)
    if backbone.vision_encoder is None:
        return text
    return gemma3_vision_hf.hf_weights(backbone, text)


def gguf_backbone_config(metadata: Mapping[str, Any], source: str = "GGUF") -> dict[str, Any]:
    """Maps GGUF `gemma3.*` metadata onto `keras_hub.models.Gemma3Backbone` arguments.

    Reading the sizes from the file (rather than hard-coding the 270M's) lets the 1B, 4B, 12B
    and 27B text models convert too. What Gemma3Backbone cannot express (another RoPE base, a
    different local/global layer pattern, non-linear RoPE scaling) fails here, before any work.

    Args:
        metadata: GGUF key/value metadata, e.g. `{"gemma3.block_count": 18, ...}`.
        source: the file name, for error messages.

    Returns:
        Keyword arguments for `Gemma3Backbone`, without `vocabulary_size` (taken from the
        embedding tensor) and without `dtype`.

    Raises:
        ValueError: naming the key and `source` when a required key is missing or a value is
            one Gemma3Backbone cannot represent.
    """

    def get(key: str, default: Any = None) -> Any:
        value = metadata.get(f"gemma3.{key}", default)
        if value is None:
            raise ValueError(f"{source}: metadata key 'gemma3.{key}' is missing")
        return value

    num_layers = int(get("block_count"))
    hidden_dim = int(get("embedding_length"))
    num_query_heads = int(get("attention.head_count"))
    head_dim = int(get("attention.key_length", hidden_dim // num_query_heads))
    if int(get("attention.value_length", head_dim)) != head_dim:
        raise ValueError(f"{source}: attention.value_length differs from key_length {head_dim}")
    sliding_window = int(get("attention.sliding_window", 0))
    _check_gguf_attention_layout(metadata, get, num_layers, sliding_window, source)

    def optional_float(key: str) -> float | None:
        value = metadata.get(f"gemma3.{key}")
        return float(value) if value else None

    return {
        "image_size": None,
        "num_layers": num_layers,
        "num_query_heads": num_query_heads,
        "num_key_value_heads": int(get("attention.head_count_kv", num_query_heads)),
        "hidden_dim": hidden_dim,
        "intermediate_dim": int(get("feed_forward_length")),
        "head_dim": head_dim,
        # llama.cpp scales queries by 1/sqrt(hidden/heads) for the 27B (62 layers) only, as
        # Hugging Face's query_pre_attn_scalar does; every other size uses 1/sqrt(head_dim).
        "query_head_dim_normalize": num_layers != 62,
        "use_query_key_norm": True,
        "use_post_ffw_norm": True,
        "use_post_attention_norm": True,
        "attention_logit_soft_cap": optional_float("attn_logit_softcapping"),
        "final_logit_soft_cap": optional_float("final_logit_softcapping"),
        "use_sliding_window_attention": sliding_window > 0,
        "sliding_window_size": sliding_window or 4096,
        "local_rope_scaling_factor": 1.0,
        "global_rope_scaling_factor": _gguf_global_rope_factor(get, source),
        # float32 in the file; str() gives its shortest form (1e-06, not 9.99999997e-07).
        "layer_norm_epsilon": float(str(np.float32(get("attention.layer_norm_rms_epsilon", 1e-6)))),
        "vision_encoder": None,
    }


def _gguf_global_rope_factor(get, source: str) -> float:
    """The linear RoPE factor of the global layers (llama.cpp applies it to those only)."""
    global_base = float(get("rope.freq_base", _GLOBAL_ROPE_BASE))
    local_base = float(get("rope.freq_base_swa", _LOCAL_ROPE_BASE))
    if (global_base, local_base) != (_GLOBAL_ROPE_BASE, _LOCAL_ROPE_BASE):
        raise ValueError(
            f"{source}: RoPE bases {global_base:g} (global) and {local_base:g} (sliding) are not "
            f"Gemma 3's {_GLOBAL_ROPE_BASE:g} and {_LOCAL_ROPE_BASE:g}, which Gemma3Backbone fixes"
        )
    scaling_type = str(get("rope.scaling.type", "none"))
    if scaling_type not in ("none", "linear"):
        raise ValueError(f"{source}: RoPE scaling {scaling_type!r} is not supported (only linear)")
    return float(get("rope.scaling.factor", 1.0)) if scaling_type == "linear" else 1.0


def _check_gguf_attention_layout(metadata, get, num_layers, sliding_window, source) -> None:
    """Rejects a sliding/global layer pattern other than Gemma 3's 5 local : 1 global."""
    pattern = metadata.get("gemma3.attention.sliding_window_pattern", _SLIDING_WINDOW_PATTERN)
    expected = [
        i % _SLIDING_WINDOW_PATTERN != _SLIDING_WINDOW_PATTERN - 1 for i in range(num_layers)
    ]
    if isinstance(pattern, (list, tuple)):
        pattern_ok = [bool(is_local) for is_local in pattern] == expected
    else:
        pattern_ok = int(pattern) == _SLIDING_WINDOW_PATTERN
    if sliding_window and not pattern_ok:
        raise ValueError(f"{source}: sliding window pattern {pattern!r} is not 5 local : 1 global")


def gguf_tensor_targets(backbone) -> dict[str, tuple[Any, Callable[[np.ndarray], np.ndarray]]]:
    """GGUF tensor name -> (KerasHub variable, function from the Hugging Face layout to it)."""
    hidden, head_dim = backbone.hidden_dim, backbone.head_dim

    def unchanged(weight: np.ndarray) -> np.ndarray:
        return weight

    def norm(weight: np.ndarray) -> np.ndarray:
        return weight - 1.0  # llama.cpp stores w + 1; KerasHub computes x * (1 + scale)

    def transpose(weight: np.ndarray) -> np.ndarray:
        return weight.T

    def heads_in(heads: int) -> Callable[[np.ndarray], np.ndarray]:
        # [heads * head_dim, hidden] -> [heads, hidden, head_dim]
        return lambda weight: weight.reshape(heads, head_dim, hidden).transpose(0, 2, 1)

    def heads_out(weight: np.ndarray) -> np.ndarray:
        # [hidden, heads * head_dim] -> [heads, head_dim, hidden]
        return weight.reshape(hidden, backbone.num_query_heads, head_dim).transpose(1, 2, 0)

    targets = {
        "token_embd.weight": (backbone.get_layer("token_embedding").embeddings, unchanged),
        "output_norm.weight": (backbone.get_layer("final_normalization").scale, norm),
    }
    for index, block in enumerate(shared.blocks(backbone)):
        attention = block.attention
        for suffix, variable, to_keras in (
            ("attn_norm", block.pre_attention_norm.scale, norm),
            ("post_attention_norm", block.post_attention_norm.scale, norm),
            ("ffn_norm", block.pre_ffw_norm.scale, norm),
            ("post_ffw_norm", block.post_ffw_norm.scale, norm),
            ("attn_q_norm", attention.query_norm.scale, norm),
            ("attn_k_norm", attention.key_norm.scale, norm),
            ("attn_q", attention.query_dense.kernel, heads_in(backbone.num_query_heads)),
            ("attn_k", attention.key_dense.kernel, heads_in(backbone.num_key_value_heads)),
            ("attn_v", attention.value_dense.kernel, heads_in(backbone.num_key_value_heads)),
            ("attn_output", attention.output_dense.kernel, heads_out),
            ("ffn_gate", block.gating_ffw.kernel, transpose),
            ("ffn_up", block.gating_ffw_2.kernel, transpose),
            ("ffn_down", block.ffw_linear.kernel, transpose),
        ):
            targets[f"blk.{index}.{suffix}.weight"] = (variable, to_keras)
    return targets


# Hugging Face weight name within a decoder layer -> (GGUF name, stored as weight + 1).
_GGUF_LAYER_TENSORS = {
    "input_layernorm": ("attn_norm", True),
    "post_attention_layernorm": ("post_attention_norm", True),
    "pre_feedforward_layernorm": ("ffn_norm", True),
    "post_feedforward_layernorm": ("post_ffw_norm", True),
    "self_attn.q_norm": ("attn_q_norm", True),
    "self_attn.k_norm": ("attn_k_norm", True),
    "self_attn.q_proj": ("attn_q", False),
    "self_attn.k_proj": ("attn_k", False),
    "self_attn.v_proj": ("attn_v", False),
    "self_attn.o_proj": ("attn_output", False),
    "mlp.gate_proj": ("ffn_gate", False),
    "mlp.up_proj": ("ffn_up", False),
    "mlp.down_proj": ("ffn_down", False),
}
_GGUF_LAYER_NAME = re.compile(r"^model\.layers\.(\d+)\.(.+)\.weight$")


def gguf_tensor_name(hf_name: str) -> tuple[str, bool]:
    """llama.cpp's tensor name for a transformers Gemma 3 weight, and whether GGUF stores it
    plus one (the norms: llama.cpp computes `x * w`, transformers `x * (1 + w)`); the layout
    is transformers' `(out, in)` in both.

    Raises:
      ValueError: for a weight llama.cpp's Gemma 3 has no tensor for.
    """
    if hf_name == "model.embed_tokens.weight":
        return "token_embd.weight", False
    if hf_name == "model.norm.weight":
        return "output_norm.weight", True
    match = _GGUF_LAYER_NAME.match(hf_name)
    if match and match.group(2) in _GGUF_LAYER_TENSORS:
        name, plus_one = _GGUF_LAYER_TENSORS[match.group(2)]
        return f"blk.{match.group(1)}.{name}.weight", plus_one
    raise ValueError(f"{hf_name} has no llama.cpp Gemma 3 tensor")


def gguf_metadata(hf_config: Mapping[str, Any]) -> dict[str, Any]:
    """llama.cpp's `gemma3.*` metadata for a transformers Gemma 3 config (what
    `gguf_backbone_config` reads back).

    Raises:
      ValueError: for what llama.cpp's Gemma 3 cannot express (an attention soft cap).
    """
    if hf_config.get("attn_logit_softcapping"):
        raise ValueError("llama.cpp's Gemma 3 has no attention logit soft cap")
    metadata = {
        "context_length": int(hf_config["max_position_embeddings"]),
        "embedding_length": int(hf_config["hidden_size"]),
        "block_count": int(hf_config["num_hidden_layers"]),
        "feed_forward_length": int(hf_config["intermediate_size"]),
        "attention.head_count": int(hf_config["num_attention_heads"]),
        "attention.head_count_kv": int(hf_config["num_key_value_heads"]),
        "attention.key_length": int(hf_config["head_dim"]),
        "attention.value_length": int(hf_config["head_dim"]),
        "attention.layer_norm_rms_epsilon": float(hf_config["rms_norm_eps"]),
        "attention.sliding_window": int(hf_config["sliding_window"]),
        "rope.freq_base": float(hf_config["rope_theta"]),
        "rope.freq_base_swa": float(hf_config["rope_local_base_freq"]),
    }
    if hf_config.get("final_logit_softcapping"):
        metadata["final_logit_softcapping"] = float(hf_config["final_logit_softcapping"])
    scaling = hf_config.get("rope_scaling")
    if scaling:
        metadata["rope.scaling.type"] = "linear"
        metadata["rope.scaling.factor"] = float(scaling["factor"])
    return metadata


FAMILY = shared.family(
    name="gemma3",
    title="Gemma 3",
    backbone_class=keras_hub.models.Gemma3Backbone,
    causal_lm_class=keras_hub.models.Gemma3CausalLM,
    preprocessor_class=keras_hub.models.Gemma3CausalLMPreprocessor,
    tokenizer_class=keras_hub.models.Gemma3Tokenizer,
    tiny_backbone=tiny_backbone,
    tiny_tokenizer=lambda proto: keras_hub.models.Gemma3Tokenizer(
        proto=proto, has_vision_tokens=False
    ),
    hf_config=hf_config,
    hf_weights=hf_weights,
    # Gemma3CausalLM's cache builder also takes image embeddings, vision mask, padding mask
    # and vision indices.
    cache_arguments=4,
    # Gemma 3 4B, 12B and 27B presets carry a vision encoder; `model.load` loads it (`vision`).
    encoders=("vision_encoder",),
    vision=VISION,
    gguf=base.GgufImport(
        architecture="gemma3",
        backbone_config=gguf_backbone_config,
        tensor_targets=gguf_tensor_targets,
        tensor_name=gguf_tensor_name,
        metadata=gguf_metadata,
        tokenizer_arguments={"has_vision_tokens": False},
    ),
)
