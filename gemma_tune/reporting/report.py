"""The run report people read: `python -m gemma_tune.report --run=RUN_DIR`.

    python -m gemma_tune.report --run=runs/demo-20250101-120000

Rebuilds, in the run directory, `report.html` (one self-contained file: inline CSS, the loss
curves embedded as a PNG data URI, no scripts, opens offline), `report.md` and
`loss_curves.png` from what the run left there: config.json, data_summary.json, metrics.jsonl,
result.json and, when the run was evaluated, comparison.json (version 2). In order: what was
trained, the loss curves, every metric for every system with its change against the baseline,
the fixed qualitative prompts, their answers at each validation during training
(`generations.jsonl`, `reporting.progress`), and every held-out example side by side, the
primary system's biggest gains first and its worst regressions last. Long text is folded,
never cut silently. Training and evaluation call `write(run_path)`; the CLI rebuilds one.
"""

from __future__ import annotations

import os

from gemma_tune.reporting import progress, report_html
from gemma_tune.runs import run_dir

# Metric keys in the order the table shows them, with the labels it shows.
METRIC_LABELS = {
    "exact_match": "exact match",
    "token_f1": "token F1",
    **{
        f"{kind}_{part}": f"ROUGE-{kind[5:]} {part if part != 'f1' else 'F1'}"
        for kind in ("rouge1", "rouge2", "rougeL")
        for part in ("precision", "recall", "f1")
    },
    "length_words": "answer length (words)",
}
LOSS_LABELS = {
    "loss": "loss",
    "perplexity": "perplexity",
    "accuracy": "token accuracy",
    "likelihood_accuracy": "preference accuracy (chosen answer likelier)",
    "rewards/accuracies": "reward accuracy (DPO)",
    "rewards/margins": "reward margin (DPO)",
}
_LOWER_IS_BETTER = {"loss", "perplexity"}
_NEUTRAL = {"length_words"}
_EPSILON = 1e-9
MARKDOWN_LIMIT = 300


def number(value) -> str:
    """A metric value for a table cell: thousands separated, 3 decimals below 100."""
    if value is None:
        return "—"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.1f}" if abs(value) >= 100 else f"{value:.3f}"


def signed(value) -> str:
    """A change for a table cell, with its sign."""
    if value is not None and abs(value) < _EPSILON:
        return number(0.0)
    text = number(value)
    return text if value is None or text.startswith("-") else "+" + text


def percent(fraction) -> str:
    """A relative change (0.25 -> "+25%"); "—" when undefined (the baseline is 0)."""
    if fraction is None:
        return "—"
    value = 100 * fraction
    return f"{value:+.1f}%" if abs(value) < 10 else f"{value:+,.0f}%"


def tone(metric: str, change) -> str:
    """ "gain" or "loss" for a change that is better or worse, "" for none or no direction."""
    if change is None or metric in _NEUTRAL or abs(change) < _EPSILON:
        return ""
    better = change < 0 if metric in _LOWER_IS_BETTER else change > 0
    return "gain" if better else "loss"


def _read_metrics(run_path: str) -> tuple[list[dict], list[dict]]:
    """Training and validation records from metrics.jsonl (a torn last line is skipped)."""
    records = run_dir.read_metrics(run_path)
    train_records = [record for record in records if "loss" in record]
    validation_records = [record for record in records if "val_loss" in record]
    return train_records, validation_records


def _duration(seconds) -> str:
    if seconds is None:
        return "—"
    if seconds < 120:
        return f"{seconds:.1f} s"
    return f"{seconds / 60:.1f} min" if seconds < 7200 else f"{seconds / 3600:.2f} h"


def _objective(config: dict) -> list[tuple[str, str]]:
    """The "Objective" fact of a preference run (and the run it started from), else none."""
    train, settings = config.get("train", {}), config.get("dpo", {})
    facts = []
    if train.get("objective") == "dpo":
        objective = f"DPO, {settings.get('loss')} loss, beta {settings.get('beta')}"
        if settings.get("rpo_alpha"):
            objective += f", chosen-answer NLL weight {settings['rpo_alpha']} (RPO)"
        facts.append(("Objective", objective))
    if train.get("init_from"):
        facts.append(("Started from", train["init_from"]))
    return facts


