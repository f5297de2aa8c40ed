"""The run report as one self-contained HTML page and its loss-curve figure.

    python -m gemma_tune.report --run=RUN_DIR      # writes RUN_DIR/report.html

`gemma_tune.report` gathers what the run says into a `Page`; this module lays it out.
Inline CSS, the loss curves as a PNG data URI, no scripts and nothing fetched from the
network, so the file opens offline and can be mailed around. Every piece of text from the run
is escaped; long text is folded into <details>, never cut.
"""

from __future__ import annotations

import base64
import dataclasses
import html
import io

from gemma_tune.reporting import progress as progress_lib

FOLD_LIMIT = 200

# Light and darker shade per system family ("tuned" and "tuned+context" share a hue).
_HUES = (
    ("#eef3fb", "#d6e3f6"),  # slate blue
    ("#fff6e5", "#fde6bb"),  # amber
    ("#f4effb", "#e3d7f6"),  # lavender
    ("#e9f6f4", "#cdebe6"),  # teal
)


@dataclasses.dataclass
class ExampleRow:
    """One held-out example as the report shows it (numbers already formatted)."""

    number: int  # 1-based position in comparison.json
    source: str
    prompt: str
    context: str | None
    reference: str
    answers: dict[str, str]
    scores: dict[str, str]  # the primary metric, per system
    gain: str
    tone: str  # "gain", "loss" or ""
    thumbnails: tuple[str, ...] = ()  # the prompt's images, as PNG data: URLs


@dataclasses.dataclass
class Page:
    """Everything the report says (`gemma_tune.report.build`), laid out here and as Markdown."""

    title: str
    description: str
    run_path: str
    headline: list[str]
    facts: list[tuple[str, str]]
    curves_png: bytes | None
    curves_caption: str
    systems: list[str] = dataclasses.field(default_factory=list)
    baseline: str = ""
    metrics_header: list[str] = dataclasses.field(default_factory=list)
    metrics_rows: list[list[tuple[str, str]]] = dataclasses.field(default_factory=list)
    metrics_note: str = ""
    qualitative: list[dict] = dataclasses.field(default_factory=list)
    qualitative_systems: list[str] = dataclasses.field(default_factory=list)
    progress: progress_lib.Progress = dataclasses.field(default_factory=progress_lib.Progress)
    primary_metric: str = ""
    examples: list[ExampleRow] = dataclasses.field(default_factory=list)
    outcome: str = ""


_CSS = """
* { box-sizing: border-box; }
body { margin: 0; background: #f3f4f6; color: #1f2328;
  font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, Helvetica, Arial, sans-serif; }
main { max-width: 1280px; margin: 0 auto; padding: 24px 32px 48px; background: #fff; }
h1 { font-size: 26px; margin: 0 0 4px; }
h2 { font-size: 19px; margin: 36px 0 10px; padding-bottom: 4px; border-bottom: 1px solid #d0d7de; }
p { margin: 6px 0; }
.description { color: #57606a; font-size: 16px; }
.headline { margin: 12px 0 0; padding-left: 20px; font-weight: 600; }
.muted, .path { color: #6e7781; font-size: 13px; }
table { border-collapse: collapse; margin: 8px 0; }
th, td { border: 1px solid #d8dee4; padding: 5px 9px; vertical-align: top; text-align: left; }
th { background: #f6f8fa; font-weight: 600; }
table.facts th { width: 170px; background: #f6f8fa; }
table.facts td, table.facts th { border-color: #eaeef2; }
table.metrics td.num, table.metrics th.num { text-align: right; font-variant-numeric: tabular-nums;
  white-space: nowrap; }
table.metrics td:first-child { white-space: nowrap; }
table.metrics th.group { text-align: center; font-weight: 600; }
table.wide { width: 100%; table-layout: fixed; }
table.wide td { overflow-wrap: anywhere; }
.text { white-space: pre-wrap; overflow-wrap: anywhere; }
.empty { color: #8c959f; font-style: italic; }
td.gain { background: #dafbe1; color: #116329; }
td.loss { background: #ffebe9; color: #a40e26; }
tr.gain > td.number { border-left: 4px solid #2da44e; }
tr.loss > td.number { border-left: 4px solid #cf222e; }
td.number { color: #57606a; font-size: 13px; }
img.thumb { display: block; max-width: 96px; max-height: 96px; margin-bottom: 4px; }
td.number .source { display: block; overflow-wrap: anywhere; color: #8c959f; font-size: 11px; }
td.gaincell { text-align: right; white-space: nowrap; font-variant-numeric: tabular-nums;
  font-weight: 600; }
.score { margin-top: 6px; font-size: 12px; color: #57606a; font-variant-numeric: tabular-nums; }
details > summary { cursor: pointer; list-style: none; }
details > summary::-webkit-details-marker { display: none; }
details .more { color: #0969da; font-size: 12px; white-space: nowrap; }
details[open] .preview { display: none; }
details[open] > .text { max-height: 28em; overflow-y: auto; }
details:not([open]) .less { display: none; }
details.context { margin-top: 6px; padding: 4px 6px; background: #f6f8fa; border-radius: 4px;
  font-size: 13px; }
figure { margin: 0; }
figure img { max-width: 100%; height: auto; border: 1px solid #eaeef2; }
figcaption { color: #6e7781; font-size: 13px; }
.outcome { font-weight: 600; }
"""


