"""Runs survive: checkpoints are atomic, a killed or interrupted run resumes exactly, and a
directory holding another run is refused unless asked to overwrite."""

import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from gemma_tune import config as config_lib
from gemma_tune import train
from gemma_tune.training import checkpoint

# A tiny run long enough to be killed mid-way: 33 examples, batch 2 -> 17 steps per epoch;
# checkpoints every 7 steps, so resuming starts mid-epoch.
SETTINGS = [
    "train.epochs=8",
    "train.log_every=1",
    "train.checkpoint_every=7",
    "train.keep_checkpoints=3",
    "eval.limit=2",
    "samples.count=1",
    "samples.max_new_tokens=4",
]


def _command(run_path):
    sets = [arg for setting in SETTINGS for arg in ("--set", setting)]
    module = [sys.executable, "-m", "gemma_tune.train"]
    return [*module, "--experiment=tiny", f"--workdir={run_path}", *sets]


def _train_losses(run_path):
    with open(os.path.join(run_path, "metrics.jsonl")) as f:
        records = [json.loads(line) for line in f]
    return [(r["step"], r["loss"]) for r in records if "loss" in r]


def _adapter(run_path):
    with np.load(os.path.join(run_path, "adapter", "adapter.npz")) as arrays:
        return {name: arrays[name] for name in arrays.files}


def _wait_for_step(process, run_path, step, timeout=240):
    metrics = os.path.join(run_path, "metrics.jsonl")
    deadline = time.time() + timeout
    while time.time() < deadline:
        assert process.poll() is None, "the run ended before it could be stopped"
        if os.path.exists(metrics):
            with open(metrics) as f:
                steps = [json.loads(line).get("step", 0) for line in f if line.endswith("\n")]
            if steps and max(steps) >= step:
                return
        time.sleep(0.02)
    raise TimeoutError(f"step {step} not reached")


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    run_path = str(tmp_path_factory.mktemp("uninterrupted") / "run")
    train.run(config_lib.load("tiny", SETTINGS), run_path)
    return run_path


