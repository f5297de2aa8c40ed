"""The bundled image dataset: it regenerates byte-for-byte, the data check reads it cleanly,
and the answers are what the pictures show.

    python -m pytest -q tests/bundled_vision_test.py
"""

import json
import os
import subprocess
import sys

import numpy as np

from gemma_tune.bundled import make_vision_data
from gemma_tune.data import sources

WHITE = make_vision_data.WHITE


def _committed_files():
    root = make_vision_data.OUTPUT
    return sorted(
        os.path.relpath(os.path.join(folder, name), root)
        for folder, _, names in os.walk(root)
        for name in names
    )


def test_regenerating_reproduces_the_files_byte_for_byte(tmp_path):
    counts = make_vision_data.write_all(str(tmp_path))
    assert counts == {"train.jsonl": 288, "validation.jsonl": 72}
    committed = _committed_files()
    assert len(committed) == 2 + 360
    fresh = sorted(
        os.path.relpath(os.path.join(folder, name), tmp_path)
        for folder, _, names in os.walk(tmp_path)
        for name in names
    )
    assert fresh == committed
    for name in committed:
        with open(os.path.join(make_vision_data.OUTPUT, name), "rb") as old:
            with open(tmp_path / name, "rb") as new:
                assert new.read() == old.read(), f"{name} is stale: rerun make_vision_data"


def test_the_data_check_reads_it_cleanly():
    path = os.path.join(make_vision_data.OUTPUT, "validation.jsonl")
    checked = subprocess.run(
        [sys.executable, "-m", "gemma_tune.data", "check", path],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "rows with images: 72 of 72 (72 images)" in checked.stdout
    assert "image sizes (width x height): min 64x64, max 64x64" in checked.stdout
    assert "warning" not in checked.stdout


def test_answers_are_what_the_pictures_show():
    """Colour and side questions checked from the pixels, and no question about one image
    asked twice across the splits."""
    read = [
        sources.read_file(os.path.join(make_vision_data.OUTPUT, name), images=True)
        for name in make_vision_data.FILES
    ]
    examples = [item for result in read for item in result.examples]
    assert all(not result.warnings for result in read)
    assert len({item.images[0].path for item in examples}) == len(examples) == 360
    checked = 0
    for item in examples:
        pixels = item.images[0].pixels()
        drawn = np.any(pixels != WHITE, axis=-1)
        question, answer = item.prompt, item.response
        if question.startswith("What colour is the"):
            colours = {tuple(pixel) for pixel in pixels[drawn]}
            assert colours == {make_vision_data.COLOURS[answer]}, item.source
            checked += 1
        elif question.endswith("on the left or the right?"):
            side = "left" if np.nonzero(drawn)[1].mean() < 32 else "right"
            assert side == answer, item.source
            checked += 1
    assert checked == 144
    with open(os.path.join(make_vision_data.OUTPUT, "train.jsonl"), encoding="utf-8") as file:
        first = json.loads(file.readline())
    assert first["messages"][0]["content"][0]["type"] == "image_url"
