"""A Gemma 3 preset with a vision encoder (as `gemma3_4b` and larger are) loads with its encoder
and image converter and reads images; a text-only preset loads as before. Offline:
`tiny:gemma3_vision` saved as a KerasHub preset directory stands in for a real one.

    python -m pytest -q tests/vision_preset_test.py           # loading
    python -m pytest -q -m slow tests/vision_preset_test.py   # training and sample --image
"""

import json
import os

import keras_hub
import numpy as np
import pytest

import gemma_tune
from gemma_tune import config as config_lib
from gemma_tune import model, sample, train
from gemma_tune.bundled import make_vision_data
from gemma_tune.model import vision
from gemma_tune.runs import run_dir

EXPERIMENT = os.path.join(os.path.dirname(__file__), "..", "experiments", "tiny_vision.py")


def save_preset(loaded, path: str, converter: bool = True) -> str:
    """`loaded` saved as a KerasHub preset directory: backbone, tokenizer and (when asked)
    the image converter, as KerasHub's own Gemma 3 presets hold them."""
    loaded.backbone.save_to_preset(path)
    loaded.tokenizer.save_to_preset(path)
    if converter and loaded.image_converter is not None:
        loaded.image_converter.save_to_preset(path)
    return path


@pytest.fixture(scope="module")
def tiny_vision():
    return model.load("tiny:gemma3_vision", dtype="float32")


@pytest.fixture(scope="module")
def vision_preset(tiny_vision, tmp_path_factory):
    return save_preset(tiny_vision, str(tmp_path_factory.mktemp("preset") / "vision"))


def test_a_vision_preset_loads_with_its_encoder_and_image_converter(tiny_vision, vision_preset):
    assert model.has_vision_encoder(vision_preset) and model.reads_images(vision_preset)
    loaded = model.load(vision_preset, "float32")
    encoder = vision.encoder_of(loaded.backbone)
    assert encoder is not None
    saved = {w.path: np.asarray(w.numpy()) for w in tiny_vision.backbone.weights}
    assert len(loaded.backbone.weights) == len(saved)
    for variable in loaded.backbone.weights:
        np.testing.assert_array_equal(np.asarray(variable.numpy()), saved[variable.path])
    assert vision.image_inputs(loaded) == dict_free(vision.image_inputs(tiny_vision), loaded)
    image = np.random.default_rng(0).uniform(0, 255, (40, 48, 3)).astype(np.float32)
    np.testing.assert_array_equal(
        np.asarray(loaded.image_converter(image)), np.asarray(tiny_vision.image_converter(image))
    )


def dict_free(inputs, loaded):
    """`inputs` with `loaded`'s converter: every other field must be equal."""
    return vision.ImageInputs(**{**inputs.__dict__, "converter": loaded.image_converter})


def test_a_preset_without_a_saved_converter_gets_the_family_s_and_says_so(
    tiny_vision, tmp_path, capsys
):
    path = save_preset(tiny_vision, str(tmp_path / "no_converter"), converter=False)
    loaded = model.load(path, "float32")
    assert "no image converter saved; using Gemma 3's default" in capsys.readouterr().out
    inputs = vision.image_inputs(loaded)
    assert (inputs.image_size, inputs.tokens_per_image) == (32, 16)
    image = np.full((32, 32, 3), 255.0, np.float32)
    np.testing.assert_allclose(np.asarray(loaded.image_converter(image)), 1.0)


def test_a_text_only_preset_loads_as_before(tmp_path):
    path = save_preset(model.load("tiny:gemma3", dtype="float32"), str(tmp_path / "text"))
    assert not model.reads_images(path)
    loaded = model.load(path, "float32")
    assert loaded.backbone.vision_encoder is None and loaded.image_converter is None
    assert vision.image_inputs(loaded) is None


@pytest.mark.slow  # ~40 s on 2 shared CPU cores: a short image run from the preset, sample
def test_a_run_from_a_vision_preset_trains_on_image_rows_and_samples_with_an_image(
    vision_preset, tmp_path
):
    run_path = str(tmp_path / "run")
    settings = [
        f"model.preset={vision_preset}",
        "train.epochs=1",
        "train.max_steps=12",
        "train.eval_every=0",
        "train.log_every=1",
        "eval.limit=2",
        "samples.count=1",
        "samples.max_new_tokens=4",
    ]
    train.run(config_lib.load(EXPERIMENT, settings), run_path)
    losses = [r["loss"] for r in run_dir.read_metrics(run_path) if "loss" in r]
    assert len(losses) == 12 and np.mean(losses[-4:]) < losses[0]
    with open(os.path.join(run_path, "comparison.json")) as file:
        compared = json.load(file)
    assert compared["count"] == 2
    assert all(item.get("thumbnails") for item in compared["examples"])

    chat = sample.Chat(vision_preset, run_dir.adapter_dir(run_path))
    image = os.path.join(make_vision_data.OUTPUT, "images", "000.png")
    prompt = chat.prompt_ids("What colour is the square?", images=sample.read_images([image]))
    assert len(prompt[1]) == 1
    answer = chat.answer(prompt, chat.tuned_weights, echo=False, max_new_tokens=4)
    assert answer
    # The Python API answers the same about the same image.
    run = gemma_tune.load_run(run_path)
    assert run.generate("What colour is the square?", images=[image], max_new_tokens=4) == answer
    assert isinstance(chat.loaded.image_converter, keras_hub.layers.Gemma3ImageConverter)
