"""`train.keep_best` and `train.early_stopping_patience` on tiny Gemma 3 runs.

The validation losses are scripted (the trainer's `evaluate` returns a loss chosen per step)
so that a later step is worse than an earlier one and the patience runs out at a known step;
everything else (training, checkpoints, the adapter) is real. With a constant learning rate
the weights after step k do not depend on how many steps follow, so the adapter a keep_best
run writes must equal the adapter of a run that stopped at the kept step.
"""

import json
import os

import numpy as np
import pytest

from gemma_tune import config as config_lib
from gemma_tune import train
from gemma_tune.runs import run_dir
from gemma_tune.training import selection, trainer

SETTINGS = [
    "model.preset=tiny:gemma3",
    "lora.rank=2",
    "sequence_length=64",
    "train.max_steps=10",
    "train.eval_every=2",
    "train.checkpoint_every=3",
    "train.log_every=1",
    "train.eval_batches=1",
    "train.schedule=constant",
    "train.warmup_steps=0",
    "eval.limit=0",
    "samples.count=0",
    "eval.prompts=[]",
]
# Validation loss by step: best at 4, then 3 validations in a row without improvement.
LOSSES = {0: 9.0, 2: 6.0, 4: 5.0, 6: 5.5, 8: 5.0, 10: 5.2}
TIMINGS = {"train_seconds", "wall_seconds", "elapsed_s", "tokens_per_s"}


@pytest.fixture(autouse=True)
def scripted_validation(monkeypatch):
    """The trainer's validation returns LOSSES[step] (the real evaluation still runs)."""
    real = trainer.Trainer.evaluate

    def evaluate(self, batches):
        result = real(self, batches)
        return {**result, "loss": LOSSES[self.step]}

    monkeypatch.setattr(trainer.Trainer, "evaluate", evaluate)


def _run(tmp_path, name, extra, overwrite=False):
    run_path = str(tmp_path / name)
    train.run(config_lib.load("tiny", SETTINGS + extra), run_path, overwrite=overwrite)
    return run_path


def _result(run_path):
    return json.loads(open(os.path.join(run_path, run_dir.RESULT)).read())


def _adapter(run_path):
    path = os.path.join(run_path, run_dir.ADAPTER_DIR, run_dir.ADAPTER_WEIGHTS)
    with np.load(path) as f:
        return {name: f[name] for name in f.files}


def _validations(run_path):
    return [r for r in run_dir.read_metrics(run_path) if "val_loss" in r and r["step"] > 0]


def test_selection_counts_validations_without_improvement():
    chosen = selection.Selection(keep_best=True, patience=2)
    assert chosen.observe(2, {"val_loss": 3.0})
    assert not chosen.observe(4, {"val_loss": 3.0})  # equal is no improvement
    assert not chosen.stopped
    assert not chosen.observe(6, {"val_loss": 3.1})
    assert chosen.stopped and chosen.best_step == 2 and chosen.kept_step(6) == 2
    resumed = selection.Selection.from_state(chosen.to_state(), True, 2)
    assert resumed == chosen


@pytest.mark.slow
def test_keep_best_writes_the_best_steps_adapter(tmp_path):
    best = _run(tmp_path, "best", ["train.keep_best=true"])
    result = _result(best)
    validations = _validations(best)
    losses = [r["val_loss"] for r in validations]
    argmin = validations[int(np.argmin(losses))]["step"]
    assert result["steps"] == 10 and result["kept_step"] == argmin == 4
    assert result["kept_because"] == "best_val_loss"
    assert result["stopped_because"] == "completed"
    assert result["val_loss"] == result["best_val_loss"] == 5.0
    stopped_at_4 = _run(tmp_path, "four", ["train.max_steps=4"])
    last = _run(tmp_path, "last", [])
    for name, array in _adapter(stopped_at_4).items():
        np.testing.assert_array_equal(_adapter(best)[name], array, err_msg=name)
    assert any(
        not np.array_equal(array, _adapter(best)[name]) for name, array in _adapter(last).items()
    )
    assert _result(last)["kept_step"] == 10 and _result(last)["kept_because"] == "last_step"
    report = open(os.path.join(best, run_dir.REPORT_MD)).read()
    assert "Weights kept" in report and "step 4 (val_loss 5.000)" in report
    checkpoints = os.listdir(run_dir.checkpoints_dir(best))
    assert run_dir.best_checkpoint_name(4) in checkpoints
    assert not [n for n in checkpoints if n.startswith("best-") and n != "best-000004"]


