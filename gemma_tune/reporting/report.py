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

This module gathers what a run left into the report's page (`build`) and writes it; the page's
"What was trained" list is `reporting.run_facts`, its table cells `reporting.table_cells`,
the HTML `reporting.report_html` and the Markdown `reporting.report_markdown`.
"""

from __future__ import annotations

import os

from gemma_tune.reporting import progress, report_html, report_markdown, run_facts, table_cells
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


def _read_metrics(run_path: str) -> tuple[list[dict], list[dict]]:
    """Training and validation records from metrics.jsonl (a torn last line is skipped)."""
    records = run_dir.read_metrics(run_path)
    train_records = [record for record in records if "loss" in record]
    validation_records = [record for record in records if "val_loss" in record]
    return train_records, validation_records


def _metrics_table(comparison: dict) -> tuple[list[str], list[list[tuple[str, str]]]]:
    """Header and rows (text, tone): each metric for every system, change vs the baseline (or
    the system `change_against` names, e.g. base+sampled for tuned+sampled)."""
    systems, baseline = comparison["systems"], comparison["baseline"]
    others = [s for s in systems if s != baseline]
    against = {s: comparison.get("change_against", {}).get(s, baseline) for s in others}
    header = ["metric", *systems]
    for system in others:
        versus = "" if against[system] == baseline else f" vs {against[system]}"
        header += [f"Δ {system}{versus}", f"Δ% {system}{versus}"]
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
        row = [(label, "")] + [(table_cells.number(values[s]), "") for s in systems]
        for system in others:
            base, value = values[against[system]], values[system]
            change = comparison.get("change", {}).get(system, {}).get(key)
            relative = comparison.get("relative_change", {}).get(system, {}).get(key)
            if source is losses or change is None:
                change = value - base if value is not None and base is not None else None
                relative = change / base if change is not None and base else None
            row += [
                (table_cells.signed(change), table_cells.tone(key, change)),
                (table_cells.percent(relative), table_cells.tone(key, change)),
            ]
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
            scores={s: table_cells.number(v) for s, v in values.items()},
            gain=table_cells.signed(gain) if primary != baseline else "",
            tone=table_cells.tone(metric, gain),
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
    note = f"{count} held-out examples; Δ is the change against {baseline}"
    if any(v != baseline for v in comparison.get("change_against", {}).values()):
        note += " (or the system a column names after vs)"
    return comparison, note + f", Δ% the relative change (— where {baseline} is 0)."


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
        facts=run_facts.facts(config, summary, result, bool(result or train_records)),
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
            f"{table_cells.number(before)} → {primary} {table_cells.number(after)} "
            f"({table_cells.signed(after - before)})."
        )
    return page


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
    run_dir.write_atomically(md_path, report_markdown.markdown(page).encode())
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
