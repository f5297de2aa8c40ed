"""Gemma 4 reading images: KerasHub's `Gemma4VisionEncoder` (a ViT of Gemma-4-style blocks
over flattened patches with (x, y) position ids, average pooling `k x k`, an RMS norm without
scale and the projection into the language model) and `Gemma4ImageConverter`; the `Vision`
record of the `gemma4` family and its tiny model.

How an image reaches the backbone here, and how that differs from KerasHub's and
transformers' processors:
- Both processors resize an image keeping its aspect ratio to the largest size whose patches,
  pooled `k x k`, give at most `max_soft_tokens` tokens (a multiple of `k * patch` each side),
  so the number of image tokens varies with the aspect ratio (transformers writes that many
  placeholders; KerasHub's preprocessor always writes `max_soft_tokens` and leaves the extra
  ones zero). gemma_tune center-crops every image to a square first (as for Gemma 3), so every
  image has the same number of tokens: `((side / patch) / k) ** 2` with `side` the square
  size (`square_side`): 256 on a real Gemma 4 (768 x 768 pixels, patches 16, k 3,
  `max_soft_tokens` 280), 64 on `tiny:gemma4_vision` (64 x 64, patches 4, k 2, 70).
- Pixels are scaled to [0, 1] (transformers: rescale 1/255, no normalization) and cut into
  `patch x patch x 3` patches, row by row, padded to `max_soft_tokens * k * k` patches
  (position ids -1 on the padding).
- The backbone's inputs are `pixel_values` `[rows, images, patches, 3 * patch ** 2]` and
  `pixel_position_ids` `[rows, images, patches, 2]` (not Gemma 3's `images`), `vision_indices`
  and `vision_mask`; it scales the projected image embeddings by `1 / sqrt(hidden)` before
  its global `sqrt(hidden)` (so they enter at the projection's size) and gives placeholders
  the per-layer token 0.
"""

from __future__ import annotations

import math

import keras_hub
import numpy as np

from gemma_tune.model.families import base, gemma4_vision_hf

START_OF_IMAGE = "<|image>"
PLACEHOLDER = "<|image|>"
END_OF_IMAGE = "<image|>"

# The tiny vision encoder: 64 x 64 images in 4 x 4 patches (256), pooled 2 x 2 into 64 image
# tokens. 70 is the smallest `max_soft_tokens` transformers' processor accepts.
TINY_IMAGE_SIZE = 64
TINY_PATCH_SIZE = 4
TINY_POOL_SIZE = 2
TINY_MAX_SOFT_TOKENS = 70


def square_side(converter) -> int:
    """The side in pixels the converter resizes a square image to: the largest multiple of
    `pooling_kernel_size * patch_size` whose patches, pooled, stay within `max_soft_tokens`
    (KerasHub's and transformers' rule for a square)."""
    patch, pool = int(converter.patch_size), int(converter.pooling_kernel_size)
    target = int(converter.max_soft_tokens) * pool**2 * patch**2
    step = pool * patch
    return max(int(math.floor(math.sqrt(target) / step)) * step, step)


def tokens_per_image(backbone, converter) -> int:
    """Image tokens of a square image: `((side / patch) / k) ** 2`.

    Raises:
      ValueError: when the converter's pooling is not the encoder's (the placeholders would
        not match the encoder's output).
    """
    encoder = backbone.vision_encoder
    if int(converter.pooling_kernel_size) != int(encoder.pool_size):
        raise ValueError(
            f"the image converter pools {converter.pooling_kernel_size} x "
            f"{converter.pooling_kernel_size} patches, the vision encoder {encoder.pool_size}"
        )
    if int(converter.patch_size) != int(encoder.patch_size):
        raise ValueError(
            f"the image converter's patches are {converter.patch_size} pixels, the vision "
            f"encoder's {encoder.patch_size}"
        )
    cells = square_side(converter) // int(converter.patch_size) // int(encoder.pool_size)
    return cells**2


