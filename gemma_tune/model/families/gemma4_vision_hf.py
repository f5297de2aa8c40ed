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
    """`{file name: JSON}` of the processor `AutoProcessor.from_pretrained` reads."""
    from gemma_tune.model.families import gemma4_vision

    return {
        PROCESSOR_CONFIG: {
            "processor_class": "Gemma4Processor",
            "image_seq_length": gemma4_vision.tokens_per_image(backbone, image_converter),
            "image_processor": image_processor(image_converter),
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
