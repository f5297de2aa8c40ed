"""Image rows through the commands: `data check` summarizes them, refuses them for a
text-only `--model`, and training refuses them by name; `model.has_vision_encoder` tells a
preset that can see from one that cannot, from its config.

    python -m pytest -q tests/data_images_check_test.py
"""

import json
import subprocess
import sys

import keras
import keras_hub
import numpy as np
import pytest
from PIL import Image

from gemma_tune import model


def run(module, *args):
    return subprocess.run(
        [sys.executable, "-m", module, *args], capture_output=True, text=True, timeout=120
    )


def image_rows(tmp_path):
    """Three rows: one text-only, one with a 6x4 RGB PNG, one with two images (8x3 RGBA)."""
    Image.fromarray(np.zeros((4, 6, 3), np.uint8)).save(tmp_path / "a.png")
    Image.fromarray(np.zeros((3, 8, 4), np.uint8), "RGBA").save(tmp_path / "b.png")
    image = {"type": "image"}
    rows = [
        {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Yo"}]},
        {
            "messages": [
                {"role": "user", "content": [image, {"type": "text", "text": "Colour?"}]},
                {"role": "assistant", "content": "black"},
            ],
            "images": ["a.png"],
        },
        {
            "messages": [
                {"role": "user", "content": [image, image, {"type": "text", "text": "Same?"}]},
                {"role": "assistant", "content": "no"},
            ],
            "images": ["a.png", "b.png"],
        },
    ]
    path = tmp_path / "vision.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def test_check_summarizes_the_images(tmp_path):
    checked = run("gemma_tune.data", "check", str(image_rows(tmp_path)))
    assert checked.returncode == 0, checked.stderr
    lines = checked.stdout.splitlines()
    assert "train examples: 3" in lines
    assert "rows with images: 2 of 3 (3 images)" in lines
    assert "images per image row: min 1, mean 1.50, max 2" in lines
    assert "image sizes (width x height): min 6x3, max 8x4" in lines
    assert "image formats: PNG 3; modes: RGB 2, RGBA 1" in lines


@pytest.mark.slow  # >15 s on a 2-core AVX2 CPU: slow suite (CI runs it)
def test_check_with_a_text_only_model_names_each_image_row(tmp_path):
    path = image_rows(tmp_path)
    checked = run("gemma_tune.data", "check", str(path), "--model=tiny:gemma3")
    assert checked.returncode == 1
    reason = "an image in a row for a model that reads no images (tiny:gemma3: docs/vision.md)"
    assert checked.stdout.splitlines() == [
        f"{path}:2: images[0]: {reason}",
        f"{path}:3: images[0]: {reason}",
    ]
    assert checked.stderr.splitlines()[-1] == f"2 problem(s) in {path}"


@pytest.mark.slow  # ~20 s: a training process (the message itself: data_images_test.py)
def test_training_refuses_image_rows_in_one_line(tmp_path):
    path = image_rows(tmp_path)
    trained = run(
        "gemma_tune.train",
        "--experiment=tiny:gemma3",
        f"--workdir={tmp_path / 'run'}",
        "--set=data.source=file",
        f"--set=data.path={path}",
    )
    assert trained.returncode != 0
    assert (
        "image rows: this model does not read images (which models do: "
        "docs/vision.md); 2 rows have images, "
        f"first at {path}:2" in trained.stderr.splitlines()[-1]
    )
    assert "Traceback" not in trained.stderr


def _gemma3_preset(tmp_path, vision: bool) -> str:
    """A tiny Gemma 3 preset saved to disk; with `vision`, its config names a vision encoder
    as `save_to_preset` writes it for a multimodal Gemma 3 (building one takes ~15 s; the
    real multimodal preset is built in `multimodal_preset_test.py`)."""
    keras.utils.set_random_seed(0)
    backbone = keras_hub.models.Gemma3Backbone(
        vocabulary_size=64, num_layers=1, num_query_heads=2, num_key_value_heads=1,
        hidden_dim=16, intermediate_dim=32, head_dim=8, image_size=None, dtype="float32",
    )  # fmt: skip
    path = tmp_path / ("vision" if vision else "text")
    backbone.save_to_preset(str(path))
    if vision:
        encoder = keras_hub.models.Gemma3VisionEncoder(
            image_size=16, patch_size=4, num_heads=2, hidden_dim=16, num_layers=1,
            intermediate_dim=32, output_dim=32, pool_size=2,
        )  # fmt: skip
        config = json.loads((path / "config.json").read_text())
        config["config"].update(
            image_size=16, vision_encoder=keras.saving.serialize_keras_object(encoder)
        )
        (path / "config.json").write_text(json.dumps(config))
    return str(path)


def test_has_vision_encoder_reads_the_preset_config(tmp_path):
    assert model.has_vision_encoder(_gemma3_preset(tmp_path, vision=True))
    assert not model.has_vision_encoder(_gemma3_preset(tmp_path, vision=False))
    assert not model.has_vision_encoder("tiny:gemma3")
    assert not model.has_vision_encoder("tiny:gemma4")
    with pytest.raises(ValueError):
        model.has_vision_encoder("tiny:nothing")