def image_arrays(backbone, converter) -> dict:
    """One image's `pixel_values` `[patches, 3 * patch ** 2]` and `pixel_position_ids`
    `[patches, 2]` (patches: `max_soft_tokens * k * k`; 0 without a converter)."""
    patch = int(backbone.vision_encoder.patch_size)
    patches = 0
    if converter is not None:
        patches = int(converter.max_soft_tokens) * int(converter.pooling_kernel_size) ** 2
    return {
        "pixel_values": ((patches, 3 * patch**2), "float32"),
        "pixel_position_ids": ((patches, 2), "int32"),
    }


def convert(converter, pixels: np.ndarray) -> dict:
    """`[height, width, 3]` RGB pixels center-cropped to a square (the shorter side) and put
    through KerasHub's `Gemma4ImageConverter` (bicubic resize with antialiasing to
    `square_side`, scale and offset, patches)."""
    height, width = pixels.shape[:2]
    side = min(height, width)
    top, left = (height - side) // 2, (width - side) // 2
    square = pixels[top : top + side, left : left + side]
    converted = converter(square[None])
    return {name: np.asarray(value)[0] for name, value in converted.items()}


def image_converter(backbone):
    """The tiny model's converter (and a preset's without one saved): KerasHub's
    `Gemma4ImageConverter` with the encoder's patch size and pooling, pixels to [0, 1] (as
    transformers' Gemma 4 processor), `max_soft_tokens` 70 for the tiny encoder's 64 x 64
    and KerasHub's default 280 otherwise."""
    encoder = backbone.vision_encoder
    tiny = (int(encoder.image_size), int(encoder.patch_size)) == (TINY_IMAGE_SIZE, TINY_PATCH_SIZE)
    return keras_hub.layers.Gemma4ImageConverter(
        patch_size=int(encoder.patch_size),
        max_soft_tokens=TINY_MAX_SOFT_TOKENS if tiny else 280,
        pooling_kernel_size=int(encoder.pool_size),
        scale=1 / 255,
        offset=0.0,
    )


def cache_arguments(backbone, arrays) -> dict:
    """`Gemma4CausalLM.call_with_cache`'s image arguments: the encoder's embeddings (it scales
    them itself), the mask and the indices."""
    embeddings = backbone.vision_encoder(
        {"pixel_values": arrays["pixel_values"], "pixel_position_ids": arrays["pixel_position_ids"]}
    )
    return {
        "img_embeddings": embeddings,
        "vision_mask": arrays["vision_mask"],
        "vision_indices": arrays["vision_indices"],
    }


def tiny_vision_backbone(build_text, common: dict):
    """The tiny Gemma 4 language model (`build_text(common, **extra)`) with a one-layer vision
    encoder: 64 x 64 images, 4 x 4 patches, 2 x 2 pooling (64 image tokens)."""
    side = TINY_IMAGE_SIZE
    encoder = keras_hub.models.Gemma4VisionEncoder(
        image_size=side,
        patch_size=TINY_PATCH_SIZE,
        num_heads=2,
        hidden_dim=16,
        num_layers=1,
        intermediate_dim=32,
        head_dim=8,
        output_dim=common["hidden_dim"],
        pool_size=TINY_POOL_SIZE,
        position_embedding_size=side // TINY_PATCH_SIZE,
        dtype=common["dtype"],
    )
    return build_text(common, image_size=side, vision_encoder=encoder)


def vision(build_text, tiny_tokenizer) -> base.Vision:
    """The `gemma4` family's `Vision` record around its tiny text builder and tokenizer."""
    return base.Vision(
        start_of_image=START_OF_IMAGE,
        placeholder=PLACEHOLDER,
        end_of_image=END_OF_IMAGE,
        tiny_backbone=lambda common: tiny_vision_backbone(build_text, common),
        tiny_tokenizer=tiny_tokenizer,
        image_converter=image_converter,
        image_size=lambda backbone, converter: square_side(converter),
        tokens_per_image=tokens_per_image,
        image_arrays=image_arrays,
        convert=convert,
        encoder=lambda backbone: backbone.vision_encoder,
        cache_arguments=cache_arguments,
        hf_processor_files=gemma4_vision_hf.processor_files,
        hf_tokenizer_entries=gemma4_vision_hf.tokenizer_entries,
        hf_language_model_prefix=gemma4_vision_hf.LANGUAGE_MODEL_PREFIX,
        span_prefix="",
        span_suffix="",
    )
