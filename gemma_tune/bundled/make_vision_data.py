"""Builds the bundled image dataset: small drawings with questions whose answers are in them.

Run `python -m gemma_tune.bundled.make_vision_data` to regenerate `vision/` next to this
module: `train.jsonl` and `validation.jsonl` in the OpenAI chat format (an `image_url` part
with the image's path relative to the file, then the question; the answer as the assistant
message) and `images/NNN.png`, 64x64 RGB PNGs. Written for this project (Apache-2.0). The
output is deterministic (every combination enumerated, no random module, no clock, no fonts:
Pillow's `ImageDraw` shapes only), so a run rewrites the committed files byte-for-byte with
the same Pillow; `tests/bundled_vision_test.py` checks that it does and that
`python -m gemma_tune.data check` reads the files cleanly.

Five kinds of question, one per image, each answered by one word:

  colour  "What colour is the circle?" -> "red"      one shape on white
  shape   "What shape is in the picture?" -> "triangle"
  side    "Is the square on the left or the right?" -> "left"
  count   "How many shapes are there?" -> "three"    one to four shapes in a 2x2 grid
  bars    "Which colour is the tallest bar?" -> "blue" (or shortest) four bars, no axes

Rows are ordered by a SHA-256 digest of their question and image, and every fifth row of
that order is held out for validation: a fixed shuffle without Python's random module.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import shutil

from PIL import Image, ImageDraw

HERE = os.path.dirname(os.path.abspath(__file__))
OUTPUT = os.path.join(HERE, "vision")
FILES = ("train.jsonl", "validation.jsonl")
SIZE = 64
COLOURS = {
    "red": (220, 30, 30),
    "green": (30, 160, 60),
    "blue": (40, 70, 220),
    "yellow": (235, 200, 20),
    "purple": (130, 50, 170),
    "orange": (245, 130, 20),
}
SHAPES = ("square", "circle", "triangle")
NUMBERS = ("one", "two", "three", "four")
WHITE = (255, 255, 255)


def _draw_shape(draw: ImageDraw.ImageDraw, shape: str, box: tuple, colour: tuple) -> None:
    """Draws `shape` filling `box` (left, top, right, bottom) in `colour`."""
    left, top, right, bottom = box
    if shape == "square":
        draw.rectangle(box, fill=colour)
    elif shape == "circle":
        draw.ellipse(box, fill=colour)
    else:
        draw.polygon([((left + right) // 2, top), (right, bottom), (left, bottom)], fill=colour)


def _canvas() -> tuple[Image.Image, ImageDraw.ImageDraw]:
    image = Image.new("RGB", (SIZE, SIZE), WHITE)
    return image, ImageDraw.Draw(image)


def _single_shapes():
    """One shape per image: shape x colour x side x height x size; the question cycles over
    colour, shape and side."""
    kinds = itertools.cycle(("colour", "shape", "side"))
    for shape, colour, side, height, extent in itertools.product(
        SHAPES, COLOURS, ("left", "right"), (0, 1, 2), (18, 26)
    ):
        image, draw = _canvas()
        left = 4 if side == "left" else SIZE - 4 - extent
        top = 4 + height * (SIZE - 8 - extent) // 2
        _draw_shape(draw, shape, (left, top, left + extent, top + extent), COLOURS[colour])
        kind = next(kinds)
        if kind == "colour":
            yield image, f"What colour is the {shape}?", colour
        elif kind == "shape":
            yield image, "What shape is in the picture?", shape
        else:
            yield image, f"Is the {shape} on the left or the right?", side


def _counts():
    """One to four shapes in the cells of a 2x2 grid, of one colour and shape each image."""
    cells = ((6, 6), (38, 6), (6, 38), (38, 38))
    for count, colour, shape in itertools.product(range(1, 5), COLOURS, SHAPES):
        image, draw = _canvas()
        start = (len(colour) + SHAPES.index(shape)) % 4  # Which cells: varies with the image.
        for index in range(count):
            x, y = cells[(start + index) % 4]
            _draw_shape(draw, shape, (x, y, x + 20, y + 20), COLOURS[colour])
        yield image, "How many shapes are there?", NUMBERS[count - 1]


def _bars():
    """Four bars of distinct colours and heights; asks for the tallest or the shortest."""
    heights = (14, 26, 38, 50)
    names = list(COLOURS)
    for first, order in itertools.product(range(len(names)), range(12)):
        colours = [names[(first + step) % len(names)] for step in (0, 1, 3, 4)]
        ranking = list(itertools.permutations(range(4)))[order * 2 + first % 2]
        image, draw = _canvas()
        for position, (colour, rank) in enumerate(zip(colours, ranking, strict=True)):
            left = 6 + position * 14
            draw.rectangle((left, SIZE - 6 - heights[rank], left + 9, SIZE - 6), COLOURS[colour])
        tallest = colours[ranking.index(3)]
        shortest = colours[ranking.index(0)]
        if order % 2:
            yield image, "Which colour is the shortest bar?", shortest
        else:
            yield image, "Which colour is the tallest bar?", tallest


def build() -> list[tuple[Image.Image, str, str]]:
    """Every `(image, question, answer)`, in generation order."""
    return [*_single_shapes(), *_counts(), *_bars()]


def write_all(output_dir: str = OUTPUT) -> dict[str, int]:
    """Writes `images/` and the two JSONL files into `output_dir` (its old `images/` is
    replaced); returns the row count of each file."""
    images_dir = os.path.join(output_dir, "images")
    shutil.rmtree(images_dir, ignore_errors=True)
    os.makedirs(images_dir)
    rows = []
    for index, (image, question, answer) in enumerate(build()):
        name = f"images/{index:03d}.png"
        image.save(os.path.join(output_dir, name), "PNG", optimize=True)
        content = [
            {"type": "image_url", "image_url": {"url": name}},
            {"type": "text", "text": question},
        ]
        rows.append(
            {
                "messages": [
                    {"role": "user", "content": content},
                    {"role": "assistant", "content": answer},
                ]
            }
        )
    rows.sort(key=lambda row: hashlib.sha256(json.dumps(row).encode()).hexdigest())
    split = {"train.jsonl": [], "validation.jsonl": []}
    for index, row in enumerate(rows):
        split["validation.jsonl" if index % 5 == 4 else "train.jsonl"].append(row)
    for name, file_rows in split.items():
        with open(os.path.join(output_dir, name), "w", encoding="utf-8", newline="\n") as file:
            file.writelines(json.dumps(row) + "\n" for row in file_rows)
    return {name: len(file_rows) for name, file_rows in split.items()}


def main() -> None:
    """Regenerates `vision/` next to this module and prints the row counts."""
    for name, count in write_all().items():
        print(f"vision/{name}: {count} rows")


if __name__ == "__main__":
    main()
