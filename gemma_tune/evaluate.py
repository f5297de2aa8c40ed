"""Base vs tuned on held-out prompts, in numbers: per-example scores, means, and the change.

Training generates answers for the first `eval.limit` validation examples with the base model
(before any update) and again with the tuned model, scores both against the references
(`gemma_tune.metrics`), prints the comparison and writes `comparison.json` and
`comparison.md` to the run directory.
"""

from __future__ import annotations

import dataclasses

from gemma_tune import metrics
from gemma_tune.data import example as example_lib

# The metrics shown in the printed table, in order (all are in comparison.json).
HEADLINE = ("exact_match", "token_f1", "rougeL_f1", "rouge1_f1", "length_words")


@dataclasses.dataclass
class Comparison:
    """Scores of two models' answers to the same examples."""

    examples: list[example_lib.Example]
    base_answers: list[str]
    tuned_answers: list[str]
    base_scores: list[dict[str, float]]
    tuned_scores: list[dict[str, float]]

    @property
    def base_mean(self) -> dict[str, float]:
        return metrics.mean_scores(self.base_scores)

    @property
    def tuned_mean(self) -> dict[str, float]:
        return metrics.mean_scores(self.tuned_scores)

    def to_dict(self) -> dict:
        """Means, absolute and relative changes, and every example with its scores."""
        base, tuned = self.base_mean, self.tuned_mean
        return {
            "count": len(self.examples),
            "base": base,
            "tuned": tuned,
            "change": {k: tuned[k] - base[k] for k in base},
            "relative_change": {
                k: (tuned[k] - base[k]) / base[k] if base[k] else None for k in base
            },
            "examples": [
                {
                    "source": item.source,
                    "prompt": item.prompt,
                    "context": item.context,
                    "reference": item.response,
                    "base": base_answer,
                    "tuned": tuned_answer,
                    "base_scores": base_scores,
                    "tuned_scores": tuned_scores,
                }
                for item, base_answer, tuned_answer, base_scores, tuned_scores in zip(
                    self.examples,
                    self.base_answers,
                    self.tuned_answers,
                    self.base_scores,
                    self.tuned_scores,
                    strict=True,
                )
            ],
        }

    def table(self) -> str:
        """The headline metrics as an aligned text table: base, tuned, change."""
        base, tuned = self.base_mean, self.tuned_mean
        lines = [
            f"Held-out comparison ({len(self.examples)} examples)",
            f"{'metric':16s} {'base':>8s} {'tuned':>8s} {'change':>8s}",
        ]
        for key in HEADLINE:
            lines.append(
                f"{key:16s} {base[key]:8.3f} {tuned[key]:8.3f} {tuned[key] - base[key]:+8.3f}"
            )
        return "\n".join(lines)

    def markdown(self, title: str) -> str:
        """The comparison as Markdown: metric table, then every example side by side,
        biggest token-F1 gains first and regressions last."""
        base, tuned = self.base_mean, self.tuned_mean
        lines = [
            f"# {title}",
            "",
            "| metric | base | tuned | change |",
            "| --- | --- | --- | --- |",
        ]
        for key in base:
            lines.append(
                f"| {key} | {base[key]:.3f} | {tuned[key]:.3f} | {tuned[key] - base[key]:+.3f} |"
            )
        lines += [
            "",
            "| # | prompt | reference | base | tuned | F1 base → tuned |",
            "| --- | --- | --- | --- | --- | --- |",
        ]
        order = sorted(
            range(len(self.examples)),
            key=lambda i: self.tuned_scores[i]["token_f1"] - self.base_scores[i]["token_f1"],
            reverse=True,
        )
        for i in order:
            item = self.examples[i]
            f1_change = (
                f"{self.base_scores[i]['token_f1']:.2f} → {self.tuned_scores[i]['token_f1']:.2f}"
            )
            lines.append(
                f"| {i + 1} | {_cell(item.prompt)} | {_cell(item.response)}"
                f" | {_cell(self.base_answers[i])} | {_cell(self.tuned_answers[i])} | {f1_change} |"
            )
        return "\n".join(lines) + "\n"


def compare(
    examples: list[example_lib.Example], base_answers: list[str], tuned_answers: list[str]
) -> Comparison:
    """Scores both models' answers against each example's reference answer."""
    return Comparison(
        examples=examples,
        base_answers=base_answers,
        tuned_answers=tuned_answers,
        base_scores=[
            metrics.score(a, e.response) for a, e in zip(base_answers, examples, strict=True)
        ],
        tuned_scores=[
            metrics.score(a, e.response) for a, e in zip(tuned_answers, examples, strict=True)
        ],
    )


def _cell(text: str, limit: int = 300) -> str:
    text = " ".join((text or "").split()) or "(empty)"
    if len(text) > limit:
        text = text[:limit] + f" … (+{len(text) - limit} chars)"
    return text.replace("|", "\\|")
