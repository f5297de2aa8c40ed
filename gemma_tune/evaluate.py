"""Base vs tuned, in numbers and side by side: `python -m gemma_tune.evaluate`.

    python -m gemma_tune.evaluate --run=RUN_DIR                       # the run's held-out split
    python -m gemma_tune.evaluate --run=RUN_DIR --split=train --limit=20
    python -m gemma_tune.evaluate --run=RUN_DIR --data=more_questions.jsonl
    python -m gemma_tune.evaluate --model=gemma3_270m_gguf --adapter=RUN_DIR/adapter --data=qa.csv
    python -m gemma_tune.evaluate --model=gemma3_270m_gguf --data=qa.jsonl   # a base model alone
    python -m gemma_tune.evaluate --run=RUN_DIR --sample_temperature=1.0     # + one sampled answer

Generates greedy answers, in batches, with the base model and the tuned one (the same model
with its LoRA adapter), scores them against the references (ROUGE-1/2/L precision, recall and
F1 with Google's rouge-score, SQuAD-style exact match and token F1, answer length), measures
loss and perplexity on the reference responses, samples the experiment's fixed qualitative
prompts, and writes `comparison.json`, `report.html` and `report.md` to `--out` (default:
`RUN_DIR/evaluations/<timestamp>`). With `retrieval.corpus` set in the run's experiment, each
model also answers with retrieved passages: base, base+context, tuned, tuned+context. With
`--sample_temperature` > 0 (or the run's `eval.sample_temperature`) each model also answers
every prompt once by sampling (`--sample_top_p`; the run's seed), as base+sampled and
tuned+sampled.

Training runs the same evaluation at its end (`eval.limit` > 0), from the same functions
(`gemma_tune.evaluation.run_evaluation`); this module is only the command line. From Python (a
notebook): `evaluate.evaluate("runs/demo-...", data="more.jsonl")`.
"""

from __future__ import annotations

from absl import app, flags, logging

import gemma_tune  # noqa: F401  (selects the JAX backend)
from gemma_tune import command_line, console

command_line.import_keras_hub_quietly()  # the names below import it; without TF's C++ lines

# The evaluation itself lives in gemma_tune.evaluation (training imports it from there); these
# names stay importable from here for scripts and notebooks written against the old module.
from gemma_tune.evaluation.answers import BASE, CONTEXT, TUNED  # noqa: E402, F401
from gemma_tune.evaluation.retrieval import from_config as retriever  # noqa: E402, F401
from gemma_tune.evaluation.run_evaluation import RunEvaluation, evaluate  # noqa: E402, F401

FLAGS = flags.FLAGS


def define_flags() -> None:
    """Defines the command's flags. Called only when this module runs as a program, so that
    importing it (training does) next to another entry point does not redefine their flags;
    `--help` lists them."""
    flags.DEFINE_string("run", None, "A run directory: its model, adapter, data and settings.")
    flags.DEFINE_string("model", None, "A preset, preset dir, .gguf or tiny:ARCH (no --run).")
    flags.DEFINE_string("adapter", None, "An adapter directory to compare with the base model.")
    flags.DEFINE_string("data", None, "A JSONL or CSV file to evaluate on instead of the run's.")
    flags.DEFINE_string("format", "auto", "The --data file's format (see gemma_tune.data).")
    flags.DEFINE_enum("split", "validation", ["validation", "train"], "The run's split to use.")
    flags.DEFINE_integer("limit", None, "Evaluate the first N examples (default: eval.limit).")
    flags.DEFINE_integer("max_new_tokens", None, "Longest answer (default: the run's).")
    flags.DEFINE_string("out", None, "Output directory (default RUN_DIR/evaluations/<time>).")
    flags.DEFINE_string(
        "decode_dtype", "float32", "float32, or bfloat16 weight matrices for the answers."
    )
    flags.DEFINE_float(
        "sample_temperature",
        None,
        "> 0: also one sampled answer per prompt (default: the run's eval.sample_temperature).",
    )
    flags.DEFINE_float(
        "sample_top_p", None, "Nucleus mass of those samples (default: the run's, else 0.9)."
    )


def main(argv) -> int:
    """Runs `evaluate` with the flags; returns the exit code. A bad input (a missing or damaged
    run, adapter or data file) is one line on stderr and exit 1 (`command_line`). Status and
    progress go to stderr; stdout holds the results: the comparison table, `Report: ...` and
    `Evaluation directory: ...`."""
    logging.set_verbosity(logging.WARNING)
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    from gemma_tune.evaluation import generate
    from gemma_tune.runs import integrity, run_dir

    generate.check_decode_dtype(FLAGS.decode_dtype, "--decode_dtype")
    if FLAGS.run:
        run_dir.read_config(FLAGS.run)  # a missing or damaged run, before any model loads
    if FLAGS.adapter:
        integrity.check_adapter(FLAGS.adapter)
    with console.status_to_stderr():  # the results reach stdout through console.result
        evaluate(
            FLAGS.run,
            model_name=FLAGS.model,
            adapter=FLAGS.adapter,
            data=FLAGS.data,
            data_format=FLAGS.format,
            split=FLAGS.split,
            limit=FLAGS.limit,
            max_new_tokens=FLAGS.max_new_tokens,
            out=FLAGS.out,
            decode_dtype=FLAGS.decode_dtype,
            sample_temperature=FLAGS.sample_temperature,
            sample_top_p=FLAGS.sample_top_p,
        )
    return 0


if __name__ == "__main__":
    define_flags()
    command_line.run(main)
