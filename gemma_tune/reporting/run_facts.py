"""The report's "What was trained" list, read from a run's config.json, data_summary.json and
result.json: the model, parameters, data, objective, lengths, steps, the step kept, the batch,
the learning rate and the time taken.
"""

from __future__ import annotations

from gemma_tune.reporting import table_cells
from gemma_tune.runs import run_dir


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


def facts(config: dict, summary: dict, result: dict, trained: bool) -> list[tuple[str, str]]:
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
    best_text = f"step {result.get('best_step')} (val_loss {table_cells.number(best)})"
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
