"""Opening, checking and decoding the images of rows, with Pillow.

A row's image is checked once, when the row is read (`check`): Pillow must recognise it, its
pixels must decode to the end (a truncated file fails here, not mid-training) and its mode
must convert to RGB. A photo's EXIF orientation is applied (as transformers' `load_image`
does), so width and height are as the image is seen. What is kept is an `example.Image`: the
reference (path or encoded bytes) and the size, format and mode found, so a summary needs no
second decode. `decode` reads the pixels again when they are needed, as a
`(height, width, 3)` uint8 RGB array: transparent images are composited on white (as
transformers' `convert_to_rgb` does), palette and greyscale images are expanded, CMYK and
YCbCr converted. 16-bit, 32-bit integer and float images (modes I;16, I, F) are refused:
mapping them to 8 bits needs a choice of scale only the user can make, as are animated or
multi-page images (which frame is meant?).
"""

from __future__ import annotations

import collections
import io
import os
import warnings
from collections.abc import Sequence

import numpy as np

from gemma_tune.data import example

# Modes Pillow converts to 8-bit RGB without a choice of scale.
RGB_MODES = frozenset(
    {"1", "L", "LA", "La", "P", "PA", "RGB", "RGBA", "RGBa", "RGBX", "CMYK", "YCbCr"}
)


def _open(path: str | None, data: bytes | None):
    """Opens and fully decodes an image with Pillow, turned upright by its EXIF orientation;
    returns `(image, Pillow's format name)` or raises ValueError saying why it cannot."""
    from PIL import Image as PIL_Image
    from PIL import ImageOps

    if path is not None:
        if not os.path.isfile(path):
            missing = not os.path.exists(path)
            raise ValueError(f"no such file {path!r}" if missing else f"{path!r} is not a file")
        try:
            with open(path, "rb") as file:  # Read whole: no file stays open after decoding.
                data = file.read()
        except OSError as error:
            raise ValueError(f"cannot read the file: {error}") from None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", PIL_Image.DecompressionBombWarning)
            opened = PIL_Image.open(io.BytesIO(data))
            opened.load()  # Decodes every pixel: a truncated file fails here.
            file_format = opened.format
            frames = getattr(opened, "n_frames", 1)
            opened = ImageOps.exif_transpose(opened)
    except PIL_Image.UnidentifiedImageError:
        raise ValueError("not an image Pillow can read (unknown or unsupported format)") from None
    except (PIL_Image.DecompressionBombError, PIL_Image.DecompressionBombWarning) as error:
        raise ValueError(f"too large to decode safely: {error}") from None
    except (OSError, SyntaxError, ValueError) as error:  # Truncated or corrupt data.
        raise ValueError(f"unreadable image: {error}") from None
    if frames > 1:
        raise ValueError(
            f"an animated or multi-page image ({frames} frames); save the one meant as a still"
        )
    return opened, file_format


def check(
    source: str, field: str, *, path: str | None = None, data: bytes | None = None
) -> example.Image:
    """Opens, fully decodes and checks one image of a row.

    Args:
      source: the row, "file:line".
      field: the field naming the image, for messages.
      path: the local file holding it; or
      data: its encoded bytes.

    Returns:
      The `example.Image` reference with its size, format and mode.

    Raises:
      example.RowError: naming `field`, for a missing file, an image Pillow cannot open or
        decode to the end, or a mode that does not convert to RGB.
    """
    try:
        opened, file_format = _open(path, data)
    except ValueError as error:
        raise example.RowError(field, str(error)) from None
    if opened.mode not in RGB_MODES:
        raise example.RowError(
            field,
            f"image mode {opened.mode} (16-bit, 32-bit or float pixels) does not convert to "
            "RGB without choosing a scale; save it as 8-bit RGB or greyscale",
        )
    return example.Image(
        source=source,
        field=field,
        path=path,
        data=data,
        width=opened.width,
        height=opened.height,
        format=file_format or "unknown",
        mode=opened.mode,
    )


def decode(image: example.Image) -> np.ndarray:
    """Decodes `image` into RGB pixels: a `(height, width, 3)` uint8 array.

    Transparency is composited on white; other modes are converted by Pillow.

    Raises:
      ValueError: naming the image's "file:line:field" when it cannot be read any more (the
        file was moved or changed since the row was read).
    """
    from PIL import Image as PIL_Image

    try:
        opened, _ = _open(image.path, image.data)
    except ValueError as error:
        raise ValueError(f"{image.where}: {error}") from None
    if "A" in opened.mode or "a" in opened.mode or opened.info.get("transparency") is not None:
        rgba = opened.convert("RGBA")
        white = PIL_Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        opened = PIL_Image.alpha_composite(white, rgba)
    return np.asarray(opened.convert("RGB"), dtype=np.uint8)


def summary_lines(examples: Sequence[example.Example]) -> list[str]:
    """What the images of `examples` are, as lines for the data check: how many rows have
    images, images per such row (min/mean/max), the smallest and largest width and height,
    and the file formats and pixel modes with their counts; no lines when none has any."""
    counts = [len(item.images) for item in examples if item.images]
    if not counts:
        return []
    found = [image for item in examples for image in item.images]
    widths = [image.width for image in found]
    heights = [image.height for image in found]
    formats = collections.Counter(image.format for image in found)
    modes = collections.Counter(image.mode for image in found)

    def tally(counter: collections.Counter) -> str:
        return ", ".join(f"{name} {count}" for name, count in counter.most_common())

    return [
        f"rows with images: {len(counts)} of {len(examples)} ({len(found)} images)",
        f"images per image row: min {min(counts)}, mean {sum(counts) / len(counts):.2f}, "
        f"max {max(counts)}",
        f"image sizes (width x height): min {min(widths)}x{min(heights)}, "
        f"max {max(widths)}x{max(heights)}",
        f"image formats: {tally(formats)}; modes: {tally(modes)}",
    ]
