"""`gemma_tune.evaluation.run_evaluation` and `answers` without a model: what `evaluate`
resolves, reads and records; and the names training imports from `gemma_tune.evaluate`."""

import os
import shutil

import pytest

from gemma_tune.data import example
from gemma_tune.evaluation import answers, run_evaluation
from gemma_tune.runs import run_dir

FIXTURE_RUN = os.path.join(os.path.dirname(__file__), "fixtures", "run_v1")


def _example(prompt, response="r", context=None):
    turns = (example.Turn(example.USER, prompt), example.Turn(example.MODEL, response))
    return example.Example(turns=turns, context=context)


def test_a_run_resolves_to_its_model_adapter_seed_and_a_timestamped_directory(tmp_path):
    run_path = str(tmp_path / "run")
    shutil.copytree(FIXTURE_RUN, run_path)
    target = run_evaluation.resolve_target(run_path, None, None, None, None)
    assert target.preset == target.config["model"]["preset"]
    assert target.adapter == os.path.join(run_path, "adapter")
    assert target.seed == target.config.get("seed", 0)
    assert os.path.dirname(target.out) == os.path.join(run_path, run_dir.EVALUATIONS_DIR)
    other = run_evaluation.resolve_target(run_path, "tiny:gemma2", "ad", None, "out")
    assert (other.preset, other.adapter, other.out) == ("tiny:gemma2", "ad", "out")


def test_a_model_needs_data_and_an_output_directory():
    with pytest.raises(ValueError, match="a model with a data file"):
        run_evaluation.resolve_target(None, "tiny:gemma1", None, None, "out")
    with pytest.raises(ValueError, match="output directory"):
        run_evaluation.resolve_target(None, "tiny:gemma1", None, "qa.csv", None)
    target = run_evaluation.resolve_target(None, "tiny:gemma1", None, "dir/qa.csv", "out")
    assert target.config["experiment"] == "evaluate qa.csv"
    assert target.config["model"]["preset"] == "tiny:gemma1"
    assert (target.adapter, target.seed) == (None, 0)


def test_examples_come_from_the_file_or_the_runs_split(tmp_path):
    data = tmp_path / "qa.csv"
    data.write_text("input,output\na,b\nc,d\ne,f\n")
    config = run_evaluation.resolve_target(FIXTURE_RUN, None, None, None, "x").config
    from_file = run_evaluation.read_examples(config, 2, str(data), "auto", "validation")
    assert [item.prompt for item in from_file] == ["a", "c"]
    validation = run_evaluation.read_examples(config, 0, None, "auto", "validation")
    train = run_evaluation.read_examples(config, 0, None, "auto", "train")
    assert validation and len(train) > len(validation)


def test_variants_records_and_losses():
    items = [_example("q1", context="given"), _example("q2")]
    assert answers.variants(items) == {"": items}
    assert answers.examples_for_scoring({"": items}) == items
    records = answers.qualitative_records(["p"], {"base": ["x"], "tuned": ["y"]})
    assert records == [{"prompt": "p", "answers": {"base": "x", "tuned": "y"}}]
    final = {"val_loss": 1.0, "val_perplexity": 2.7, "base_val_loss": 3.0, "step": 5}
    assert answers.loss_record(final, "val_") == {"loss": 1.0, "perplexity": 2.7}
    assert answers.loss_record(final, "base_val_") == {"loss": 3.0}


def test_training_finds_its_names_in_evaluate():
    from gemma_tune import evaluate
    from gemma_tune.evaluation import retrieval

    assert evaluate.RunEvaluation is run_evaluation.RunEvaluation
    assert evaluate.evaluate is run_evaluation.evaluate
    assert (evaluate.BASE, evaluate.TUNED, evaluate.CONTEXT) == ("base", "tuned", "+context")
    assert evaluate.retriever is retrieval.from_config
    assert evaluate.retriever({"corpus": ""}) is None
