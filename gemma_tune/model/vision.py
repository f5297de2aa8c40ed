"""What a Gemma with a vision encoder needs to read the images of a prompt (Gemma 3:
`tiny:gemma3_vision`; Gemma 4: `tiny:gemma4_vision`), shared by training, evaluation and
sampling.

An image in a user turn becomes, in the prompt, the family's image span: Gemma 3 writes
`\\n\\n<start_of_image>`, `tokens_per_image` placeholder tokens and `<end_of_image>\\n\\n`,
Gemma 4 `<|image>`, the placeholders `<|image|>` and `<image|>` (as KerasHub's and
transformers' processors write them; `training.template`). Its pixels go through the model's
own image converter (`ImageInputs.pixels`: center-cropped to a square, resized to the
encoder's size, normalized; Gemma 4's cut into patches), and the backbone puts the vision
encoder's output in place of the placeholders' embeddings. Nothing here names a family: the
family's `vision` record (`families.base.Vision`) says which tokens, sizes, arrays and encoder.

Batches carry more arrays when some row has an image (`batch_arrays`): the family's image
arrays (`Vision.image_arrays`: Gemma 3's `images` `[rows, images per row, size, size, 3]`,
Gemma 4's `pixel_values` `[rows, images per row, patches, 3 * patch ** 2]` and
`pixel_position_ids` `[rows, images per row, patches, 2]`; rows with fewer images padded with
zeros), `vision_indices` `[rows, images per row * tokens_per_image]` (the placeholder
positions; 0 where padded, which the backbone leaves as text) and `vision_mask`
`[rows, length]` (True on placeholders). A batch without images on a vision model gets empty
ones (`backbone_inputs`), so text rows work unchanged.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from gemma_tune.data import example
from gemma_tune.model import families

VISION_INDICES = "vision_indices"
VISION_MASK = "vision_mask"


@dataclasses.dataclass(frozen=True)
class ImageInputs:
    """How one loaded vision model reads images.

    Attributes:
      converter: the model's image converter (KerasHub `ImageConverter`: resize, rescale).
      image_size: the square side in pixels an image is cropped and resized to.
      tokens_per_image: placeholder tokens per image in the prompt.
      start_of_image_id / placeholder_id / end_of_image_id: the image tokens' ids.
      arrays: `{backbone input: (one image's shape, dtype)}` (`Vision.image_arrays`).
      convert: (converter, RGB pixels) -> one image's arrays (`Vision.convert`).
      span_prefix / span_suffix: the text around an image's tokens.
    """

    converter: Any
    image_size: int
    tokens_per_image: int
    start_of_image_id: int
    placeholder_id: int
    end_of_image_id: int
    arrays: Mapping[str, tuple[tuple[int, ...], str]]
    convert: Any
    span_prefix: str = "\n\n"
    span_suffix: str = "\n\n"

    def pixels(self, image: example.Image) -> dict[str, np.ndarray]:
        """`image` decoded as RGB and converted by the model's image converter: `{backbone
        input: array}` with the shapes of `arrays`.

        Raises:
          ValueError: naming the image's "file:line:field" when it cannot be read any more.
        """
        converted = self.convert(self.converter, image.pixels().astype(np.float32))
        return {
            name: np.asarray(converted[name], dtype).reshape(shape)
            for name, (shape, dtype) in self.arrays.items()
        }


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
    converter = loaded.image_converter
    if vision is None or vision.encoder(backbone) is None or converter is None:
        return None
    tokenizer = loaded.tokenizer
    return ImageInputs(
        converter=converter,
        image_size=int(vision.image_size(backbone, converter)),
        tokens_per_image=int(vision.tokens_per_image(backbone, converter)),
        start_of_image_id=int(tokenizer.token_to_id(vision.start_of_image)),
        placeholder_id=int(tokenizer.token_to_id(vision.placeholder)),
        end_of_image_id=int(tokenizer.token_to_id(vision.end_of_image)),
        arrays=dict(vision.image_arrays(backbone, converter)),
        convert=vision.convert,
        span_prefix=vision.span_prefix,
        span_suffix=vision.span_suffix,
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
      The family's image arrays, `vision_indices` and `vision_mask` (module docstring), or {}
      when no row has an image.
    """
    most = max((len(items) for items in placed), default=0)
    if most == 0:
        return {}
    inputs = next(items[0].inputs for items in placed if items)
    tokens = inputs.tokens_per_image
    arrays = {
        name: np.zeros((rows, most, *shape), dtype)
        for name, (shape, dtype) in inputs.arrays.items()
    }
    indices = np.zeros((rows, most * tokens), np.int32)
    mask = np.zeros((rows, width), bool)
    for row, items in enumerate(placed):
        for slot, item in enumerate(items):
            positions = np.arange(item.start, item.start + tokens, dtype=np.int32)
            if positions[-1] >= width:
                raise ValueError(f"{item.image.where}: its image tokens pass the batch width")
            for name, value in item.inputs.pixels(item.image).items():
                arrays[name][row, slot] = value
            indices[row, slot * tokens : (slot + 1) * tokens] = positions
            mask[row, positions] = True
    return {**arrays, VISION_INDICES: indices, VISION_MASK: mask}


def backbone_inputs(backbone, batch: dict) -> dict:
    """The image inputs of `backbone` for one forward pass over `batch`: the batch's image
    arrays, empty ones for a batch without images on a vision backbone (text rows), {} for a
    text-only backbone.

    Raises:
      ValueError: a batch with images for a backbone that cannot see them.
    """
    vision = families.of_backbone(backbone).vision
    if vision is None or vision.encoder(backbone) is None:
        if VISION_INDICES in batch:
            raise ValueError("this model has no vision encoder; it cannot read image rows")
        return {}
    names = tuple(vision.image_arrays(backbone, None))
    if VISION_INDICES in batch:
        return {key: batch[key] for key in (*names, VISION_INDICES, VISION_MASK)}
    token_ids = batch["token_ids"]
    if isinstance(token_ids, np.ndarray):  # Keras refuses a mix of arrays and tensors.
        xp = np
    else:
        import jax.numpy as xp
    rows, length = token_ids.shape[:2]
    empty = {
        name: xp.zeros((rows, 0, *shape), dtype)
        for name, (shape, dtype) in vision.image_arrays(backbone, None).items()
    }
    return {
        **empty,
        VISION_INDICES: xp.zeros((rows, 0), xp.int32),
        VISION_MASK: xp.zeros((rows, length), bool),
    }


def cache_arguments(backbone, arrays: dict) -> dict:
    """The keyword arguments of the backbone's CausalLM `call_with_cache` that place the
    images of `arrays` (`batch_arrays`, as wide as the token ids) in a prefill."""
    return families.of_backbone(backbone).vision.cache_arguments(backbone, arrays)


CONVERTER_FILE = "image_converter.json"


def save_converter(converter, directory: str) -> None:
    """Saves an image converter in a KerasHub preset directory (`image_converter.json`), with
    every constructor argument its class's `get_config` leaves out written too.

    KerasHub 0.32's `Gemma4ImageConverter.get_config` drops `max_soft_tokens` and
    `pooling_kernel_size`, so a converter saved as it is loads back with the defaults (280,
    3): right for the real Gemma 4 presets, wrong for any other (`tiny:gemma4_vision`'s 70
    and 2). The constructor reads them back from the saved config.
    """
    import inspect
    import json
    import os

    converter.save_to_preset(directory)
    path = os.path.join(directory, CONVERTER_FILE)
    with open(path) as file:
        saved = json.load(file)
    config = saved["config"]
    for name in inspect.signature(type(converter).__init__).parameters:
        if name not in config and name not in ("self", "kwargs") and hasattr(converter, name):
            value = getattr(converter, name)
            if isinstance(value, (int, float, str, bool)):
                config[name] = value
    with open(path, "w") as file:
        json.dump(saved, file, indent=4)
