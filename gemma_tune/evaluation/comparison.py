"""Several models' answers to the same held-out prompts, scored: per example, means, changes.

A "system" is one way of answering: `base` and `tuned`, and with retrieval also
`base+context` and `tuned+context`. Every system's answers are scored against each example's
reference (`gemma_tune.evaluation.metrics`); means and the absolute and relative change of
every metric against the baseline system (for a sampled system, `tuned+sampled`, against the
baseline's sampled answers, `base+sampled`: sampling against sampling; `change_against` names
it) go to `comparison.json` (format version 2), from which
`gemma_tune.report` renders the report. An example whose prompt holds images (vision models)
also stores each as a small PNG thumbnail (`thumbnails`: `data:` URLs, at most
`THUMBNAIL_SIZE` pixels a side), which the HTML report shows beside the answers.
"""

from __future__ import annotations

import dataclasses

from gemma_tune.data import example as example_lib
from gemma_tune.evaluation import metrics
from gemma_tune.evaluation.answers import SAMPLED

VERSION = 2
THUMBNAIL_SIZE = 96

# The metrics shown in the printed table, in order (all are in comparison.json).
HEADLINE = ("exact_match", "token_f1", "rougeL_f1", "rouge1_f1", "length_words")


@dataclasses.dataclass
class Comparison:
    """Scores of several systems' answers to the same examples.

    Attributes:
      examples: the scored examples (their `response` is the reference).
      answers: system name -> one answer per example.
      scores: system name -> one `metrics.score` dict per example.
      baseline: the system every change is measured against.
      primary: the system whose gain orders the per-example table.
      primary_metric: the metric that orders it.
      losses: system name -> {"loss", "perplexity", "accuracy"} on reference responses.
      qualitative: fixed prompts with each system's answer (no reference, no score).
    """

    examples: list[example_lib.Example]
    answers: dict[str, list[str]]
    scores: dict[str, list[dict[str, float]]]
    baseline: str = "base"
    primary: str = "tuned"
    primary_metric: str = "token_f1"
    losses: dict[str, dict[str, float]] = dataclasses.field(default_factory=dict)
    qualitative: list[dict] = dataclasses.field(default_factory=list)

    @property
    def systems(self) -> list[str]:
        return list(self.answers)

    def means(self) -> dict[str, dict[str, float]]:
        """Each system's mean of every metric."""
        return {name: metrics.mean_scores(self.scores[name]) for name in self.systems}

    def reference_of(self, name: str) -> str:
        """The system `name`'s changes are measured against: the baseline, or for a sampled
        system other than the baseline's own the baseline's sampled answers."""
        sampled_baseline = self.baseline + SAMPLED
        if name.endswith(SAMPLED) and name != sampled_baseline and sampled_baseline in self.answers:
            return sampled_baseline
        return self.baseline

    def to_dict(self) -> dict:
        """The comparison in `comparison.json`'s format (version 2)."""
        means = self.means()
        others = [name for name in self.systems if name != self.baseline]
        against = {name: self.reference_of(name) for name in others}

        def change(name, relative=False):
            base = means[against[name]]
            if not relative:
                return {k: means[name][k] - base[k] for k in base}
            return {k: (means[name][k] - base[k]) / base[k] if base[k] else None for k in base}

        return {
            "version": VERSION,
            "count": len(self.examples),
            "systems": self.systems,
            "baseline": self.baseline,
            "primary": self.primary,
            "primary_metric": self.primary_metric,
            "means": means,
            "change": {name: change(name) for name in others},
            "relative_change": {name: change(name, relative=True) for name in others},
            "change_against": against,
            "losses": self.losses,
            "examples": [
                {
                    "source": item.source,
                    "prompt": item.prompt,
                    "context": item.context,
                    "reference": item.response,
                    "answers": {name: self.answers[name][i] for name in self.systems},
                    "scores": {name: self.scores[name][i] for name in self.systems},
                    **_thumbnails(item),
                }
                for i, item in enumerate(self.examples)
            ],
            "qualitative": self.qualitative,
        }

    def table(self) -> str:
        """The headline metrics as an aligned text table, one column per system."""
        means = self.means()
        width = max(10, *(len(name) for name in self.systems))
        header = "".join(f" {name:>{width}s}" for name in self.systems)
        extra = ("loss", "perplexity", "likelihood_accuracy", "rewards/accuracies")
        shown = [k for k in extra if any(k in self.losses.get(n, {}) for n in self.systems)]
        label = max(16, *(len("val_" + k) + 1 for k in shown)) if shown else 16
        lines = [
            f"Held-out comparison ({len(self.examples)} examples)",
            f"{'metric':{label}s}{header}",
        ]
        for key in HEADLINE:
            values = "".join(f" {means[name][key]:{width}.3f}" for name in self.systems)
            lines.append(f"{key:{label}s}{values}")
        for key in shown:
            cells = [self.losses.get(name, {}).get(key) for name in self.systems]
            values = "".join(
                f" {'-':>{width}s}" if v is None else f" {v:{width}.3f}" for v in cells
            )
            lines.append(f"{'val_' + key:{label}s}{values}")
        return "\n".join(lines)


def compare(
    examples: list[example_lib.Example],
    answers: dict[str, list[str]],
    baseline: str = "base",
    primary: str | None = None,
    primary_metric: str = "token_f1",
    losses: dict[str, dict[str, float]] | None = None,
    qualitative: list[dict] | None = None,
) -> Comparison:
    """Scores every system's answers against each example's reference answer.

    Args:
      examples: held-out examples; their last model turn is the reference.
      answers: system name -> answers in example order (the baseline among them).
      baseline: the system changes are measured against.
      primary: the system the per-example table is sorted by (default: the last system).
      primary_metric: a key of `metrics.score`.
      losses / qualitative: stored as given (see `Comparison`).
    """
    if baseline not in answers:
        raise ValueError(f"baseline {baseline!r} is not among the systems {list(answers)}")
    scores = {
        name: [
            metrics.score(answer, item.response)
            for answer, item in zip(system_answers, examples, strict=True)
        ]
        for name, system_answers in answers.items()
    }
    return Comparison(
        examples=examples,
        answers=answers,
        scores=scores,
        baseline=baseline,
        primary=primary or list(answers)[-1],
        primary_metric=primary_metric,
        losses=losses or {},
        qualitative=qualitative or [],
    )


def _thumbnails(item: example_lib.Example) -> dict:
    """`{"thumbnails": [data URL, ...]}` for an example with images in its turns, else {}."""
    found = [image for turn in item.turns for image in turn.images]
    if not found:
        return {}
    return {"thumbnails": [thumbnail_url(image) for image in found]}


def thumbnail_url(image: example_lib.Image, size: int = THUMBNAIL_SIZE) -> str:
    """`image` shrunk to at most `size` pixels a side (aspect kept), as a PNG `data:` URL."""
    import base64
    import io

    from PIL import Image as PIL_Image

    picture = PIL_Image.fromarray(image.pixels())
    picture.thumbnail((size, size))
    buffer = io.BytesIO()
    picture.save(buffer, "PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")
