"""The report's "Answers during training" section: per fixed prompt, its greedy answer at each
validation of the run (`generations.jsonl`, written with `train.generate_every_eval`), as HTML
and as Markdown. Step 0 is the base model when the run validated before training
(`train.eval_at_start`).
"""

from __future__ import annotations

import dataclasses
import html

from gemma_tune.evaluation import progress_generations

INTRO = (
    "Greedy answers to the fixed prompts at each validation during training "
    "(train.generate_every_eval); step 0, where there is one, is the base model, before any "
    "update."
)


@dataclasses.dataclass
class Progress:
    """What the section shows: the steps answered and, per prompt, its answer by step."""

    steps: list[int] = dataclasses.field(default_factory=list)
    answers: dict[str, dict[int, str]] = dataclasses.field(default_factory=dict)


def read(run_path: str) -> Progress:
    """The run's answers during training (empty when it recorded none)."""
    steps, answers = progress_generations.by_prompt(progress_generations.read(run_path))
    return Progress(steps, answers)


def to_html(progress: Progress, fold) -> str:
    """The section as HTML (empty when there is nothing to show); `fold` renders a long text
    folded, as the rest of the report does."""
    if not progress.answers:
        return ""
    parts = ["<h2>Answers during training</h2>", f'<p class="muted">{html.escape(INTRO)}</p>']
    for prompt, by_step in progress.answers.items():
        rows = "".join(
            f'<tr><td class="num">{step}</td><td>{fold(by_step.get(step))}</td></tr>'
            for step in progress.steps
        )
        parts.append(
            f"<h3>{html.escape(prompt)}</h3>"
            '<table class="wide progress"><thead><tr><th class="num" style="width: 6em">step'
            f"</th><th>answer</th></tr></thead><tbody>{rows}</tbody></table>"
        )
    return "".join(parts)


def to_markdown(progress: Progress, md_text, md_table) -> list[str]:
    """The section as Markdown lines (none when there is nothing to show); `md_text` and
    `md_table` are the report's cell and table writers."""
    if not progress.answers:
        return []
    lines = ["## Answers during training", "", INTRO, ""]
    for prompt, by_step in progress.answers.items():
        lines += [f"### {md_text(prompt)}", ""]
        rows = [[str(step), md_text(by_step.get(step))] for step in progress.steps]
        lines += md_table(["step", "answer"], rows)
    return lines
