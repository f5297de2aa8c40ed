"""Gemma 3 with a vision encoder -> transformers' `Gemma3ForConditionalGeneration`
(image-text-to-text): its config, state dict, processor files and tokenizer entries.

The language model's weights are the text model's (`gemma3.hf_weights`) under
`model.language_model.`; the vision tower is transformers' SigLIP (`model.vision_tower.`) and
the projector `model.multi_modal_projector.` (RMSNorm `(1 + w)` on both sides, then the
projection matrix `(vision width, text width)` as it is). KerasHub's
`Gemma3VisionEncoder` is the same SigLIP: a patch convolution, learned position embeddings,
pre-norm blocks with tanh-approximated GELU, a final layer norm, average pooling, the norm and
the projection (the mapping follows KerasHub 0.32's own exporter,
`keras_hub/src/utils/transformers/export/gemma3.py`, with the image token ids taken from the
tokenizer instead of fixed at the real vocabulary's).

`AutoProcessor.from_pretrained(DIR)` reads `preprocessor_config.json` (transformers'
`Gemma3ImageProcessor`: resize to the encoder's square size, rescale 1/255, mean and std 0.5,
no pan-and-scan) and `processor_config.json` (`Gemma3Processor`, `image_seq_length` image
tokens per image); the tokenizer config names the image tokens (`boi_token`, `eoi_token`,
`image_token`), which `Gemma3Processor` reads.
"""

from __future__ import annotations

import numpy as np

from gemma_tune.model.families import shared

LANGUAGE_MODEL_PREFIX = "model.language_model."
PROCESSOR_CONFIG = "processor_config.json"
PREPROCESSOR_CONFIG = "preprocessor_config.json"


def _layers(backbone):
    """`(image encoder, pooling, output encoder)` of the backbone's vision encoder."""
    encoder = backbone.vision_encoder
    return (
        encoder.get_layer("image_encoder"),
        encoder.get_layer("pooling"),
        encoder.get_layer("vision_output_encoder"),
    )


