"""The run report as Markdown (`report.md`), from the same page `gemma_tune.reporting.report`
builds for `report.html`: tables whose long cells are folded, saying where the whole text is.
"""

from __future__ import annotations

from gemma_tune.reporting import progress, report_html
from gemma_tune.runs import run_dir

MARKDOWN_LIMIT = 300


def _md_text(text: str | None, limit: int = MARKDOWN_LIMIT, source=run_dir.COMPARISON) -> str:
    """Text for a Markdown table cell: one line, pipes and HTML escaped, folded past `limit`
    (saying that `source` holds the whole text)."""
    text = " ".join((text or "").split())
    if not text:
        return "*(empty)*"
    extra = len(text) - limit
    if extra > 0:
        text = text[:limit].rstrip()
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    text = text.replace("|", "\\|")
    folded = f" … (+{extra} chars, full text in {source})"
    return text + (folded if extra > 0 else "")


def _md_table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(_md_text(h) for h in header) + " |"]
    lines.append("|" + " --- |" * len(header))
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines + [""]


def markdown(page: report_html.Page, image_name: str = run_dir.LOSS_CURVES) -> str:
    """The report as Markdown (the loss curves linked as `image_name`, next to it)."""
    lines = [f"# {page.title}", ""]
    lines += [page.description, ""] if page.description else []
    lines += [f"- {line}" for line in page.headline] + ([""] if page.headline else [])
    lines += ["## What was trained", ""]
    lines += [f"- **{label}**: {_md_text(value)}" for label, value in page.facts] + [""]
    lines += ["## Loss curves", ""]
    if page.curves_png:
        lines += [f"![training and validation loss]({image_name})", ""]
    lines += [page.curves_caption, "", "## Metrics", "", page.metrics_note, ""]
    if page.metrics_rows:
        lines += _md_table(page.metrics_header, [[t for t, _ in r] for r in page.metrics_rows])
    if page.qualitative:
        lines += ["## Qualitative prompts", ""]
        rows = [
            [_md_text(q.get("prompt"))]
            + [_md_text(q.get("answers", {}).get(s)) for s in page.qualitative_systems]
            for q in page.qualitative
        ]
        lines += _md_table(["prompt", *page.qualitative_systems], rows)
    lines += progress.to_markdown(
        page.progress, lambda text: _md_text(text, source=run_dir.GENERATIONS), _md_table
    )
    if page.examples:
        lines += ["## Held-out examples", "", page.outcome + ".", ""]
        lines += ["Sorted by gain, biggest first; context and long answers are folded.", ""]
        rows = []
        for row in page.examples:
            prompt = _md_text(row.prompt)
            if row.context:
                prompt += " — *context:* " + _md_text(row.context)
            rows.append(
                [f"{row.number}", prompt, _md_text(row.reference)]
                + [_md_text(row.answers[s]) for s in page.systems]
                + [" / ".join(row.scores[s] for s in page.systems), row.gain]
            )
        scores = f"{page.primary_metric} ({' / '.join(page.systems)})"
        lines += _md_table(["#", "prompt", "reference", *page.systems, scores, "gain"], rows)
    return "\n".join(lines)
