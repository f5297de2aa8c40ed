"""Every setting is range-checked before anything is written, and a start that failed before
its first checkpoint can be rerun with a corrected config in the same directory
(docs/reliability.md, "Validated settings")."""

import os

import pytest

from gemma_tune import config as config_lib
from gemma_tune import config_ranges, train, train_model
from gemma_tune.runs import run_dir

# Each bad setting, and the message naming the key, the value and the valid range.
BAD_SETTINGS = [
    ("lora.rank=0", "lora.rank=0: must be >= 1"),
    ("data.source=bogus", 'data.source="bogus": must be one of hf, tfds, file, tiny'),
    ("data.validation_fraction=1.5", "data.validation_fraction=1.5: must be in [0, 1)"),
    ("data.validation_fraction=-0.1", "data.validation_fraction=-0.1: must be in [0, 1)"),
    ("train.batch_size=0", "train.batch_size=0: must be >= 1"),
    ("train.log_every=0", "train.log_every=0: must be >= 1"),
    ("train.learning_rate=0", "train.learning_rate=0.0: must be > 0"),
    ("train.learning_rate=-1", "train.learning_rate=-1.0: must be > 0"),
    ("train.learning_rate=nan", "train.learning_rate=nan: must be a finite number > 0"),
    ("train.learning_rate=inf", "train.learning_rate=inf: must be a finite number > 0"),
    ("train.max_steps=-5", "train.max_steps=-5: must be >= 0 (0: no cap)"),
    ("train.epochs=0", "train.epochs=0: must be >= 1"),
    ("train.grad_accum_steps=0", "train.grad_accum_steps=0: must be >= 1"),
    ("train.eval_batch_size=0", "train.eval_batch_size=0: must be >= 1"),
    ("train.keep_checkpoints=0", "train.keep_checkpoints=0: must be >= 1"),
    ("train.schedule=steps", 'train.schedule="steps": must be one of constant, cosine, linear'),
    ("train.adam_beta2=1", "train.adam_beta2=1.0: must be in [0, 1)"),
    ("lora.dropout=1", "lora.dropout=1.0: must be in [0, 1)"),
    ("method=qlora", 'method="qlora": must be one of lora, dora, full'),
    ("model.quantize=int3", 'model.quantize="int3": must be one of none, int8, int4'),
    ("data.dedup=fuzzy", 'data.dedup="fuzzy": must be one of exact, normalized, none'),
    ("mesh.data=0", "mesh.data=0: must be -1 (all) or >= 1"),
    ("samples.max_new_tokens=0", "samples.max_new_tokens=0: must be >= 1"),
    ("sequence_length=0", "sequence_length=0: must be >= 2"),
]


@pytest.mark.parametrize("setting, message", BAD_SETTINGS)
def test_a_bad_setting_names_key_value_and_range(setting, message):
    with pytest.raises(ValueError) as error:
        config_lib.load("tiny", [setting])
    assert str(error.value) == message


def test_every_bad_setting_is_named_at_once():
    with pytest.raises(ValueError) as error:
        config_lib.load("tiny", ["train.batch_size=0", "lora.rank=0"])
    assert "lora.rank=0" in str(error.value) and "train.batch_size=0" in str(error.value)
    assert "\n" not in str(error.value)


def test_the_documented_special_values_are_accepted():
    config_lib.load(
        "tiny",
        ["train.max_steps=0", "train.eval_every=0", "train.checkpoint_every=0", "mesh.data=-1"],
    )


def test_every_key_with_a_range_exists_in_the_base_config():
    keys = set(config_lib._leaf_keys(config_lib.base_config()))
    assert set(config_ranges.RANGES) <= keys


def test_train_run_checks_a_config_changed_after_loading_before_writing(tmp_path):
    config = config_lib.load("tiny")
    with config.unlocked():
        config.train.epochs = 0
    with pytest.raises(ValueError, match="train.epochs=0: must be >= 1"):
        train.run(config, str(tmp_path / "run"))
    assert not (tmp_path / "run").exists()


class _StartFailed(Exception):
    """A start that fails after the run directory was created (loading the model, say)."""


def test_a_start_that_failed_before_its_first_checkpoint_reruns_with_a_fixed_config(
    tmp_path, monkeypatch
):
    run_path = str(tmp_path / "run")
    settings = ["train.max_steps=2", "eval.limit=0", "samples.count=0", "eval.prompts=[]"]

    def fail(config):
        raise _StartFailed

    monkeypatch.setattr(train_model, "prepare_model", fail)
    with pytest.raises(_StartFailed):
        train.run(config_lib.load("tiny", [*settings, "lora.rank=3"]), run_path)
    assert os.path.exists(os.path.join(run_path, run_dir.CONFIG))
    monkeypatch.undo()

    train.run(config_lib.load("tiny", [*settings, "lora.rank=2"]), run_path)
    assert run_dir.read_config(run_path)["lora"]["rank"] == 2
    assert run_dir.is_finished(run_path)


def test_docs_list_every_range():
    docs = os.path.join(os.path.dirname(__file__), "..", "docs", "configuration.md")
    text = open(docs).read()
    for key, valid in config_ranges.RANGES.items():
        assert f"| `{key}` | {valid.describe()} |" in text, key
