"""Metrics on hand-checked cases, including normalization edge cases."""

import pytest

from gemma_tune.evaluation import metrics


@pytest.mark.parametrize(
    "text, normalized",
    [
        ("The Cat!", "cat"),
        ("  an   apple, a pear  ", "apple pear"),
        ("Theatre", "theatre"),  # "the" only as a whole word
        ("21 days.", "21 days"),
        ("", ""),
    ],
)
def test_normalize_answer(text, normalized):
    assert metrics.normalize_answer(text) == normalized


def test_exact_match_ignores_case_articles_and_punctuation():
    assert metrics.exact_match("The blue door.", "blue door") == 1.0
    assert metrics.exact_match("blue doors", "blue door") == 0.0


def test_token_f1_hand_computed():
    # prediction tokens: [open, on, tuesday, evenings]; reference: [tuesday, evenings]
    # overlap 2 -> precision 2/4, recall 2/2 -> F1 = 2 * 0.5 * 1 / 1.5
    assert metrics.token_f1("Open on Tuesday evenings", "Tuesday evenings") == pytest.approx(2 / 3)
    assert metrics.token_f1("nothing", "Tuesday") == 0.0
    assert metrics.token_f1("", "") == 1.0
    assert metrics.token_f1("", "x") == 0.0


def test_token_f1_counts_repeated_tokens_once_per_match():
    # overlap of [a1, b, b] vs [b]: min counts -> 1
    assert metrics.token_f1("red red red", "red") == pytest.approx(2 * (1 / 3) * 1 / (1 / 3 + 1))


def test_rouge_l_hand_computed():
    # LCS of "the cat sat on the mat" vs "the cat on the mat" is 5 tokens.
    scores = metrics.rouge("the cat sat on the mat", "the cat on the mat")
    assert scores["rougeL_precision"] == pytest.approx(5 / 6)
    assert scores["rougeL_recall"] == pytest.approx(1.0)
    assert scores["rougeL_f1"] == pytest.approx(2 * (5 / 6) / (5 / 6 + 1))


def test_mean_scores():
    per_example = [metrics.score("21 days", "21 days"), metrics.score("no idea", "21 days")]
    mean = metrics.mean_scores(per_example)
    assert mean["exact_match"] == 0.5
    assert mean["token_f1"] == 0.5
