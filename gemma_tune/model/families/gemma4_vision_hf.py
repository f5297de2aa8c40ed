"""Gemma 4 with a vision encoder -> transformers' `Gemma4ForConditionalGeneration`
(image-text-to-text): its processor files and tokenizer entries (config and weights:
`gemma4_hf`).

`AutoProcessor.from_pretrained(DIR)` reads `processor_config.json` (`Gemma4Processor` with
its image processor, `Gemma4ImageProcessor`: aspect-ratio-preserving resize within
`max_soft_tokens` pooled tokens, rescale 1/255, no normalization, patches of `patch_size`;
and the audio feature extractor and video processor `Gemma4Processor` needs to exist, which
an image model never uses); the tokenizer config names the image tokens (`boi_token`,
`eoi_token`, `image_token`).
"""

from __future__ import annotations

import numpy as np

LANGUAGE_MODEL_PREFIX = "model.language_model."
PROCESSOR_CONFIG = "processor_config.json"


def image_processor(image_converter) -> dict:
    """transformers' `Gemma4ImageProcessor` settings for a KerasHub `Gemma4ImageConverter`.

    Raises:
      ValueError: for a converter that does not map pixels to [0, 1] (transformers' Gemma 4
        processor only rescales by 1/255).
    """
    scale = np.asarray(1.0 if image_converter.scale is None else image_converter.scale)
    offset = np.asarray(0.0 if image_converter.offset is None else image_converter.offset)
    if not (np.allclose(scale, 1 / 255) and np.allclose(offset, 0.0)):
        raise ValueError(
            f"the image converter scales pixels by {scale.tolist()} and offsets by "
            f"{offset.tolist()}; transformers' Gemma 4 processor maps them to [0, 1] "
            "(scale 1/255, offset 0)"
        )
    return {
        "image_processor_type": "Gemma4ImageProcessor",
        "do_convert_rgb": True,
        "do_resize": True,
        "resample": 3,  # bicubic, as KerasHub's converter (which also antialiases)
        "do_rescale": True,
        "rescale_factor": 1 / 255,
        "do_normalize": False,
        "image_mean": [0.0, 0.0, 0.0],
        "image_std": [1.0, 1.0, 1.0],
        "patch_size": int(image_converter.patch_size),
        "max_soft_tokens": int(image_converter.max_soft_tokens),
        "pooling_kernel_size": int(image_converter.pooling_kernel_size),
    }


def processor_files(backbone, image_converter) -> dict[str, dict]:
    """`{file name: JSON}` of the processor `AutoProcessor.from_pretrained` reads.

    Raises:
      ValueError: for image tokens that attend both ways (`use_vision_bidirectional_attention`,
        the 26B and 31B presets) with an image longer than the sliding window: KerasHub then
        limits the image's attention on sliding layers to the window, transformers does not,
        so the exported model would compute something else.
    """
    from gemma_tune.model.families import gemma4_vision

    tokens = gemma4_vision.tokens_per_image(backbone, image_converter)
    window = int(backbone.sliding_window_size)
    if backbone.use_vision_bidirectional_attention and tokens + 2 > window:
        raise ValueError(
            f"an image's {tokens} tokens attend both ways but pass the {window}-token sliding "
            "window, where KerasHub and transformers differ; not exported"
        )
    return {
        PROCESSOR_CONFIG: {
            "processor_class": "Gemma4Processor",
            "image_seq_length": tokens,
            "image_processor": image_processor(image_converter),
            # Gemma4Processor is built with all three; an image model never uses these two,
            # which keep transformers' defaults.
            "feature_extractor": {"feature_extractor_type": "Gemma4AudioFeatureExtractor"},
            "video_processor": {"video_processor_type": "Gemma4VideoProcessor"},
        },
    }


def tokenizer_entries(vision) -> dict:
    """The tokenizer config's image tokens, which `Gemma4Processor` reads as
    `tokenizer.boi_token`, `.eoi_token`, `.image_token` (and `.image_token_id`)."""
    tokens = {
        "boi_token": vision.start_of_image,
        "eoi_token": vision.end_of_image,
        "image_token": vision.placeholder,
    }
    return {**tokens, "extra_special_tokens": dict(tokens)}


