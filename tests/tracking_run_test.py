"""A tiny Gemma 3 run with `train.report_to` = TensorBoard, W&B (offline) and Trackio: each
tracker holds exactly the numbers of metrics.jsonl at their steps, and the fixed prompts'
answers; with `train.keep_best` the kept step is the argmin of the recorded validation losses.
W&B and Trackio are skipped where they are not installed.
"""

import importlib.util
import json
import os

import pytest
import tracking_helpers

from gemma_tune import config as config_lib
from gemma_tune import train
from gemma_tune.runs import run_dir

PROMPT = "Repeat after me: the cat likes red apples."
SETTINGS = [
    "model.preset=tiny:gemma3",
    "lora.rank=2",
    "sequence_length=64",
    "train.max_steps=4",
    "train.eval_every=2",
    "train.log_every=1",
    "train.eval_batches=1",
    "train.learning_rate=0.1",
    "train.keep_best=true",
    "eval.limit=0",
    "samples.count=0",
    "samples.max_new_tokens=4",
    f'eval.prompts=["{PROMPT}"]',
]


def _trackers() -> list[str]:
    names = ["tensorboard"]
    if importlib.util.find_spec("wandb") is not None:
        names.append("wandb")
    if tracking_helpers.trackio_usable():
        names.append("trackio")
    return names


@pytest.fixture(scope="module")
def tracked_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tracked")
    names = _trackers()
    environment = {
        "WANDB_MODE": "offline",
        "WANDB_SILENT": "true",
        "TRACKIO_PROJECT": "tracking_run_test",
    }
    saved = {key: os.environ.get(key) for key in environment}
    os.environ.update(environment)
    try:
        config = config_lib.load("tiny", SETTINGS + [f"train.report_to={json.dumps(names)}"])
        run_path = train.run(config, str(folder / "run"))
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    return run_path, names


def test_tensorboard_scalars_match_metrics_jsonl(tracked_run):
    run_path, _ = tracked_run
    records = run_dir.read_metrics(run_path)
    expected = tracking_helpers.expected_scalars(records)
    assert {"loss", "learning_rate", "val_loss"} <= {key for key, _ in expected}
    scalars = tracking_helpers.tensorboard_scalars(run_path)
    assert scalars.keys() == expected.keys()
    for key, value in expected.items():
        assert scalars[key] == pytest.approx(value, rel=1e-6), key


def test_tensorboard_holds_the_fixed_prompts_answers(tracked_run):
    run_path, _ = tracked_run
    [table] = tracking_helpers.tensorboard_texts(run_path)["generations"]
    base = json.loads(open(os.path.join(run_path, run_dir.BASE_ANSWERS)).read())
    [base_answer] = base["qualitative"]["base"]
    cell = base_answer.replace("|", "\\|").replace("\n", "<br>")
    assert table.splitlines()[0] == "| prompt | base | tuned |"
    assert table.splitlines()[2].startswith(f"| {PROMPT} | {cell} | ")


def test_wandb_offline_run_matches_metrics_jsonl(tracked_run):
    run_path, names = tracked_run
    if "wandb" not in names:
        pytest.skip("wandb is not installed")
    values, _ = tracking_helpers.wandb_history(run_path)
    for key, value in tracking_helpers.expected_scalars(run_dir.read_metrics(run_path)).items():
        assert values[key] == pytest.approx(value, rel=1e-12), key


def test_trackio_run_matches_metrics_jsonl(tracked_run):
    run_path, names = tracked_run
    if "trackio" not in names:
        pytest.skip("trackio is not installed (or was imported before the tests' store was set)")
    from trackio.sqlite_storage import SQLiteStorage

    logs = SQLiteStorage.get_logs("tracking_run_test", os.path.basename(run_path))
    logged = {(k, log["step"]): v for log in logs for k, v in log.items() if k != "step"}
    for key, value in tracking_helpers.expected_scalars(run_dir.read_metrics(run_path)).items():
        assert logged[key] == pytest.approx(value, rel=1e-12), key


def test_the_kept_step_is_the_argmin_of_the_validation_losses(tracked_run):
    run_path, _ = tracked_run
    result = json.loads(open(os.path.join(run_path, run_dir.RESULT)).read())
    validations = [r for r in run_dir.read_metrics(run_path) if "val_loss" in r and r["step"]]
    best = min(validations, key=lambda r: r["val_loss"])
    assert result["kept_step"] == result["best_step"] == best["step"]
    assert result["val_loss"] == best["val_loss"]
    assert result["stopped_because"] == "completed" and result["steps"] == 4


def test_no_answers_during_training_unless_asked(tracked_run):
    # train.generate_every_eval is off by default: only the end of the run answers the prompts.
    run_path, _ = tracked_run
    assert not os.path.exists(os.path.join(run_path, run_dir.GENERATIONS))
    assert "generations_during_training" not in tracking_helpers.tensorboard_texts(run_path)