class _Killed(Exception):
    """Stands for a kill in the middle of training."""


def _outputs(run_path):
    def without_timings(record):
        return {k: v for k, v in record.items() if k not in TIMINGS}

    metrics = [without_timings(r) for r in run_dir.read_metrics(run_path)]
    return without_timings(_result(run_path)), metrics, _adapter(run_path)


RESUMED = [
    "train.keep_best=true",
    "train.early_stopping_patience=2",
    'train.report_to=["tensorboard"]',
]


@pytest.mark.slow  # >15 s on a 2-core AVX2 CPU: slow suite (CI runs it)
def test_a_stopped_run_resumes_to_the_same_best_step_and_early_stop(tmp_path, monkeypatch):
    import tracking_helpers

    uninterrupted = _outputs(_run(tmp_path, "uninterrupted", RESUMED))
    assert uninterrupted[0]["kept_step"] == 4 and uninterrupted[0]["steps"] == 8
    real_step = trainer.Trainer.train_step

    def train_step(self, batch):
        if self.step == 4:  # step 5: after the step-3 checkpoint and step 4's best weights
            raise _Killed
        return real_step(self, batch)

    monkeypatch.setattr(trainer.Trainer, "train_step", train_step)
    with pytest.raises(_Killed):
        _run(tmp_path, "stopped", RESUMED)
    stopped = str(tmp_path / "stopped")
    names = os.listdir(run_dir.checkpoints_dir(stopped))
    assert {"step-000003", "best-000004"} <= set(names) and "step-000006" not in names
    monkeypatch.setattr(trainer.Trainer, "train_step", real_step)
    _run(tmp_path, "stopped", RESUMED)
    result, metrics, adapter = _outputs(stopped)
    assert result == uninterrupted[0]
    assert metrics == uninterrupted[1]
    assert adapter.keys() == uninterrupted[2].keys()
    for name, array in adapter.items():
        np.testing.assert_array_equal(array, uninterrupted[2][name], err_msg=name)
    scalars = tracking_helpers.tensorboard_scalars(stopped)
    expected = tracking_helpers.expected_scalars(run_dir.read_metrics(stopped))
    assert scalars.keys() == expected.keys()


def test_early_stopping_stops_at_the_nth_validation_without_improvement(tmp_path):
    run_path = _run(tmp_path, "run", ["train.early_stopping_patience=3", "train.keep_best=true"])
    result = _result(run_path)
    validations = _validations(run_path)
    assert [r["step"] for r in validations] == [2, 4, 6, 8, 10]
    # Patience 2 stops at step 8 (two validations after the best, step 4) instead:
    patient = _run(tmp_path, "two", ["train.early_stopping_patience=2"])
    assert [r["step"] for r in _validations(patient)] == [2, 4, 6, 8]
    assert _result(patient)["steps"] == 8
    assert _result(patient)["stopped_because"] == "early_stopping"
    assert _result(patient)["validations_without_improvement"] == 2
    assert _result(patient)["kept_step"] == 8  # no keep_best: the last step's weights
    assert max(r["step"] for r in run_dir.read_metrics(patient)) == 8
    report = open(os.path.join(patient, run_dir.REPORT_MD)).read()
    assert "early, after step 8" in report
    # Patience 3 is not used up before the last step (10), where the run ends anyway.
    assert result["steps"] == 10 and result["stopped_because"] == "completed"


def test_keep_best_needs_validation_data(tmp_path):
    config = config_lib.load(
        "tiny", SETTINGS + ["train.keep_best=true", "data.validation_fraction=0"]
    )
    with pytest.raises(ValueError, match="train.keep_best needs validation data"):
        train.run(config, str(tmp_path / "run"))
    config = config_lib.load(
        "tiny", SETTINGS + ["train.early_stopping_patience=2", "train.eval_every=0"]
    )
    with pytest.raises(ValueError, match="needs validations during training"):
        train.run(config, str(tmp_path / "run"))
    assert not os.path.exists(tmp_path / "run")
