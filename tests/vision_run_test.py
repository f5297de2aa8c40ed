"""The vision experiment end to end (`experiments/tiny_vision.py` on the bundled image
questions, `tiny:gemma3_vision`): the training loss goes down, the held-out image rows are
answered by base and tuned, `sample` answers about an image, and a killed run resumes exactly;
the real-model recipe (`experiments/vision_gemma3_4b.py`) resolves offline."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from gemma_tune import config as config_lib
from gemma_tune import sample, train
from gemma_tune.bundled import make_vision_data
from gemma_tune.runs import run_dir

EXPERIMENT = os.path.join(os.path.dirname(__file__), "..", "experiments", "tiny_vision.py")
REAL_MODEL = os.path.join(os.path.dirname(__file__), "..", "experiments", "vision_gemma3_4b.py")
# 30 steps of 4 image rows, checkpoints every 10 steps so that a resume starts mid-epoch; a
# few held-out image rows answered base vs tuned.
SETTINGS = [
    "train.epochs=1",
    "train.max_steps=30",
    "train.eval_every=0",
    "train.log_every=1",
    "train.checkpoint_every=10",
    "eval.limit=4",
    "samples.count=1",
    "samples.max_new_tokens=4",
]


def test_the_real_model_recipe_resolves_without_a_download():
    from gemma_tune import model

    config = config_lib.load(REAL_MODEL, ["model.quantize=int4"])
    assert config.model.preset == "gemma3_instruct_4b"
    # A 4B image is 256 image tokens: the rows must hold one, its question and its answer.
    assert config.sequence_length >= 256 + 64
    assert config.data.path == config_lib.load(EXPERIMENT).data.path  # tiny_vision's data
    model.check_tuning(config)
    assert model.describe_tuning(config) == "LoRA rank 8 on query, value (int4 base)"
    with pytest.raises(ValueError, match="lora.vision_targets=.*must be a list of any of"):
        config_lib.load(REAL_MODEL, ['lora.vision_targets=["mlp"]'])


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    run_path = str(tmp_path_factory.mktemp("vision") / "run")
    train.run(config_lib.load(EXPERIMENT, SETTINGS), run_path)
    return run_path


def _losses(run_path):
    return [(r["step"], r["loss"]) for r in run_dir.read_metrics(run_path) if "loss" in r]


def _adapter(run_path):
    with np.load(os.path.join(run_dir.adapter_dir(run_path), "adapter.npz")) as arrays:
        return {name: arrays[name] for name in arrays.files}


@pytest.mark.slow  # ~50 s on 2 shared CPU cores (the run is shared with the tests below)
def test_the_loss_goes_down_and_held_out_image_rows_are_answered(finished):
    losses = [loss for _, loss in _losses(finished)]
    assert len(losses) == 30
    assert np.mean(losses[-10:]) < np.mean(losses[:5]) - 1.5
    with open(os.path.join(finished, "comparison.json")) as file:
        compared = json.load(file)
    assert compared["count"] == 4
    assert all(item["source"].startswith(make_vision_data.OUTPUT) for item in compared["examples"])
    assert all(set(item["answers"]) == {"base", "tuned"} for item in compared["examples"])
    losses_by_system = compared["losses"]
    assert losses_by_system["tuned"]["loss"] < losses_by_system["base"]["loss"] - 1.0
    with open(os.path.join(finished, "report.html")) as file:
        report = file.read()
    assert report.count('<img class="thumb" src="data:image/png;base64,') == 4


@pytest.mark.slow  # ~15 s after the run above
def test_sample_answers_about_an_image(finished):
    chat = sample.Chat("tiny:gemma3_vision", run_dir.adapter_dir(finished))
    folder = os.path.join(make_vision_data.OUTPUT, "images")
    answers = set()
    for index in (0, 100, 200, 300):
        images = sample.read_images([os.path.join(folder, f"{index:03d}.png")])
        prompt = chat.prompt_ids("What colour is the square?", images=images)
        assert len(prompt[1]) == 1
        answers.add(chat.answer(prompt, chat.tuned_weights, echo=False, max_new_tokens=4))
    assert all(answers)
    with pytest.raises(ValueError, match="--image=missing.png: no such file"):
        sample.read_images(["missing.png"])
    with pytest.raises(ValueError, match="--image needs the chat template"):
        chat.prompt_ids("Hi", raw=True, images=images)


@pytest.mark.slow  # ~2 min on 2 shared CPU cores: a run killed after a checkpoint, resumed
def test_a_killed_image_run_resumes_to_the_same_losses_and_adapter(finished, tmp_path):
    run_path = str(tmp_path / "run")
    sets = [arg for setting in SETTINGS for arg in ("--set", setting)]
    command = [
        sys.executable, "-m", "gemma_tune.train", f"--experiment={EXPERIMENT}",
        f"--workdir={run_path}", *sets,
    ]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline:
        assert process.poll() is None, "the run ended before it could be stopped"
        if os.path.exists(os.path.join(run_path, run_dir.METRICS)):
            if any(step >= 15 for step, _ in _losses(run_path)):
                break
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    resumed = subprocess.run(command, capture_output=True, text=True, timeout=400)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "Resuming from" in resumed.stderr
    got, expected = np.array(_losses(run_path)), np.array(_losses(finished))
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, rtol=1e-6)
    for name, value in _adapter(finished).items():
        np.testing.assert_allclose(_adapter(run_path)[name], value, rtol=1e-6, atol=1e-7)