def tokens_per_image(backbone) -> int:
    """Image tokens per image after pooling: `((image size / patch) / pool) ** 2`."""
    image_encoder, pooling, _ = _layers(backbone)
    return ((image_encoder.image_size // image_encoder.patch_size) // pooling.pool_size) ** 2


def _image_token_ids(tokenizer, vision) -> dict:
    return {
        "boi_token_index": int(tokenizer.token_to_id(vision.start_of_image)),
        "eoi_token_index": int(tokenizer.token_to_id(vision.end_of_image)),
        "image_token_index": int(tokenizer.token_to_id(vision.placeholder)),
    }


def hf_config(backbone, tokenizer, dtype: str, text_config: dict, vision) -> dict:
    """transformers' `Gemma3Config` as a dict.

    Args:
      backbone: a `Gemma3Backbone` with a vision encoder.
      tokenizer: its tokenizer (special and image token ids).
      dtype: the saved weights' dtype.
      text_config: the language model's `Gemma3TextConfig` dict (`gemma3.hf_config`'s).
      vision: the family's `base.Vision` (the image tokens' names).
    """
    image_encoder, _, _ = _layers(backbone)
    text = {key: value for key, value in text_config.items() if key != "architectures"}
    return {
        "architectures": ["Gemma3ForConditionalGeneration"],
        "model_type": "gemma3",
        "text_config": text,
        "vision_config": {
            "model_type": "siglip_vision_model",
            "image_size": int(image_encoder.image_size),
            "patch_size": int(image_encoder.patch_size),
            "num_channels": 3,
            "hidden_size": int(image_encoder.hidden_dim),
            "intermediate_size": int(image_encoder.intermediate_dim),
            "num_hidden_layers": int(image_encoder.num_layers),
            "num_attention_heads": int(image_encoder.num_heads),
            "hidden_act": "gelu_pytorch_tanh",
            "layer_norm_eps": float(image_encoder.layer_norm_epsilon),
            "attention_dropout": 0.0,
            "vision_use_head": False,
        },
        "mm_tokens_per_image": tokens_per_image(backbone),
        **_image_token_ids(tokenizer, vision),
        "initializer_range": 0.02,
        "tie_word_embeddings": bool(backbone.token_embedding.tie_weights),
        "pad_token_id": int(tokenizer.pad_token_id),
        "bos_token_id": int(tokenizer.start_token_id),
        "eos_token_id": int(tokenizer.end_token_id),
        "torch_dtype": dtype,
    }


def hf_weights(backbone, text_weights: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """transformers' `Gemma3ForConditionalGeneration` state dict, float32.

    Args:
      backbone: a `Gemma3Backbone` with a vision encoder (LoRA merged).
      text_weights: the language model's `Gemma3ForCausalLM` names (`model.layers...`,
        `lm_head.weight` when untied), which move under `model.language_model.`.
    """
    weights = {}
    for name, value in text_weights.items():  # `lm_head.weight` (untied) keeps its name
        weights[_language_model_name(name)] = value
    image_encoder, _, output_encoder = _layers(backbone)
    numpy = shared.numpy
    tower = "model.vision_tower."
    embeddings = image_encoder.vision_embeddings
    patch = embeddings.patch_embedding
    weights[f"{tower}embeddings.patch_embedding.weight"] = numpy(patch.kernel).transpose(3, 2, 0, 1)
    weights[f"{tower}embeddings.patch_embedding.bias"] = numpy(patch.bias)
    weights[f"{tower}embeddings.position_embedding.weight"] = numpy(
        embeddings.position_embedding.embeddings
    )
    for index, block in enumerate(image_encoder.resblocks):
        prefix = f"{tower}encoder.layers.{index}."
        norms = (("layer_norm1", block.layer_norm_1), ("layer_norm2", block.layer_norm_2))
        for name, norm in norms:
            weights[f"{prefix}{name}.weight"] = numpy(norm.gamma)
            weights[f"{prefix}{name}.bias"] = numpy(norm.beta)
        for name, dense in (
            ("self_attn.q_proj", block.attn.query_proj),
            ("self_attn.k_proj", block.attn.key_proj),
            ("self_attn.v_proj", block.attn.value_proj),
            ("self_attn.out_proj", block.attn.out_proj),
            ("mlp.fc1", block.mlp_dense_1),
            ("mlp.fc2", block.mlp_dense_2),
        ):
            weights[f"{prefix}{name}.weight"] = numpy(dense.kernel).T
            weights[f"{prefix}{name}.bias"] = numpy(dense.bias)
    final_norm = image_encoder.encoder_layer_norm
    weights[f"{tower}post_layernorm.weight"] = numpy(final_norm.gamma)
    weights[f"{tower}post_layernorm.bias"] = numpy(final_norm.beta)
    projector = "model.multi_modal_projector."
    weights[f"{projector}mm_soft_emb_norm.weight"] = numpy(
        output_encoder.vision_soft_embedding_norm.scale
    )
    weights[f"{projector}mm_input_projection_weight"] = numpy(
        output_encoder.vision_input_projection.kernel
    )
    return weights


def _language_model_name(name: str) -> str:
    """`model.X` -> `model.language_model.X`; other names unchanged."""
    if name.startswith("model."):
        return LANGUAGE_MODEL_PREFIX + name.removeprefix("model.")
    return name


def processor_files(backbone, image_converter) -> dict[str, dict]:
    """`{file name: JSON}` of the processor that `AutoProcessor.from_pretrained` reads.

    Args:
      backbone: a `Gemma3Backbone` with a vision encoder.
      image_converter: the model's KerasHub image converter; its scale and offset must be
        Gemma 3's (pixels to [-1, 1]), which transformers' processor applies as mean and std.

    Raises:
      ValueError: for a converter that normalizes otherwise (the processor would differ).
    """
    scale, offset = _scale_offset(image_converter)
    if not (np.allclose(scale, 1 / 127.5) and np.allclose(offset, -1.0)):
        scale, offset = scale.tolist(), offset.tolist()
        raise ValueError(
            f"the image converter scales pixels by {scale} and offsets by {offset}; the "
            "transformers Gemma 3 processor maps them to [-1, 1] (scale 1/127.5, offset -1)"
        )
    size = int(_layers(backbone)[0].image_size)
    return {
        PREPROCESSOR_CONFIG: {
            "image_processor_type": "Gemma3ImageProcessor",
            "processor_class": "Gemma3Processor",
            "do_convert_rgb": True,
            "do_resize": True,
            "size": {"height": size, "width": size},
            "resample": 2,  # bilinear, as KerasHub's converter
            "do_rescale": True,
            "rescale_factor": 1 / 255,
            "do_normalize": True,
            "image_mean": [0.5, 0.5, 0.5],
            "image_std": [0.5, 0.5, 0.5],
            "do_pan_and_scan": False,
        },
        PROCESSOR_CONFIG: {
            "processor_class": "Gemma3Processor",
            "image_seq_length": tokens_per_image(backbone),
        },
    }


def _scale_offset(image_converter) -> tuple[np.ndarray, np.ndarray]:
    """The converter's scale and offset (one value, or one per channel)."""
    scale, offset = image_converter.scale, image_converter.offset
    return (
        np.asarray(1.0 if scale is None else scale, np.float64),
        np.asarray(0.0 if offset is None else offset, np.float64),
    )


def tokenizer_entries(vision) -> dict:
    """The tokenizer config's image tokens, which `Gemma3Processor` reads as
    `tokenizer.boi_token`, `.eoi_token` and `.image_token`."""
    tokens = {
        "boi_token": vision.start_of_image,
        "eoi_token": vision.end_of_image,
        "image_token": vision.placeholder,
    }
    return {**tokens, "extra_special_tokens": dict(tokens)}
