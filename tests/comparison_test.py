"""comparison.json: per-system means, changes against the baseline, per-example records."""

import pytest

from gemma_tune.data import example
from gemma_tune.evaluation import comparison


def _item(prompt, reference):
    return example.Example(
        turns=(example.Turn(example.USER, prompt), example.Turn(example.MODEL, reference)),
        source=f"test:{prompt}",
    )


EXAMPLES = [_item("capital of France?", "Paris"), _item("two plus two?", "four")]


def test_means_changes_and_examples_are_hand_checkable():
    result = comparison.compare(
        EXAMPLES,
        {"base": ["I think it is Lyon", "four"], "tuned": ["Paris.", "The answer is four"]},
        losses={"base": {"loss": 2.0}, "tuned": {"loss": 1.0}},
    )
    data = result.to_dict()
    assert data["version"] == 2 and data["count"] == 2
    assert data["systems"] == ["base", "tuned"]
    assert (data["baseline"], data["primary"]) == ("base", "tuned")
    # base: EM 0 then 1 ("four" == "four"); tuned: "Paris." normalizes to "paris" (EM 1), then
    # "the answer is four" vs "four" (EM 0; F1 = 2 * (1/3 * 1) / (1/3 + 1) = 0.5, "the" dropped).
    assert data["means"]["base"]["exact_match"] == pytest.approx(0.5)
    assert data["means"]["tuned"]["exact_match"] == pytest.approx(0.5)
    assert data["means"]["base"]["token_f1"] == pytest.approx(0.5)
    assert data["means"]["tuned"]["token_f1"] == pytest.approx((1.0 + 0.5) / 2)
    assert data["change"]["tuned"]["token_f1"] == pytest.approx(0.25)
    assert data["relative_change"]["tuned"]["token_f1"] == pytest.approx(0.5)
    assert data["means"]["tuned"]["length_words"] == pytest.approx(2.5)
    assert "base" not in data["change"]
    first = data["examples"][0]
    assert first["reference"] == "Paris" and first["answers"]["tuned"] == "Paris."
    assert first["scores"]["tuned"]["exact_match"] == 1.0
    assert data["losses"]["tuned"]["loss"] == 1.0
    table = result.table()
    assert "val_loss" in table and "0.750" in table


def test_relative_change_from_zero_is_none_and_four_systems_keep_their_order():
    answers = {
        "base": ["x", "y"],
        "base+context": ["Paris", "y"],
        "tuned": ["x", "four"],
        "tuned+context": ["Paris", "four"],
    }
    data = comparison.compare(EXAMPLES, answers).to_dict()
    assert data["systems"] == list(answers)
    assert data["primary"] == "tuned+context"
    assert data["means"]["base"]["exact_match"] == 0.0
    assert data["relative_change"]["tuned+context"]["exact_match"] is None
    assert data["change"]["tuned+context"]["exact_match"] == 1.0
    assert data["change"]["base+context"]["exact_match"] == 0.5


def test_unknown_baseline_and_mismatched_answers_are_refused():
    with pytest.raises(ValueError, match="baseline"):
        comparison.compare(EXAMPLES, {"tuned": ["a", "b"]})
    with pytest.raises(ValueError):
        comparison.compare(EXAMPLES, {"base": ["only one answer"]})
