"""Experiments resolve by name, overrides are typed, and typos stop the run with a hint."""

import json
import os
import subprocess
import sys

import pytest

from gemma_tune import config as config_lib


def test_dolly_lora4_is_the_reference_run():
    config = config_lib.load("dolly_lora4")
    assert config.model.preset == "gemma_2b_en"
    assert config.data.source == "hf"
    assert config.data.name == "databricks/databricks-dolly-15k"
    assert config.data.max_examples == 1000
    assert config.data.keep_context is False
    assert config.sequence_length == 256
    assert config.lora.rank == 4
    assert config.train.learning_rate == 5e-5
    assert config.train.weight_decay == 0.01
    assert config.train.epochs == 1
    assert config.train.batch_size == 1


def test_every_experiment_resolves():
    names = config_lib.experiment_names()
    for required in (
        "dolly_lora4",
        "tiny",
        "wikilingua_summarize",
        "squad_qa",
        "csv_qa",
        "jsonl_sft",
    ):
        assert required in names
    for name in names:
        if name in NEEDS_AN_ARGUMENT:
            with pytest.raises(ValueError, match=NEEDS_AN_ARGUMENT[name]):
                config_lib.load(name)
            name = f"{name}:runs/some-run"
        assert config_lib.load(name).experiment == name


# Experiments that cannot run without an argument, and what their error tells the user to do.
NEEDS_AN_ARGUMENT = {"demo_dpo": r"--experiment=demo_dpo:RUN_DIR"}


def test_demo_dpo_starts_from_the_named_supervised_run():
    config = config_lib.load("demo_dpo:runs/demo-20261206-120000")
    assert config.train.init_from == "runs/demo-20261206-120000"
    assert config.train.objective == "dpo"
    supervised = config_lib.load("demo")
    assert (config.lora.rank, config.sequence_length) == (
        supervised.lora.rank,
        supervised.sequence_length,
    )


def test_experiment_argument_reaches_get_config():
    assert config_lib.load("tiny:gemma3").model.preset == "tiny:gemma3"
    assert config_lib.load("jsonl_sft:data/x.jsonl").data.path == "data/x.jsonl"


def test_overrides_are_parsed_by_type():
    config = config_lib.load(
        "tiny",
        ["lora.rank=16", "train.learning_rate=3e-4", "data.keep_context=true", "model.preset=x"],
    )
    assert config.lora.rank == 16 and isinstance(config.lora.rank, int)
    assert config.train.learning_rate == pytest.approx(3e-4)
    assert config.data.keep_context is True
    assert config.model.preset == "x"


def test_unknown_key_names_the_closest():
    with pytest.raises(ValueError, match="Did you mean 'train.learning_rate'"):
        config_lib.load("tiny", ["train.learnig_rate=1e-3"])


def test_badly_typed_value_is_refused():
    with pytest.raises(ValueError, match="expected a int"):
        config_lib.load("tiny", ["lora.rank=four"])
    with pytest.raises(ValueError, match="expected true or false"):
        config_lib.load("tiny", ["data.keep_context=maybe"])


def test_unknown_experiment_suggests_one():
    with pytest.raises(ValueError, match="Did you mean 'dolly_lora4'"):
        config_lib.load("dolly_lora")


def _train_cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "gemma_tune.train", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_print_config_prints_resolved_json():
    result = _train_cli("--experiment=dolly_lora4", "--print_config", "--set", "lora.rank=8")
    assert result.returncode == 0, result.stderr
    printed = json.loads(result.stdout)
    assert printed["lora"]["rank"] == 8
    assert printed["train"]["learning_rate"] == 5e-5


def test_list_shows_descriptions():
    result = _train_cli("--experiment=list")
    assert result.returncode == 0, result.stderr
    assert "dolly_lora4" in result.stdout and "Reference run" in result.stdout


def test_cli_typo_exits_before_any_work(tmp_path):
    result = _train_cli("--experiment=tiny", "--set", "lora.rnak=2", f"--workdir={tmp_path}/r")
    assert result.returncode == 2
    assert "Did you mean 'lora.rank'" in result.stderr
    assert not (tmp_path / "r").exists()


def test_an_experiment_file_outside_the_package(tmp_path):
    from gemma_tune.runs import run_dir

    path = tmp_path / "my_experiment.py"
    path.write_text(
        "from gemma_tune import config as config_lib\n\n\n"
        "def get_config(arg=None):\n"
        "    config = config_lib.base_config()\n"
        "    config.model.preset = f'tiny:{arg or \"gemma3\"}'\n"
        "    config.lora.rank = 3\n"
        "    return config\n"
    )
    config = config_lib.load(f"{path}:gemma2", ["lora.alpha=6"])
    assert config.model.preset == "tiny:gemma2" and config.lora.rank == 3
    assert config.lora.alpha == 6 and config.experiment == f"{path}:gemma2"
    assert config_lib.load(str(path)).model.preset == "tiny:gemma3"
    name = os.path.basename(run_dir.default_path(f"{path}:gemma2"))
    assert name.startswith("my_experiment-gemma2-")
    with pytest.raises(ValueError, match="does not exist"):
        config_lib.load(str(tmp_path / "missing.py"))
    (tmp_path / "empty.py").write_text("x = 1\n")
    with pytest.raises(ValueError, match="defines no get_config"):
        config_lib.load(str(tmp_path / "empty.py"))