def _facts(config: dict, summary: dict, result: dict, trained: bool) -> list[tuple[str, str]]:
    """The "What was trained" list: label, value."""
    if not trained:
        none = (
            f"none in this directory (no {run_dir.RESULT} or {run_dir.METRICS}): "
            "an evaluation on its own"
        )
        preset = config.get("model", {}).get("preset")
        return ([("Model", preset)] if preset else []) + [("Training", none)]
    model, data = config.get("model", {}), config.get("data", {})
    train, lengths = config.get("train", {}), summary.get("token_lengths", {})
    total, trainable = result.get("parameters_total"), result.get("parameters_trainable")
    parameters = "—"
    if total and trainable is not None:
        parameters = f"{total:,} total, {trainable:,} trainable ({100 * trainable / total:.3g}%)"
    source = data.get("source", "—")
    where = {"hf": data.get("name"), "tfds": data.get("name"), "file": data.get("path")}
    data_text = f"{source}: {where[source]}" if where.get(source) else str(source)
    if data.get("validation_path"):
        data_text += f" (validation: {data['validation_path']})"
    counts = f"{summary.get('train_count', '—')} train, {summary.get('validation_count', '—')}"
    counts += f" validation ({summary['validation_from']})" if "validation_from" in summary else ""
    sequence = f"{config.get('sequence_length', '—')} tokens"
    if lengths:
        sequence += (
            f" (examples: median {lengths.get('p50')}, p95 {lengths.get('p95')}, max "
            f"{lengths.get('max')}; {lengths.get('truncated', 0)} truncated)"
        )
    steps = f"{result.get('steps', '—')}"
    if train.get("epochs"):
        steps += f" ({train['epochs']} epochs" + (
            f", capped at {train['max_steps']})" if train.get("max_steps") else ")"
        )
    batch, accumulation = train.get("batch_size", 1), train.get("grad_accum_steps", 1)
    wall = _duration(result.get("wall_seconds"))
    schedule = [str(train.get("learning_rate", "—"))]
    schedule += [f"{train['schedule']} schedule"] if "schedule" in train else []
    schedule += [f"{train['warmup_steps']} warmup steps"] if train.get("warmup_steps") else []
    schedule += [f"weight decay {train['weight_decay']}"] if "weight_decay" in train else []
    return [
        ("Model", f"{model.get('preset', '—')} ({model.get('dtype', '—')})"),
        ("Parameters", parameters),
        ("LoRA rank", str(config.get("lora", {}).get("rank", "—"))),
        ("Data", data_text),
        *_objective(config),
        ("Pairs" if summary.get("unit") == "pairs" else "Examples", counts),
        ("Sequence length", sequence),
        ("Steps", steps),
        *_kept(result),
        ("Batch", f"{batch} × {accumulation} accumulation = {batch * accumulation} per update"),
        ("Learning rate", ", ".join(schedule)),
        ("Time", f"{_duration(result.get('train_seconds'))} training, {wall} wall"),
    ]


def _kept(result: dict) -> list[tuple[str, str]]:
    """The "Stopped" and "Weights kept" facts of a run that chose its step
    (`train.keep_best`, `train.early_stopping_patience`); none for one that kept its last."""
    facts = []
    best = result.get("best_val_loss")
    best_text = f"step {result.get('best_step')} (val_loss {number(best)})"
    if result.get("stopped_because") == "early_stopping":
        facts.append(
            (
                "Stopped",
                f"early, after step {result.get('steps')}: val_loss did not improve in "
                f"{result.get('validations_without_improvement')} validations after {best_text}",
            )
        )
    if result.get("kept_because") == "best_val_loss":
        facts.append(("Weights kept", f"{best_text}, the lowest validation loss"))
    return facts