def _e(text) -> str:
    return html.escape(str(text))


def system_colors(systems: list[str]) -> dict[str, str]:
    """A background colour per system: a hue per family (the name before "+"), the variants
    with a "+" suffix a darker shade of it."""
    families: list[str] = []
    colors = {}
    for system in systems:
        family = system.split("+")[0]
        if family not in families:
            families.append(family)
        light, dark = _HUES[families.index(family) % len(_HUES)]
        colors[system] = dark if "+" in system else light
    return colors


def fold(text: str | None, limit: int = FOLD_LIMIT) -> str:
    """Escaped text; past `limit` characters (or many lines) folded into <details> whose
    summary shows the start and whose body holds the whole text."""
    text = text or ""
    if not text.strip():
        label = "(empty)" if not text else f"(whitespace only, {len(text)} chars)"
        return f'<span class="empty">{label}</span>'
    if len(text) <= limit and text.count("\n") < 6:
        return f'<div class="text">{_e(text)}</div>'
    preview = " ".join(text.split())[:limit]
    return (
        f'<details><summary><span class="preview">{_e(preview)}… </span>'
        f'<span class="more preview">show all {len(text):,} chars</span>'
        f'<span class="more less">show less</span></summary>'
        f'<div class="text">{_e(text)}</div></details>'
    )


def _context(context: str | None) -> str:
    if not context:
        return ""
    return (
        f'<details class="context"><summary><span class="more">context '
        f"({len(context):,} chars)</span></summary>"
        f'<div class="text">{_e(context)}</div></details>'
    )


def _table(header: list[str], rows: list[str], css_class: str, header_cells=None) -> str:
    head = header_cells or "".join(f"<th>{_e(h)}</th>" for h in header)
    return (
        f'<table class="{css_class}"><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table>"
    )


def _system_th(system: str, colors: dict[str, str], extra: str = "") -> str:
    return f'<th style="background: {colors[system]}"{extra}>{_e(system)}</th>'


def _facts(page) -> str:
    rows = [f"<tr><th>{_e(label)}</th><td>{_e(value)}</td></tr>" for label, value in page.facts]
    return f'<table class="facts"><tbody>{"".join(rows)}</tbody></table>'


def _curves(page) -> str:
    image = ""
    if page.curves_png:
        data = base64.b64encode(page.curves_png).decode("ascii")
        image = (
            f'<img src="data:image/png;base64,{data}" '
            'alt="training and validation loss by step" width="990" height="396">'
        )
    return f"<figure>{image}<figcaption>{_e(page.curves_caption)}</figcaption></figure>"


