"""What a Gemma with a vision encoder needs to read the images of a prompt (Gemma 3:
`tiny:gemma3_vision`), shared by training, evaluation and sampling.

An image in a user turn becomes, in the prompt, `\\n\\n<start_of_image>`, the family's
`tokens_per_image` placeholder tokens and `<end_of_image>\\n\\n` (as KerasHub's and
transformers' Gemma 3 processors write it; `training.template`). Its pixels go through the
model's own image converter (`ImageInputs.pixels`: resized to the encoder's square size,
normalized), and the backbone puts the vision encoder's output in place of the placeholders'
embeddings. Nothing here names a family: the family's `vision` record (`families.base.Vision`)
says which tokens, sizes and encoder.

Batches carry three more arrays when some row has an image (`batch_arrays`): `images`
`[rows, images per row, size, size, 3]` float32 (rows with fewer images padded with zeros),
`vision_indices` `[rows, images per row * tokens_per_image]` (the placeholder positions; 0
where padded, which the backbone leaves as text) and `vision_mask` `[rows, length]` (True on
placeholders, which attend to each other both ways within an image). A batch without images
on a vision model gets empty ones (`backbone_inputs`), so text rows work unchanged.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np

from gemma_tune.data import example
from gemma_tune.model import families

IMAGES = "images"
VISION_INDICES = "vision_indices"
VISION_MASK = "vision_mask"
KEYS = (IMAGES, VISION_INDICES, VISION_MASK)


@dataclasses.dataclass(frozen=True)
class ImageInputs:
    """How one loaded vision model reads images.

    Attributes:
      converter: the model's image converter (KerasHub `ImageConverter`: resize, rescale).
      image_size: the square side in pixels the vision encoder reads.
      tokens_per_image: placeholder tokens per image in the prompt.
      start_of_image_id / placeholder_id / end_of_image_id: the image tokens' ids.
    """

    converter: Any
    image_size: int
    tokens_per_image: int
    start_of_image_id: int
    placeholder_id: int
    end_of_image_id: int

    def pixels(self, image: example.Image) -> np.ndarray:
        """`image` decoded as RGB and converted by the model's image converter: a
        `[image_size, image_size, 3]` float32 array.

        Raises:
          ValueError: naming the image's "file:line:field" when it cannot be read any more.
        """
        converted = self.converter(image.pixels().astype(np.float32))
        return np.asarray(converted, np.float32)


@dataclasses.dataclass(frozen=True)
class PlacedImage:
    """An image of an encoded example: the image and where its placeholders start in the
    example's token ids."""

    image: example.Image
    start: int
    inputs: ImageInputs


def image_inputs(loaded) -> ImageInputs | None:
    """The `ImageInputs` of a loaded model (`model.LoadedModel`), None for a model that cannot
    see images (no vision encoder or no image converter)."""
    backbone = loaded.backbone
    vision = families.of_backbone(backbone).vision
    if vision is None or vision.encoder(backbone) is None or loaded.image_converter is None:
        return None
    tokenizer = loaded.tokenizer
    return ImageInputs(
        converter=loaded.image_converter,
        image_size=int(vision.image_size(backbone)),
        tokens_per_image=int(vision.tokens_per_image(backbone)),
        start_of_image_id=int(tokenizer.token_to_id(vision.start_of_image)),
        placeholder_id=int(tokenizer.token_to_id(vision.placeholder)),
        end_of_image_id=int(tokenizer.token_to_id(vision.end_of_image)),
    )


def encoder_of(backbone):
    """The backbone's vision encoder (projector included), None for a text-only backbone."""
    vision = families.of_backbone(backbone).vision
    return None if vision is None else vision.encoder(backbone)


def freeze_encoder(backbone) -> None:
    """Freezes the vision encoder (and projector) of `backbone`, if it has one: vision tuning
    adapts the language model only, so the encoder's weights get no gradient."""
    encoder = encoder_of(backbone)
    if encoder is not None:
        encoder.trainable = False
        for weight in encoder.weights:
            weight.trainable = False


def batch_arrays(placed: Sequence[Sequence[PlacedImage]], rows: int, width: int) -> dict:
    """The image arrays of a batch whose row i holds the images `placed[i]` (rows past
    `len(placed)` and rows without images get padding).

    Args:
      placed: each row's images, in prompt order, their placeholders within `width`.
      rows: the batch's rows.
      width: the batch's input length.

    Returns:
      `{"images", "vision_indices", "vision_mask"}` (module docstring), or {} when no row has
      an image.
    """
    most = max((len(items) for items in placed), default=0)
    if most == 0:
        return {}
    inputs = next(items[0].inputs for items in placed if items)
    size, tokens = inputs.image_size, inputs.tokens_per_image
    images = np.zeros((rows, most, size, size, 3), np.float32)
    indices = np.zeros((rows, most * tokens), np.int32)
    mask = np.zeros((rows, width), bool)
    for row, items in enumerate(placed):
        for slot, item in enumerate(items):
            positions = np.arange(item.start, item.start + tokens, dtype=np.int32)
            if positions[-1] >= width:
                raise ValueError(f"{item.image.where}: its image tokens pass the batch width")
            images[row, slot] = item.inputs.pixels(item.image)
            indices[row, slot * tokens : (slot + 1) * tokens] = positions
            mask[row, positions] = True
    return {IMAGES: images, VISION_INDICES: indices, VISION_MASK: mask}


def backbone_inputs(backbone, batch: dict) -> dict:
    """The image inputs of `backbone` for one forward pass over `batch`: the batch's image
    arrays, empty ones for a batch without images on a vision backbone (text rows), {} for a
    text-only backbone.

    Raises:
      ValueError: a batch with images for a backbone that cannot see them.
    """
    vision = families.of_backbone(backbone).vision
    if vision is None or vision.encoder(backbone) is None:
        if IMAGES in batch:
            raise ValueError("this model has no vision encoder; it cannot read image rows")
        return {}
    if IMAGES in batch:
        return {key: batch[key] for key in KEYS}
    token_ids = batch["token_ids"]
    if isinstance(token_ids, np.ndarray):  # Keras refuses a mix of arrays and tensors.
        xp = np
    else:
        import jax.numpy as xp
    rows, length = token_ids.shape[:2]
    size = int(vision.image_size(backbone))
    return {
        IMAGES: xp.zeros((rows, 0, size, size, 3), xp.float32),
        VISION_INDICES: xp.zeros((rows, 0), xp.int32),
        VISION_MASK: xp.zeros((rows, length), bool),
    }


def cache_arguments(backbone, arrays: dict) -> dict:
    """The keyword arguments of the backbone's CausalLM `call_with_cache` that place the
    images of `arrays` (`batch_arrays`, as wide as the token ids) in a prefill."""
    return families.of_backbone(backbone).vision.cache_arguments(backbone, arrays)