def _metrics_table(comparison: dict) -> tuple[list[str], list[list[tuple[str, str]]]]:
    """Header and rows (text, tone): each metric for every system, change vs the baseline."""
    systems, baseline = comparison["systems"], comparison["baseline"]
    others = [s for s in systems if s != baseline]
    header = ["metric", *systems]
    for system in others:
        header += [f"Δ {system}", f"Δ% {system}"]
    rows = []
    means = comparison.get("means", {})
    losses = comparison.get("losses") or {}
    keys = [k for k in METRIC_LABELS if k in means.get(baseline, {})]
    keys += [k for k in means.get(baseline, {}) if k not in METRIC_LABELS]
    table = [(k, METRIC_LABELS.get(k, k), means) for k in keys]
    loss_keys = {k for values in losses.values() for k in values}
    table += [(k, label, losses) for k, label in LOSS_LABELS.items() if k in loss_keys]
    for key, label, source in table:
        values = {s: source.get(s, {}).get(key) for s in systems}
        row = [(label, "")] + [(number(values[s]), "") for s in systems]
        for system in others:
            base, value = values[baseline], values[system]
            change = comparison.get("change", {}).get(system, {}).get(key)
            relative = comparison.get("relative_change", {}).get(system, {}).get(key)
            if source is losses or change is None:
                change = value - base if value is not None and base is not None else None
                relative = change / base if change is not None and base else None
            row += [(signed(change), tone(key, change)), (percent(relative), tone(key, change))]
        rows.append(row)
    return header, rows


def _examples(comparison: dict) -> tuple[list[report_html.ExampleRow], str]:
    """The examples sorted by the primary system's gain over the baseline, and the tally."""
    baseline, metric = comparison["baseline"], comparison["primary_metric"]
    primary = comparison["primary"]
    rows = []
    for index, item in enumerate(comparison.get("examples", [])):
        scores = item.get("scores", {})
        values = {s: scores.get(s, {}).get(metric) for s in comparison["systems"]}
        gain = None
        if values.get(primary) is not None and values.get(baseline) is not None:
            gain = values[primary] - values[baseline]
        row = report_html.ExampleRow(
            number=index + 1,
            source=str(item.get("source") or ""),
            prompt=item.get("prompt") or "",
            context=item.get("context"),
            reference=item.get("reference") or "",
            answers={s: item.get("answers", {}).get(s) or "" for s in comparison["systems"]},
            scores={s: number(v) for s, v in values.items()},
            gain=signed(gain) if primary != baseline else "",
            tone=tone(metric, gain),
            thumbnails=tuple(item.get("thumbnails") or ()),
        )
        rows.append((-(gain or 0.0), index, row))
    rows.sort(key=lambda entry: entry[:2])
    tones = [row.tone for _, _, row in rows]
    improved, regressed = tones.count("gain"), tones.count("loss")
    outcome = (
        f"{primary} vs {baseline} on {metric}: {improved} improved, {regressed} regressed, "
        f"{len(rows) - improved - regressed} unchanged"
    )
    if primary == baseline:
        outcome = f"{len(rows)} examples of {baseline} alone, nothing to compare with"
    return [row for _, _, row in rows], outcome


def _read_comparison(run_path: str) -> tuple[dict | None, str]:
    """comparison.json (version 2) with its defaults filled in, or None and the reason."""
    comparison = run_dir.read_json(run_path, run_dir.COMPARISON)
    if comparison is None:
        return None, f"No held-out comparison: this run has no {run_dir.COMPARISON}."
    if comparison.get("version") != 2:
        version = comparison.get("version", 1)
        return None, f"{run_dir.COMPARISON} is version {version}; this report reads version 2."
    systems = comparison.get("systems") or list(comparison.get("means", {}))
    baseline = comparison.get("baseline") or systems[0]
    comparison = {
        **comparison,
        "systems": systems,
        "baseline": baseline,
        "primary": comparison.get("primary") or systems[-1],
        "primary_metric": comparison.get("primary_metric") or "token_f1",
    }
    count = comparison.get("count", len(comparison.get("examples", [])))
    note = f"{count} held-out examples; Δ is the change against {baseline}, Δ% the relative"
    return comparison, note + f" change (— where {baseline} is 0)."