def _metrics(page, colors) -> str:
    if not page.metrics_rows:
        return f'<p class="muted">{_e(page.metrics_note)}</p>'
    systems = page.systems
    others = [s for s in systems if s != page.baseline]
    top = f'<th rowspan="2">metric</th><th colspan="{len(systems)}" class="group">mean</th>'
    top += "".join(
        f'<th colspan="2" class="group" style="background: {colors[s]}">'
        f"{_e(s)} vs {_e(page.baseline)}</th>"
        for s in others
    )
    second = "".join(_system_th(s, colors, ' class="num"') for s in systems)
    second += '<th class="num">Δ</th><th class="num">Δ%</th>' * len(others)
    rows = []
    for row in page.metrics_rows:
        (label, _), *values = row
        tds = [
            f'<td class="num" style="background: {colors[s]}">{_e(text)}</td>'
            for s, (text, _) in zip(systems, values, strict=False)
        ]
        tds += [f'<td class="num {t}">{_e(text)}</td>' for text, t in values[len(systems) :]]
        rows.append(f"<tr><td>{_e(label)}</td>{''.join(tds)}</tr>")
    table = (
        f'<table class="metrics"><thead><tr>{top}</tr><tr>{second}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table>"
    )
    return f'<p class="muted">{_e(page.metrics_note)}</p>{table}'


def _qualitative(page, colors) -> str:
    if not page.qualitative:
        return ""
    systems = page.qualitative_systems
    header = "<th>prompt</th>" + "".join(_system_th(s, colors) for s in systems)
    rows = []
    for item in page.qualitative:
        answers = item.get("answers", {})
        cells = "".join(
            f'<td style="background: {colors[s]}">{fold(answers.get(s))}</td>' for s in systems
        )
        rows.append(f"<tr><td>{fold(item.get('prompt'))}</td>{cells}</tr>")
    return (
        "<h2>Qualitative prompts</h2>"
        '<p class="muted">Fixed prompts without a reference answer (and without retrieved '
        "context), answered by each model.</p>" + _table([], rows, "wide qualitative", header)
    )


def _short(source: str) -> str:
    """A source without its directories ("closed_validation.jsonl:7"); the title has it all."""
    return source.rsplit("/", 1)[-1]


def _thumbnails(urls) -> str:
    """The prompt's images as small inline pictures (only PNG data: URLs are shown)."""
    shown = [url for url in urls if str(url).startswith("data:image/png;base64,")]
    return "".join(f'<img class="thumb" src="{_e(url)}" alt="image">' for url in shown)


def _examples(page, colors) -> str:
    if not page.examples:
        return ""
    header = (
        '<th style="width: 72px">#</th><th>prompt</th><th>reference</th>'
        + "".join(_system_th(s, colors) for s in page.systems)
        + '<th style="width: 84px">gain</th>'
    )
    rows = []
    for row in page.examples:
        answers = "".join(
            f'<td style="background: {colors[s]}">{fold(row.answers[s])}'
            f'<div class="score">{_e(page.primary_metric)} {_e(row.scores[s])}</div></td>'
            for s in page.systems
        )
        rows.append(
            f'<tr class="{row.tone}"><td class="number">{row.number}'
            f'<span class="source" title="{_e(row.source)}">{_e(_short(row.source))}</span></td>'
            f"<td>{_thumbnails(row.thumbnails)}{fold(row.prompt)}{_context(row.context)}</td>"
            f"<td>{fold(row.reference)}</td>"
            f'{answers}<td class="gaincell {row.tone}">{_e(row.gain)}</td></tr>'
        )
    return (
        "<h2>Held-out examples</h2>"
        f'<p class="outcome">{_e(page.outcome)}.</p>'
        f'<p class="muted">Sorted by the gain in {_e(page.primary_metric)}, biggest first, worst '
        "regressions last. Click folded text or a context to read all of it.</p>"
        + _table([], rows, "wide examples", header)
    )