def hf_config(backbone, tokenizer, dtype: str, text_config: dict, vision) -> dict:
    """transformers' `Gemma4Config` (for `Gemma4ForConditionalGeneration`) as a dict.

    Args:
      backbone: a `Gemma4Backbone` with a vision encoder and no audio encoder.
      tokenizer: its tokenizer (special and image token ids).
      dtype: the saved weights' dtype.
      text_config: the language model's `Gemma4TextConfig` dict (`gemma4_hf.hf_config`'s).
      vision: the family's `base.Vision` (the image tokens' names).
    """
    encoder = backbone.vision_encoder
    text = {key: value for key, value in text_config.items() if key != "architectures"}
    return {
        "architectures": ["Gemma4ForConditionalGeneration"],
        "model_type": "gemma4",
        "text_config": text,
        "vision_config": {
            "model_type": "gemma4_vision",
            "hidden_size": int(encoder.hidden_dim),
            "intermediate_size": int(encoder.intermediate_dim),
            "num_hidden_layers": int(encoder.num_layers),
            "num_attention_heads": int(encoder.num_heads),
            "num_key_value_heads": int(encoder.num_key_value_heads),
            "head_dim": int(encoder.head_dim),
            "patch_size": int(encoder.patch_size),
            "pooling_kernel_size": int(encoder.pool_size),
            "position_embedding_size": int(encoder.position_embedding_size),
            "rms_norm_eps": float(encoder.layer_norm_epsilon),
            "use_clipped_linears": bool(encoder.use_clipped_linears),
            "standardize": bool(encoder.standardize),
            "hidden_activation": "gelu_pytorch_tanh",
            "rope_parameters": {
                "rope_type": "default",
                "rope_theta": float(encoder.rope_max_wavelength),
            },
        },
        "audio_config": None,
        "boi_token_id": int(tokenizer.token_to_id(vision.start_of_image)),
        "eoi_token_id": int(tokenizer.token_to_id(vision.end_of_image)),
        "image_token_id": int(tokenizer.token_to_id(vision.placeholder)),
        "tie_word_embeddings": bool(backbone.token_embedding.tie_weights),
        "pad_token_id": int(tokenizer.pad_token_id),
        "bos_token_id": int(tokenizer.start_token_id),
        "eos_token_id": int(tokenizer.end_token_id),
        "torch_dtype": dtype,
    }


def _heads_in(kernel: np.ndarray) -> np.ndarray:
    """(heads, hidden, head_dim) -> (heads * head_dim, hidden)."""
    return kernel.transpose(0, 2, 1).reshape(-1, kernel.shape[1])


def hf_weights(backbone, text_weights: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """transformers' `Gemma4ForConditionalGeneration` state dict, float32 (the mapping of
    KerasHub 0.32's own exporter, `keras_hub/src/utils/transformers/export/gemma4.py`).

    Args:
      backbone: a `Gemma4Backbone` with a vision encoder (LoRA merged).
      text_weights: the language model's `Gemma4ForCausalLM` names, which move under
        `model.language_model.` (`lm_head.weight`, when untied, keeps its name).
    """
    from gemma_tune.model.families import shared

    numpy = shared.numpy
    weights = {}
    for name, value in text_weights.items():
        if name.startswith("model."):
            name = LANGUAGE_MODEL_PREFIX + name.removeprefix("model.")
        weights[name] = value
    encoder = backbone.vision_encoder
    image_encoder = encoder.get_layer("image_encoder")
    tower = "model.vision_tower."
    patches = image_encoder.patch_embedder
    weights[f"{tower}patch_embedder.input_proj.weight"] = numpy(patches.input_proj.kernel).T
    weights[f"{tower}patch_embedder.position_embedding_table"] = numpy(
        patches.position_embedding_table
    )
    for index, block in enumerate(image_encoder.encoder_blocks):
        weights.update(_vision_block(block, f"{tower}encoder.layers.{index}."))
    output = encoder.get_layer("vision_output_encoder")
    weights["model.embed_vision.embedding_projection.weight"] = numpy(
        output.vision_input_projection.kernel
    ).T
    if encoder.standardize:
        weights[f"{tower}std_bias"] = numpy(output.std_bias)
        weights[f"{tower}std_scale"] = numpy(output.std_scale)
    return weights


def _vision_block(block, prefix: str) -> dict[str, np.ndarray]:
    """One vision encoder block: norms, clippable attention and MLP projections."""
    from gemma_tune.model.families import shared

    numpy = shared.numpy
    attention = block.attention
    weights = {
        "input_layernorm.weight": numpy(block.pre_attention_norm.scale),
        "post_attention_layernorm.weight": numpy(block.post_attention_norm.scale),
        "pre_feedforward_layernorm.weight": numpy(block.pre_ffw_norm.scale),
        "post_feedforward_layernorm.weight": numpy(block.post_ffw_norm.scale),
        "self_attn.q_norm.weight": numpy(attention.query_norm.scale),
        "self_attn.k_norm.weight": numpy(attention.key_norm.scale),
    }
    hidden = numpy(attention.output_dense.dense.kernel).shape[-1]
    layers = {
        "self_attn.q_proj": (attention.query_dense, _heads_in),
        "self_attn.k_proj": (attention.key_dense, _heads_in),
        "self_attn.v_proj": (attention.value_dense, _heads_in),
        # (heads, head_dim, hidden) -> (hidden, heads * head_dim)
        "self_attn.o_proj": (attention.output_dense, lambda k: k.reshape(-1, hidden).T),
        "mlp.gate_proj": (block.gating_ffw, lambda k: k.T),
        "mlp.up_proj": (block.gating_ffw_2, lambda k: k.T),
        "mlp.down_proj": (block.ffw_linear, lambda k: k.T),
    }
    for name, (layer, to_hf) in layers.items():
        weights[f"{name}.linear.weight"] = to_hf(numpy(layer.dense.kernel))
        if getattr(layer, "use_clipped_linears", False):
            for bound in ("input_min", "input_max", "output_min", "output_max"):
                weights[f"{name}.{bound}"] = numpy(getattr(layer, bound)).reshape(())
    return {prefix + name: value for name, value in weights.items()}
