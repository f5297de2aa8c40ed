"""The evaluated ends of a `gemma_tune.train` run: the base model's answers before any
update, and after training the tuned answers, the comparison, result.json, the report and the
results printed to stdout.
"""

from __future__ import annotations

import time

from gemma_tune import console, train_data, train_model


def answer_as_base(
    config, loaded, chat_template, data: train_data.Data, encoded: train_data.Encoded, run_path
):
    """The base model's answers, before any update (reused when resuming)."""
    from gemma_tune.evaluation import answers, run_evaluation

    evaluation = run_evaluation.RunEvaluation(
        loaded,
        chat_template,
        config,
        encoded.validation_kept[: config.eval.limit] if config.eval.limit > 0 else [],
        data.train_examples[: config.samples.count],
        data.retriever,
    )
    evaluation.answer(answers.BASE, run_path)
    return evaluation


def finish(config, prepared, evaluation, final: dict, run_path, started: float, trackers) -> None:
    """The tuned model's answers, the comparison, result.json (written last but the report)
    and the report; the fixed prompts' answers and the result go to the trackers; prints the
    results (the validation results where no comparison table showed them, the report and the
    run directory) to stdout, which `gemma_tune.train.main` keeps for results."""
    from gemma_tune.evaluation import answers
    from gemma_tune.reporting import report
    from gemma_tune.runs import run_dir

    evaluation.answer(answers.TUNED)
    final = evaluation.finish(run_path, final)
    prompts = list(config.eval.prompts)
    trackers.log_generations(
        final["steps"], answers.qualitative_records(prompts, evaluation.free_answers)
    )
    total, trainable = train_model.parameter_counts(config, prepared)
    result = {
        **final,
        "parameters_total": total,
        "parameters_trainable": trainable,
        "wall_seconds": time.perf_counter() - started,
    }
    run_dir.write_result(run_path, result)
    trackers.finish(result)
    html_path, _ = report.write(run_path)
    console.result(f"Report: {html_path}")
    if not evaluation.eval_examples:  # Otherwise the comparison table showed them.
        for name in ("val_loss", "val_accuracy", "val_perplexity"):
            if name in final:
                before = final.get(f"base_{name}")
                was = f" (base model: {before:.4f})" if before is not None else ""
                console.result(f"{name}: {final[name]:.4f}{was}")
    console.result(f"Run directory: {run_path}")