def build(run_path: str) -> report_html.Page:
    """Reads a run directory and returns everything its report shows."""
    config = run_dir.read_json(run_path, run_dir.CONFIG) or {}
    summary = run_dir.read_json(run_path, run_dir.DATA_SUMMARY) or {}
    result = run_dir.read_json(run_path, run_dir.RESULT) or {}
    train_records, validation_records = _read_metrics(run_path)
    comparison, note = _read_comparison(run_path)
    name = config.get("experiment") or os.path.basename(os.path.normpath(run_path))
    headline = []
    if len(validation_records) > 1 and validation_records[0]["step"] == 0:
        first, last = validation_records[0], validation_records[-1]
        headline.append(
            f"Validation loss {first['val_loss']:.3f} before training → {last['val_loss']:.3f} "
            f"after {last['step']} steps."
        )
        if "val_rewards/accuracies" in last:
            headline.append(
                f"Held-out DPO reward accuracy {last['val_rewards/accuracies']:.3f}, reward "
                f"margin {last['val_rewards/margins']:.3f}; chosen answer likelier than the "
                f"rejected: {first['val_likelihood_accuracy']:.3f} before → "
                f"{last['val_likelihood_accuracy']:.3f} after."
            )
    caption = f"No metrics were logged ({run_dir.METRICS} is missing or empty)."
    if train_records or validation_records:
        steps, checks = len(train_records), len(validation_records)
        caption = f"{steps} logged training step{'s' * (steps != 1)}, {checks} validation"
        caption += "s" * (checks != 1) + "."
        if validation_records and validation_records[0]["step"] == 0:
            caption += " The validation at step 0 is the base model, before any update."
    page = report_html.Page(
        title=f"{name}: run report",
        description=config.get("description", ""),
        run_path=run_path,
        headline=headline,
        facts=_facts(config, summary, result, bool(result or train_records)),
        curves_png=report_html.loss_curves_png(train_records, validation_records),
        curves_caption=caption,
        metrics_note=note,
        progress=progress.read(run_path),
    )
    if comparison is None:
        return page
    baseline, primary = comparison["baseline"], comparison["primary"]
    page.systems, page.baseline = comparison["systems"], baseline
    page.metrics_header, page.metrics_rows = _metrics_table(comparison)
    page.qualitative = comparison.get("qualitative") or []
    answered = {name for q in page.qualitative for name in q.get("answers", {})}
    # Qualitative prompts are answered without retrieved context: only those systems' columns.
    page.qualitative_systems = [name for name in page.systems if name in answered]
    page.primary_metric = metric = comparison["primary_metric"]
    page.examples, page.outcome = _examples(comparison)
    means = comparison.get("means", {})
    if primary != baseline and metric in means.get(primary, {}):
        before, after = means[baseline][metric], means[primary][metric]
        headline.append(
            f"{METRIC_LABELS.get(metric, metric)} on held-out examples: {baseline} "
            f"{number(before)} → {primary} {number(after)} ({signed(after - before)})."
        )
    return page


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


def write(run_path: str) -> tuple[str, str]:
    """Writes `loss_curves.png`, `report.html` and `report.md` into a run directory.

    Each file is written to a temporary name and renamed, so a reader never sees half a
    report. Works for a run without comparison.json and with few or no metrics records.

    Args:
      run_path: a run directory (see `gemma_tune.runs.run_dir`).

    Returns:
      The paths of report.html and report.md.
    """
    page = build(run_path)
    if page.curves_png:
        run_dir.write_atomically(os.path.join(run_path, run_dir.LOSS_CURVES), page.curves_png)
    html_path = os.path.join(run_path, run_dir.REPORT_HTML)
    md_path = os.path.join(run_path, run_dir.REPORT_MD)
    run_dir.write_atomically(html_path, report_html.render(page).encode())
    run_dir.write_atomically(md_path, markdown(page).encode())
    return html_path, md_path


def main(argv) -> None:
    """CLI: rebuilds the report of `--run` and prints where it is."""
    from absl import app, flags

    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    run_path = flags.FLAGS.run
    config, comparison = run_dir.CONFIG, run_dir.COMPARISON
    if not any(os.path.exists(os.path.join(run_path, n)) for n in (config, comparison)):
        raise app.UsageError(f"{run_path} holds neither a run ({config}) nor {comparison}")
    html_path, md_path = write(run_path)
    print(f"{run_dir.REPORT_HTML}: {html_path}\n{run_dir.REPORT_MD}: {md_path}")
