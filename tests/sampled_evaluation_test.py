"""`eval.sample_temperature`: base and tuned also answer every held-out prompt once by
sampling (systems base+sampled and tuned+sampled), seeded by the run, in training's evaluation
and in `python -m gemma_tune.evaluate`."""

import json
import os

import pytest

from gemma_tune import config as config_lib
from gemma_tune import train
from gemma_tune.evaluation import answers, run_evaluation

SETTINGS = ["train.max_steps=20", "samples.max_new_tokens=8", "eval.limit=6"]


def _comparison(path):
    with open(os.path.join(path, "comparison.json")) as f:
        return json.load(f)


def test_settings_are_off_by_default_and_checked():
    config = config_lib.load("tiny")
    assert answers.sampling_settings(config.eval, 3) == {}
    config.eval.sample_temperature = 0.7
    assert answers.sampling_settings(config.eval, 3) == {
        "temperature": 0.7,
        "top_p": 0.9,
        "seed": 3,
    }
    with pytest.raises(ValueError, match="eval.sample_top_p"):
        config_lib.load("tiny", ["eval.sample_temperature=1.0", "eval.sample_top_p=0"])
    with pytest.raises(ValueError, match="eval.sample_temperature"):
        config_lib.load("tiny", ["eval.sample_temperature=-1.0"])
    with pytest.raises(ValueError, match="--sample_top_p must be in"):
        run_evaluation._override_sampling({"eval": {}}, None, 1.5)


@pytest.mark.slow  # two tiny runs and an evaluation: ~40 s on 2 cores
def test_sampled_answers_are_seeded_and_near_zero_temperature_is_greedy(tmp_path):
    hot = train.run(
        config_lib.load("tiny", [*SETTINGS, "eval.sample_temperature=1.5"]), str(tmp_path / "hot")
    )
    comparison = _comparison(hot)
    assert comparison["systems"] == ["base", "base+sampled", "tuned", "tuned+sampled"]
    assert comparison["primary"] == "tuned"
    greedy = [item["answers"]["tuned"] for item in comparison["examples"]]
    sampled = [item["answers"]["tuned+sampled"] for item in comparison["examples"]]
    assert sampled != greedy  # at temperature 1.5 some answer differs
    assert set(comparison["means"]["tuned+sampled"]) == set(comparison["means"]["tuned"])
    # Sampled answers are compared with sampled answers: tuned+sampled against base+sampled.
    assert comparison["change_against"] == {
        "base+sampled": "base",
        "tuned": "base",
        "tuned+sampled": "base+sampled",
    }
    means = comparison["means"]
    assert comparison["change"]["tuned+sampled"]["token_f1"] == pytest.approx(
        means["tuned+sampled"]["token_f1"] - means["base+sampled"]["token_f1"]
    )
    report = open(os.path.join(hot, "report.md")).read()
    assert "Δ tuned+sampled vs base+sampled" in report and "Δ tuned |" in report

    # The command rebuilds the run's models and, with the run's seed, draws the same samples.
    again = _comparison(run_evaluation.evaluate(hot, out=str(tmp_path / "again")))
    assert [item["answers"] for item in again["examples"]] == [
        item["answers"] for item in comparison["examples"]
    ]
    # Near temperature 0 sampling keeps the most likely token: the greedy answers.
    cold = _comparison(
        run_evaluation.evaluate(hot, out=str(tmp_path / "cold"), sample_temperature=1e-4)
    )
    for item in cold["examples"]:
        assert item["answers"]["base+sampled"] == item["answers"]["base"]
        assert item["answers"]["tuned+sampled"] == item["answers"]["tuned"]
    with open(os.path.join(tmp_path, "cold", "config.json")) as f:
        assert json.load(f)["eval"]["sample_temperature"] == 1e-4
