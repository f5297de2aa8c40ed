"""The trackers of `train.report_to` on their own (no model): what each is given comes back
from its files with the same values; a resumed run's TensorBoard file drops what the stopped
run logged after its checkpoint; a missing package, an unknown tracker and the older
`train.tensorboard` flag are handled before any work."""

import glob
import importlib.util
import json
import os

import pytest
import tracking_helpers

from gemma_tune import config as config_lib
from gemma_tune.training import tracking

RECORDS = [
    {"step": 0, "val_loss": 6.8251, "val_accuracy": 0.0},
    {"step": 1, "epoch": 0, "loss": 6.9, "learning_rate": 0.1, "grad_norm": 0.75},
    {"step": 2, "epoch": 0, "loss": 6.6123456789, "learning_rate": 0.1, "grad_norm": 0.95},
    {"step": 2, "val_loss": 6.31, "val_accuracy": 0.125},
]
QUALITATIVE = [
    {"prompt": "Say | hi", "answers": {"base": "hmm\nwell", "tuned": "hi"}},
    {"prompt": "Colour?", "answers": {"base": "?", "tuned": "red"}},
]


def _config(report_to, **train):
    config = config_lib.base_config()
    config.train.report_to = list(report_to)
    for key, value in train.items():
        config.train[key] = value
    return config


def _feed(config, run_path, records=RECORDS, start_step=0):
    trackers = tracking.Trackers(config, str(run_path), start_step)
    for record in records:
        trackers.log(record)
    trackers.log_generations(records[-1]["step"], QUALITATIVE)
    trackers.finish({"steps": 2, "val_loss": 6.31, "kept_step": 2})
    return trackers


def test_tensorboard_scalars_and_generations_are_what_was_logged(tmp_path):
    _feed(_config(["tensorboard"]), tmp_path)
    scalars = tracking_helpers.tensorboard_scalars(str(tmp_path))
    expected = tracking_helpers.expected_scalars(RECORDS)
    assert scalars.keys() == expected.keys()
    for key, value in expected.items():
        assert scalars[key] == pytest.approx(value, rel=1e-6), key
    [table] = tracking_helpers.tensorboard_texts(str(tmp_path))["generations"]
    assert "| prompt | base | tuned |" in table and "| Colour? | ? | red |" in table
    assert "Say \\| hi" in table and "hmm<br>well" in table


def test_a_resumed_run_replaces_the_steps_after_its_checkpoint_in_tensorboard(tmp_path):
    config = _config(["tensorboard"])
    first = [dict(r) for r in RECORDS] + [{"step": 3, "loss": 9.0}]
    _feed(config, tmp_path, first)
    # Resumed after the step-2 checkpoint: step 3 is trained again, with another loss.
    _feed(config, tmp_path, [{"step": 3, "loss": 5.0}], start_step=2)
    scalars = tracking_helpers.tensorboard_scalars(str(tmp_path))
    assert scalars[("loss", 3)] == 5.0
    assert scalars[("loss", 2)] == pytest.approx(6.6123456789)


def test_wandb_offline_run_holds_the_logged_values(tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    _feed(_config(["wandb"]), tmp_path)
    values, rows = tracking_helpers.wandb_history(str(tmp_path))
    expected = tracking_helpers.expected_scalars(RECORDS)
    for key, value in expected.items():
        assert values[key] == pytest.approx(value, rel=1e-12), key
    assert any(key.startswith("generations/") for row in rows for key in row)
    [table] = glob.glob(str(tmp_path / "wandb/offline-run-*/files/media/table/generations_*"))
    table = json.loads(open(table).read())
    assert table["columns"] == ["prompt", "base", "tuned"]
    assert table["data"][1] == ["Colour?", "?", "red"]
    ids = json.loads((tmp_path / "tracking.json").read_text())
    assert ids["name"] == tmp_path.name and len(ids["wandb_id"]) == 12


def test_trackio_run_holds_the_logged_values(tmp_path, monkeypatch):
    if not tracking_helpers.trackio_usable():
        pytest.skip("trackio is not installed (or was imported before the tests' store was set)")
    monkeypatch.setenv("TRACKIO_PROJECT", "tracking_trackers_test")
    (tmp_path / "run").mkdir()
    _feed(_config(["trackio"]), tmp_path / "run")
    from trackio.sqlite_storage import SQLiteStorage

    logs = SQLiteStorage.get_logs("tracking_trackers_test", "run")
    logged = {
        (key, log["step"]): value
        for log in logs
        for key, value in log.items()
        if key not in ("step", "timestamp") and isinstance(value, (int, float))
    }
    expected = tracking_helpers.expected_scalars(RECORDS)
    for key, value in expected.items():
        assert logged[key] == pytest.approx(value, rel=1e-12), key
    store = os.path.join(tracking_helpers.TRACKIO_DIR, "tracking_trackers_test.db")
    assert os.path.exists(store)


def test_no_trackers_write_nothing(tmp_path):
    _feed(_config([]), tmp_path)
    assert os.listdir(tmp_path) == []


def test_the_older_tensorboard_flag_is_report_to_tensorboard():
    config = _config(["wandb"], tensorboard=True)
    assert tracking.requested(config.train) == ["wandb", "tensorboard"]
    config = _config(["tensorboard"], tensorboard=True)
    assert tracking.requested(config.train) == ["tensorboard"]


def test_a_missing_tracker_package_names_the_extra(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else real(name, *a)
    )
    with pytest.raises(OSError, match=r"pip install 'gemma_tune\[wandb\]'"):
        tracking.check_installed(_config(["tensorboard", "wandb"]).train)


def test_report_to_accepts_only_known_trackers():
    config = config_lib.load("tiny", ['train.report_to=["tensorboard", "wandb", "trackio"]'])
    assert list(config.train.report_to) == ["tensorboard", "wandb", "trackio"]
    with pytest.raises(ValueError, match=r"train.report_to=\['mlflow'\]: must be a list of any"):
        config_lib.load("tiny", ['train.report_to=["mlflow"]'])
    with pytest.raises(ValueError, match=r"train.early_stopping_patience=-1: must be >= 0"):
        config_lib.load("tiny", ["train.early_stopping_patience=-1"])
