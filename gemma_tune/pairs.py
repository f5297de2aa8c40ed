"""Preference pairs from a tuned run's mistakes: `python -m gemma_tune.pairs`.

    python -m gemma_tune.pairs --run=RUN_DIR --split=train --out=pairs_train.jsonl
    python -m gemma_tune.pairs --run=RUN_DIR --split=validation --samples=4 --out=pairs_val.jsonl
    python -m gemma_tune.pairs --run=RUN_DIR --data=more_questions.jsonl --out=pairs.jsonl

The tuned model (the run's preset with its adapter) answers every prompt of the run's split
(or `--data`, any supervised file `gemma_tune.data check` reads) greedily; each answer that
misses the reference (SQuAD exact match) becomes a pair in TRL's format, the reference
preferred to the model's answer. `--samples=N` also samples the prompts answered right, up to N
rounds at `--temperature` and `--top_p`, and the first sampled miss becomes the rejected answer.
The file is what `train.objective=dpo` reads (`data.path`), typically with
`train.init_from=RUN_DIR`: DPO on the mistakes the supervised model makes (docs/preference.md).
From Python: `gemma_tune.pairs.make_pairs("runs/demo-...", out="pairs.jsonl")`.
"""

from __future__ import annotations

from absl import app, flags, logging

import gemma_tune  # noqa: F401  (selects the JAX backend)
from gemma_tune import command_line, console

FLAGS = flags.FLAGS


def define_flags() -> None:
    """Defines the command's flags. Called only when this module runs as a program, so that
    importing `make_pairs` defines none."""
    flags.DEFINE_string("run", None, "A run directory: its model, adapter, data and settings.")
    flags.DEFINE_string("data", None, "A supervised JSONL or CSV file instead of the run's data.")
    flags.DEFINE_string("format", "auto", "The --data file's format (see gemma_tune.data).")
    flags.DEFINE_enum("split", "train", ["train", "validation"], "The run's split to use.")
    flags.DEFINE_integer("limit", 0, "Use the first N examples (0: all).")
    flags.DEFINE_integer("samples", 0, "Sampling rounds for prompts answered right (0: none).")
    flags.DEFINE_float("temperature", 1.0, "The sampling temperature of those rounds.")
    flags.DEFINE_float("top_p", 0.9, "Sample among the most likely tokens up to this mass.")
    flags.DEFINE_boolean(
        "trim_rejected",
        True,
        "Cut each rejected answer after its first token that differs from the reference's.",
    )
    flags.DEFINE_integer("max_new_tokens", None, "Longest answer (default: the run's).")
    flags.DEFINE_string("out", None, "The JSONL file to write the pairs to.")
    flags.mark_flags_as_required(["run", "out"])


def make_pairs(
    run_path: str,
    *,
    out: str,
    data: str | None = None,
    data_format: str = "auto",
    split: str = "train",
    limit: int = 0,
    samples: int = 0,
    temperature: float = 1.0,
    top_p: float = 0.9,
    max_new_tokens: int | None = None,
    trim_rejected: bool = True,
) -> dict:
    """Writes the preference pairs of a run's mistakes to `out`; returns the counts
    (`prompts`, `greedy_right`, `greedy_mistakes`, `sampled_mistakes`, `pairs`, `trimmed`).
    With `trim_rejected` each rejected answer is cut after its first wrong token
    (`mistake_pairs.trim`).

    Raises:
      ValueError: a bad setting, or examples a pair cannot hold (documents, images, tools).
      example.DataError: bad rows in `data`, before anything is loaded or written.
    """
    from gemma_tune.evaluation import mistake_pairs, run_evaluation
    from gemma_tune.model import adapters
    from gemma_tune.runs import tuned_run
    from gemma_tune.training import template

    if samples < 0:
        raise ValueError(f"--samples must be 0 or more, got {samples}")
    if samples and temperature <= 0:
        raise ValueError(f"--temperature must be above 0 to sample, got {temperature}")
    if not 0 < top_p <= 1:
        raise ValueError(f"--top_p must be in (0, 1], got {top_p}")
    config = tuned_run.read_config(run_path)
    print("Reading the examples ...", flush=True)
    examples = run_evaluation.read_examples(config, limit, data, data_format, split)
    mistake_pairs.check_examples(examples)
    adapter = tuned_run.adapter_path(run_path)
    dtype, seed = config["model"]["dtype"], config.get("seed", 0)
    loaded = tuned_run.load_base(config["model"]["preset"], adapter, dtype, seed=seed)
    adapters.load(loaded.causal_lm, adapter, loaded.base_fingerprint)
    found = mistake_pairs.find_mistakes(
        loaded.causal_lm,
        template.ChatTemplate(loaded.tokenizer),
        examples,
        samples=samples,
        temperature=temperature,
        top_p=top_p,
        max_new_tokens=max_new_tokens or config["samples"]["max_new_tokens"],
        batch_size=config["samples"]["batch_size"],
        seed=seed,
        trim_rejected=trim_rejected,
    )
    mistake_pairs.write_pairs(out, found)
    sampled = sum(mistake.drawn == mistake_pairs.SAMPLED for mistake in found)
    counts = {
        "prompts": len(examples),
        "greedy_right": len(examples) - (len(found) - sampled),
        "greedy_mistakes": len(found) - sampled,
        "sampled_mistakes": sampled,
        "pairs": len(found),
        "trimmed": sum(mistake.trimmed for mistake in found),
    }
    print(
        f"{counts['prompts']} prompts: {counts['greedy_right']} answered right greedily, "
        f"{counts['greedy_mistakes']} greedy mistakes, {counts['sampled_mistakes']} sampled "
        f"mistakes; {counts['prompts'] - counts['pairs']} prompts have no pair; "
        f"{counts['trimmed']} rejected answers cut after their first wrong token",
        flush=True,
    )
    return counts


def main(argv) -> int:
    """Runs `make_pairs` with the flags; a bad input is one line on stderr and exit 1."""
    logging.set_verbosity(logging.WARNING)
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    from gemma_tune.runs import run_dir

    run_dir.read_config(FLAGS.run)  # a missing or damaged run, before any model loads
    with console.status_to_stderr():
        counts = make_pairs(
            FLAGS.run,
            out=FLAGS.out,
            data=FLAGS.data,
            data_format=FLAGS.format,
            split=FLAGS.split,
            limit=FLAGS.limit,
            samples=FLAGS.samples,
            temperature=FLAGS.temperature,
            top_p=FLAGS.top_p,
            max_new_tokens=FLAGS.max_new_tokens,
            trim_rejected=FLAGS.trim_rejected,
        )
    console.result(f"Pairs: {FLAGS.out} ({counts['pairs']} rows)")
    return 0


if __name__ == "__main__":
    define_flags()
    command_line.run(main)