@pytest.mark.slow  # ~30 s: kill, resume, compare; CI runs the slow suite
def test_a_run_killed_at_a_random_step_resumes_to_the_same_losses_and_weights(
    uninterrupted, tmp_path
):
    run_path = str(tmp_path / "run")
    kill_at = random.Random().randint(8, 120)
    process = subprocess.Popen(
        _command(run_path), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    _wait_for_step(process, run_path, kill_at)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not os.path.exists(os.path.join(run_path, "result.json"))
    killed_after = max(step for step, _ in _train_losses(run_path))

    resumed = subprocess.run(_command(run_path), capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "Resuming from" in resumed.stderr, f"killed after step {killed_after}"

    expected, got = _train_losses(uninterrupted), _train_losses(run_path)
    assert [s for s, _ in got] == [s for s, _ in expected], f"killed after step {killed_after}"
    np.testing.assert_allclose([v for _, v in got], [v for _, v in expected], rtol=1e-6)
    expected_weights, got_weights = _adapter(uninterrupted), _adapter(run_path)
    assert sorted(got_weights) == sorted(expected_weights)
    for name, value in expected_weights.items():
        np.testing.assert_allclose(got_weights[name], value, rtol=1e-6, atol=1e-7, err_msg=name)


@pytest.mark.slow  # ~30 s
def test_sigint_saves_a_checkpoint_and_resume_finishes(uninterrupted, tmp_path):
    run_path = str(tmp_path / "run")
    process = subprocess.Popen(
        _command(run_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    _wait_for_step(process, run_path, 3)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 128 + signal.SIGINT, stderr[-3000:]
    assert "Interrupted: stopped by SIGINT after step" in stderr
    step = int(stderr.split("after step ")[1].split(";")[0])
    assert checkpoint.latest(run_path).endswith(f"step-{step:06d}")

    resumed = subprocess.run(
        [sys.executable, "-m", "gemma_tune.train", f"--resume={run_path}"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"step {step} of" in resumed.stderr
    expected, got = _train_losses(uninterrupted), _train_losses(run_path)
    assert [s for s, _ in got] == [s for s, _ in expected]
    np.testing.assert_allclose([v for _, v in got], [v for _, v in expected], rtol=1e-6)


def test_finished_and_other_runs_are_refused_unless_overwritten(uninterrupted, tmp_path):
    with pytest.raises(FileExistsError, match="finished run"):
        train.run(config_lib.load("tiny", SETTINGS), uninterrupted)
    other = str(tmp_path / "other")
    os.makedirs(other)
    with open(os.path.join(other, "config.json"), "w") as f:
        json.dump({**config_lib.load("tiny", SETTINGS).to_dict(), "seed": 7}, f)
    os.makedirs(os.path.join(other, "checkpoints", "step-000001"))  # far enough to resume
    with open(os.path.join(other, "checkpoints", "step-000001", "state.json"), "w") as f:
        f.write("{}")
    with pytest.raises(FileExistsError, match="differs in seed"):
        train.run(config_lib.load("tiny", SETTINGS), other)
    train.run(config_lib.load("tiny", ["train.max_steps=2", "eval.limit=0"]), other, overwrite=True)
    assert os.path.exists(os.path.join(other, "result.json"))


# The start of a writer script: a stand-in for the Trainer's state (two tiny arrays, step 1).
_STATE = textwrap.dedent(
    """
    import resource, signal, sys, types
    import numpy as np
    from gemma_tune.training import checkpoint

    class Variable:
        def __init__(self, path):
            self.path = path

    state = types.SimpleNamespace(
        backbone=types.SimpleNamespace(trainable_variables=[Variable("layer/lora_a")]),
        optimizer=types.SimpleNamespace(variables=[Variable("adam/iteration")]),
        trainable=[np.full(4, 1.0, np.float32)],
        optimizer_state=[np.full(1, 1.0, np.float32)],
        step=1,
    )
    """
)

# Writes checkpoint 1, then a huge checkpoint 2 that the test kills half-way.
_WRITER = _STATE + textwrap.dedent(
    """
    checkpoint.save(sys.argv[1], state, {"tokens_seen": 1.0})
    print("first", flush=True)
    state.trainable = [np.ones(150_000_000, np.float32)]
    state.step = 2
    checkpoint.save(sys.argv[1], state, {"tokens_seen": 2.0})
    print("second", flush=True)
    """
)


class _Restored:
    """Receives what `checkpoint.restore` loads (shapes of the small first checkpoint)."""

    def __init__(self):
        self.backbone = type(
            "B", (), {"trainable_variables": [type("V", (), {"path": "layer/lora_a"})]}
        )
        self.trainable = [np.zeros(4, np.float32)]
        self.optimizer_state = [np.zeros(1, np.float32)]

    def set_state(self, trainable, optimizer_state, step):
        self.trainable, self.optimizer_state, self.step = trainable, optimizer_state, step


def test_a_kill_during_a_checkpoint_write_leaves_the_previous_one_loadable(tmp_path):
    run_path = str(tmp_path)
    process = subprocess.Popen(
        [sys.executable, "-c", _WRITER, run_path], stdout=subprocess.PIPE, text=True
    )
    assert process.stdout.readline().strip() == "first"
    root = os.path.join(run_path, checkpoint.DIRECTORY)
    deadline = time.time() + 60
    while not any(name.startswith(checkpoint.PARTIAL) for name in os.listdir(root)):
        assert time.time() < deadline and process.poll() is None
        time.sleep(0.001)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert any(name.startswith(checkpoint.PARTIAL) for name in os.listdir(root))

    latest = checkpoint.latest(run_path)
    assert latest.endswith("step-000001")
    restored = _Restored()
    state = checkpoint.restore(latest, restored)
    assert state["tokens_seen"] == 1.0 and restored.step == 1
    np.testing.assert_array_equal(restored.trainable[0], np.full(4, 1.0, np.float32))
    checkpoint.remove_partial(run_path)
    assert os.listdir(root) == ["step-000001"]


# Writes checkpoint 1, then fails to write a bigger checkpoint 2 under a file-size limit (the
# same OSError path as a full disk).
_LIMITED_WRITER = _STATE + textwrap.dedent(
    """
    checkpoint.save(sys.argv[1], state, {})
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (1_000_000, 1_000_000))
    state.trainable = [np.ones(1_000_000, np.float32)]
    state.step = 2
    try:
        checkpoint.save(sys.argv[1], state, {})
    except OSError as error:
        print(error)
    """
)


def test_a_failed_checkpoint_write_is_a_clear_error_and_leaves_no_partial(tmp_path):
    result = subprocess.run(
        [sys.executable, "-c", _LIMITED_WRITER, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "cannot write checkpoint" in result.stdout and "step-000002" in result.stdout
    assert "File too large" in result.stdout
    assert os.listdir(tmp_path / checkpoint.DIRECTORY) == ["step-000001"]


def test_an_unwritable_run_directory_is_a_clear_error(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory")
    result = subprocess.run(
        [sys.executable, "-m", "gemma_tune.train", "--experiment=tiny", f"--workdir={blocker}/run"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1
    assert f"error: cannot write the run directory {blocker}/run" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_nan_loss_stops_naming_step_and_batch_and_keeps_the_last_good_checkpoint(tmp_path):
    from gemma_tune import model, testing
    from gemma_tune.data import example
    from gemma_tune.training import loop, optimizer, template, trainer

    config = config_lib.load("tiny", ["train.max_steps=8", "train.log_every=1"])
    config.unlock()
    config.train.checkpoint_every = 3
    loaded = model.load("tiny:gemma1", "float32")
    model.enable_lora(loaded, 4)
    chat = template.ChatTemplate(loaded.tokenizer)
    encoded = [
        chat.encode(
            example.Example(
                turns=(
                    example.Turn(example.USER, row["instruction"]),
                    example.Turn(example.MODEL, row["response"]),
                )
            ),
            config.sequence_length,
        )
        for row in testing.tiny_conversations(16)
    ]
    tuner = trainer.Trainer(loaded.causal_lm, optimizer.make(config.train, 8))

    def log(record):  # Corrupts the weights after step 4 is logged, as an overflow would.
        if record.get("step") == 4 and "loss" in record:
            tuner.trainable = [value * np.float32("nan") for value in tuner.trainable]

    with pytest.raises(loop.NonFiniteLossError) as stop:
        loop.fit(tuner, encoded, [], config, chat.pad_id, log, run_path=str(tmp_path))
    message = str(stop.value)
    assert "loss became nan at step 5 (epoch 0, batch 4)" in message
    assert f"the last good checkpoint is {tmp_path}/checkpoints/step-000003" in message
    assert [os.path.basename(p) for p in checkpoint.list_complete(str(tmp_path))] == ["step-000003"]