def loss_curves_png(train_records: list[dict], validation_records: list[dict]) -> bytes | None:
    """The training and validation loss curves as PNG bytes (None without any record).

    Training loss per logged step, validation loss at each evaluation, and the base model's
    step-0 validation loss as a dashed reference line.
    """
    if not train_records and not validation_records:
        return None
    from matplotlib import figure
    from matplotlib.backends import backend_agg

    preference = any(PREFERENCE_CURVES[0][0] in r for r in train_records + validation_records)
    fig = figure.Figure(figsize=(9, 6.4 if preference else 3.6), dpi=110, layout="constrained")
    backend_agg.FigureCanvasAgg(fig)
    axes = fig.add_subplot(2, 1, 1) if preference else fig.add_subplot()
    if train_records:
        style = dict(color="#4c72b0", lw=1.2, marker="." if len(train_records) < 40 else None)
        steps, losses = zip(*[(r["step"], r["loss"]) for r in train_records], strict=True)
        axes.plot(steps, losses, label="training loss (logged steps)", **style)
    if validation_records:
        steps, losses = zip(*[(r["step"], r["val_loss"]) for r in validation_records], strict=True)
        axes.plot(steps, losses, color="#dd8452", lw=2, marker="o", label="validation loss")
        if steps[0] == 0:
            label = f"base model, before training ({losses[0]:.3f})"
            axes.axhline(losses[0], color="#6e7781", ls="--", lw=1, label=label)
    axes.set_xlabel("step")
    axes.set_ylabel("DPO loss per pair" if preference else "loss per target token")
    axes.grid(alpha=0.3)
    fig.legend(loc="outside upper center", ncols=3, fontsize="small", frameon=False)
    if preference:
        _preference_curves(fig.add_subplot(2, 1, 2), train_records, validation_records)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


# DPO runs (`training.objectives.Preference`): the metrics drawn under the loss, and their colours.
PREFERENCE_CURVES = (
    ("rewards/accuracies", "reward accuracy", "#55a868"),
    ("rewards/margins", "reward margin", "#c44e52"),
)


def _preference_curves(axes, train_records: list[dict], validation_records: list[dict]) -> None:
    """DPO's reward accuracy and margin: thin lines for the logged training steps, markers for
    the validations."""
    for key, label, color in PREFERENCE_CURVES:
        points = [(r["step"], r[key]) for r in train_records if key in r]
        if points:
            steps, values = zip(*points, strict=True)
            axes.plot(steps, values, color=color, lw=1, alpha=0.6, label=f"{label} (training)")
        points = [(r["step"], r[f"val_{key}"]) for r in validation_records if f"val_{key}" in r]
        if points:
            steps, values = zip(*points, strict=True)
            axes.plot(steps, values, color=color, lw=2, marker="o", label=f"{label} (validation)")
    axes.set_xlabel("step")
    axes.set_ylabel("accuracy / margin")
    axes.grid(alpha=0.3)
    axes.legend(fontsize="small", frameon=False, ncols=2)


def render(page: Page) -> str:
    """The report page as one self-contained HTML document."""
    colors = system_colors(page.systems)
    headline = "".join(f"<li>{_e(line)}</li>" for line in page.headline)
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_e(page.title)}</title><style>{_CSS}</style></head><body><main>"
        f"<header><h1>{_e(page.title)}</h1>"
        + (f'<p class="description">{_e(page.description)}</p>' if page.description else "")
        + (f'<ul class="headline">{headline}</ul>' if headline else "")
        + f'<p class="path">{_e(page.run_path)}</p></header>'
        f"<h2>What was trained</h2>{_facts(page)}"
        f"<h2>Loss curves</h2>{_curves(page)}"
        f"<h2>Metrics</h2>{_metrics(page, colors)}"
        f"{_qualitative(page, colors)}{progress_lib.to_html(page.progress, fold)}"
        f"{_examples(page, colors)}"
        "</main></body></html>\n"
    )
