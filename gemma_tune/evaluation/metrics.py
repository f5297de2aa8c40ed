"""Text metrics comparing generated answers with references.

- Exact match and token F1 with SQuAD's answer normalization (lower case, no punctuation, no
  articles a/an/the, single spaces), the metrics of the SQuAD baselines.
- ROUGE-1/2/L precision, recall and F1 from Google's `rouge-score` package (the reference
  implementation the Gemini tuning guide reports), with stemming.
"""

from __future__ import annotations

import collections
import re
import string

from rouge_score import rouge_scorer

ROUGE_TYPES = ("rouge1", "rouge2", "rougeL")
_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)
_PUNCTUATION = set(string.punctuation)


def normalize_answer(text: str) -> str:
    """SQuAD normalization: lower case, drop punctuation and articles, collapse whitespace."""
    text = text.lower()
    text = "".join(ch for ch in text if ch not in _PUNCTUATION)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def exact_match(prediction: str, reference: str) -> float:
    """1.0 when the normalized answers are identical, else 0.0."""
    return float(normalize_answer(prediction) == normalize_answer(reference))


def token_f1(prediction: str, reference: str) -> float:
    """Harmonic mean of token precision and recall after normalization (SQuAD's F1).

    Two empty answers score 1.0; one empty answer scores 0.0.
    """
    predicted = normalize_answer(prediction).split()
    expected = normalize_answer(reference).split()
    if not predicted or not expected:
        return float(predicted == expected)
    common = collections.Counter(predicted) & collections.Counter(expected)
    overlap = sum(common.values())
    if overlap == 0:
        return 0.0
    precision = overlap / len(predicted)
    recall = overlap / len(expected)
    return 2 * precision * recall / (precision + recall)


_SCORER = None


def rouge(prediction: str, reference: str) -> dict[str, float]:
    """ROUGE-1/2/L precision, recall and F1 of one prediction, keyed like `rougeL_f1`."""
    global _SCORER
    if _SCORER is None:
        _SCORER = rouge_scorer.RougeScorer(list(ROUGE_TYPES), use_stemmer=True)
    scores = _SCORER.score(reference, prediction)
    result = {}
    for kind in ROUGE_TYPES:
        result[f"{kind}_precision"] = scores[kind].precision
        result[f"{kind}_recall"] = scores[kind].recall
        result[f"{kind}_f1"] = scores[kind].fmeasure
    return result


def score(prediction: str, reference: str) -> dict[str, float]:
    """Every per-example metric: exact match, token F1, ROUGE, and the answer length in words."""
    return {
        "exact_match": exact_match(prediction, reference),
        "token_f1": token_f1(prediction, reference),
        **rouge(prediction, reference),
        "length_words": float(len(prediction.split())),
    }


def mean_scores(per_example: list[dict[str, float]]) -> dict[str, float]:
    """The mean of each metric over examples."""
    if not per_example:
        return {}
    return {key: sum(s[key] for s in per_example) / len(per_example) for key in per_example[0]}
