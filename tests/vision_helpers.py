"""Image rows and templates shared by the vision tests (`from vision_helpers import ...`:
pytest puts tests/ on sys.path, since the directory has no __init__.py)."""

import os

from gemma_tune.bundled import make_vision_data
from gemma_tune.data import example, images, sources
from gemma_tune.model import vision
from gemma_tune.training import template


def bundled_rows(count=8):
    """The first `count` rows of the bundled image questions, images read."""
    path = os.path.join(make_vision_data.OUTPUT, "train.jsonl")
    return sources.read_file(path, images=True).examples[:count]


def chat(loaded, train_on_prompt=False):
    """The chat template of a loaded vision model, reading images."""
    return template.ChatTemplate(loaded.tokenizer, train_on_prompt, vision.image_inputs(loaded))


def with_image(row, image_path):
    """`row` with its image replaced by the bundled image at `image_path`."""
    image = images.check("test", "image", path=image_path)
    parts = tuple(image if isinstance(p, example.Image) else p for p in row.turns[0].parts)
    first = example.Turn(example.USER, row.turns[0].text, parts=parts)
    return example.Example(turns=(first, *row.turns[1:]), source=row.source)


def bundled_image(index):
    """The path of bundled image number `index`."""
    return os.path.join(make_vision_data.OUTPUT, "images", f"{index:03d}.png")
