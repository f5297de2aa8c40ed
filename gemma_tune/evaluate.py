"""Base vs tuned, in numbers and side by side: `python -m gemma_tune.evaluate`.

    python -m gemma_tune.evaluate --run=RUN_DIR                       # the run's held-out split
    python -m gemma_tune.evaluate --run=RUN_DIR --split=train --limit=20
    python -m gemma_tune.evaluate --run=RUN_DIR --data=more_questions.jsonl
    python -m gemma_tune.evaluate --model=gemma3_270m --adapter=RUN_DIR/adapter --data=qa.csv
    python -m gemma_tune.evaluate --model=gemma3_270m --data=qa.jsonl   # a base model alone

Generates greedy answers, in batches, with the base model and the tuned one (the same model
with its LoRA adapter), scores them against the references (ROUGE-1/2/L precision, recall and
F1 with Google's rouge-score, SQuAD-style exact match and token F1, answer length), measures
loss and perplexity on the reference responses, samples the experiment's fixed qualitative
prompts, and writes `comparison.json`, `report.html` and `report.md` to `--out` (default:
`RUN_DIR/evaluations/<timestamp>`). With `retrieval.corpus` set in the run's experiment, each
model also answers with retrieved passages: base, base+context, tuned, tuned+context.

Training runs the same evaluation at its end (`eval.limit` > 0), from the same functions. From
Python (a notebook): `evaluate.evaluate("runs/demo-...", data="more.jsonl")`.
"""

from __future__ import annotations

import datetime
import json
import os
import sys

from absl import app, flags, logging

import gemma_tune  # noqa: F401  (selects the JAX backend)

FLAGS = flags.FLAGS


def define_flags() -> None:
    """Defines the CLI's flags; only when run as a program, so that importing this module
    (training does) next to other entry points does not redefine their flags."""
    flags.DEFINE_string("run", None, "A run directory: its model, adapter, data and settings.")
    flags.DEFINE_string("model", None, "A preset, preset dir, .gguf or tiny:ARCH (no --run).")
    flags.DEFINE_string("adapter", None, "An adapter directory to compare with the base model.")
    flags.DEFINE_string("data", None, "A JSONL or CSV file to evaluate on instead of the run's.")
    flags.DEFINE_string("format", "auto", "The --data file's format (see gemma_tune.data).")
    flags.DEFINE_enum("split", "validation", ["validation", "train"], "The run's split to use.")
    flags.DEFINE_integer("limit", None, "Evaluate the first N examples (default: eval.limit).")
    flags.DEFINE_integer("max_new_tokens", None, "Longest answer (default: the run's).")
    flags.DEFINE_string("out", None, "Output directory (default RUN_DIR/evaluations/<time>).")


BASE, TUNED, CONTEXT = "base", "tuned", "+context"


def variants(examples, retriever=None, top_k: int = 0) -> dict[str, list]:
    """The prompt variants each model answers: as given (suffix ""), and with a retriever also
    without any context ("") and with the retrieved passages ("+context")."""
    if retriever is None:
        return {"": list(examples)}
    from gemma_tune.evaluation import retrieval

    without = [_with_context(item, None) for item in examples]
    return {"": without, CONTEXT: retrieval.attach_context(without, retriever, top_k)}


def _with_context(item, context):
    import dataclasses

    return dataclasses.replace(item, context=context)


def answer_variants(causal_lm, chat_template, prompt_variants, label, max_new_tokens, batch_size):
    """Greedy answers of the model as it is now to every variant; keys are system names
    (`label` + the variant's suffix, e.g. "tuned+context")."""
    from gemma_tune.evaluation import samples

    answers = {}
    for suffix, examples in prompt_variants.items():
        name = f"{label}{suffix}"
        print(f"Generating {len(examples)} {name} answers ...", flush=True)
        answers[name] = samples.generate_texts(
            causal_lm, chat_template, examples, max_new_tokens, batch_size=batch_size
        )
    return answers


def answer_prompts(causal_lm, chat_template, prompts, max_new_tokens, batch_size) -> list[str]:
    """Greedy answers to free-form prompts (an experiment's fixed qualitative prompts)."""
    from gemma_tune.data import example
    from gemma_tune.evaluation import samples

    items = [
        example.Example(turns=(example.Turn(example.USER, p), example.Turn(example.MODEL, "-")))
        for p in prompts
    ]
    return samples.generate_texts(
        causal_lm, chat_template, items, max_new_tokens, batch_size=batch_size
    )


def qualitative_records(prompts, answers_by_system: dict[str, list[str]]) -> list[dict]:
    """`comparison.json`'s "qualitative" list: each prompt with every system's answer."""
    return [
        {
            "prompt": prompt,
            "answers": {name: answers[i] for name, answers in answers_by_system.items()},
        }
        for i, prompt in enumerate(prompts)
    ]


def loss_record(result: dict, prefix: str = "") -> dict:
    """Picks loss, perplexity and accuracy out of a validation result (keys may be prefixed)."""
    return {
        name: result[f"{prefix}{name}"]
        for name in ("loss", "perplexity", "accuracy", "target_tokens")
        if f"{prefix}{name}" in result
    }


class RunEvaluation:
    """The evaluation a training run does: base answers before the first update, tuned answers
    after the last, then `comparison.json` and `samples.md`.

    Args:
      loaded: the model being tuned (LoRA enabled; its answers change as it trains).
      chat_template: the run's template.
      config: the run's resolved config.
      eval_examples: held-out examples to score (empty: only `samples.md` is written, from
        `sample_examples`).
      sample_examples: examples shown when there is nothing held out.
      retriever: a retriever for the four-way comparison, or None.
    """

    BASE_ANSWERS_FILE = "base_answers.json"

    def __init__(self, loaded, chat_template, config, eval_examples, sample_examples, retriever):
        self.loaded = loaded
        self.template = chat_template
        self.config = config
        self.eval_examples = eval_examples
        self.retriever = retriever
        self.variants = variants(
            eval_examples or sample_examples, retriever, config.retrieval.top_k
        )
        self.answers: dict[str, list[str]] = {}
        self.free_answers: dict[str, list[str]] = {}

    def answer(self, label: str, run_path: str | None = None) -> None:
        """Generates every variant's answers and the qualitative prompts' with the model's
        current weights, as system `label`. With `run_path`, base answers are saved there and
        reused when the run resumes."""
        saved = os.path.join(run_path, self.BASE_ANSWERS_FILE) if run_path else None
        if saved and label == BASE and os.path.exists(saved):
            with open(saved) as f:
                record = json.load(f)
            self.answers.update(record["answers"])
            self.free_answers.update(record["qualitative"])
            print(f"Base answers from {saved}", flush=True)
            return
        samples_config = self.config.samples
        answers = answer_variants(
            self.loaded.causal_lm,
            self.template,
            self.variants,
            label,
            samples_config.max_new_tokens,
            samples_config.batch_size,
        )
        free = answer_prompts(
            self.loaded.causal_lm,
            self.template,
            list(self.config.eval.prompts),
            samples_config.max_new_tokens,
            samples_config.batch_size,
        )
        self.answers.update(answers)
        self.free_answers[label] = free
        if saved and label == BASE:
            from gemma_tune.runs.tuned_run import run_dir

            record = {"answers": answers, "qualitative": {label: free}}
            run_dir.write_json(run_path, self.BASE_ANSWERS_FILE, record)

    def finish(self, run_path: str, final: dict) -> dict:
        """Writes `samples.md`, and with held-out examples `comparison.json` (the report is
        written once `result.json` exists); prints the comparison; returns `final` with the
        base and tuned means added."""
        from gemma_tune.evaluation import comparison, samples

        suffix = CONTEXT if CONTEXT in self.variants else ""
        count = self.config.samples.count
        with open(os.path.join(run_path, "samples.md"), "w") as f:
            f.write(
                samples.to_markdown(
                    f"{self.config.experiment}: base vs tuned",
                    self.variants[suffix][:count],
                    self.answers[BASE + suffix][:count],
                    self.answers[TUNED + suffix][:count],
                )
            )
        if not self.eval_examples:
            return final
        trained_with_context = self.retriever is not None and self.config.retrieval.train
        loss_suffix = suffix if trained_with_context else ""
        result = comparison.compare(
            examples_for_scoring(self.variants),
            self.answers,
            baseline=BASE,
            primary_metric=self.config.eval.primary_metric,
            losses={
                BASE + loss_suffix: loss_record(final, "base_val_"),
                TUNED + loss_suffix: loss_record(final, "val_"),
            },
            qualitative=qualitative_records(list(self.config.eval.prompts), self.free_answers),
        )
        print(result.table(), flush=True)
        from gemma_tune.runs.tuned_run import run_dir

        run_dir.write_json(run_path, "comparison.json", result.to_dict())
        means = result.means()
        return {**final, "base": means[BASE], "tuned": means[TUNED]}


def write(out_path: str, comparison) -> tuple[str, str]:
    """Writes `comparison.json` and the report next to it; returns the report paths."""
    from gemma_tune.reporting import report
    from gemma_tune.runs.tuned_run import run_dir

    run_dir.write_json(out_path, "comparison.json", comparison.to_dict())
    return report.write(out_path)


def _examples(config: dict, limit: int, data: str | None, data_format: str, split: str):
    """The examples to evaluate: the `data` file, or the run's configured split."""
    from gemma_tune.data import sources

    if data:
        examples = sources.read_file(data, format=data_format, keep_context=True).examples
    else:
        train, validation, _ = sources.load(_config_dict(config["data"]))
        examples = validation if split == "validation" else train
        if not examples:
            raise ValueError(f"the run's data has no {split} examples; give a data file")
    return examples[:limit] if limit > 0 else examples


def _config_dict(section: dict):
    import ml_collections

    return ml_collections.ConfigDict(section)


def evaluate(
    run_path: str | None = None,
    *,
    model_name: str | None = None,
    adapter: str | None = None,
    data: str | None = None,
    data_format: str = "auto",
    split: str = "validation",
    limit: int | None = None,
    max_new_tokens: int | None = None,
    out: str | None = None,
) -> str:
    """Answers, scores and reports the base model (and the tuned one, when there is an
    adapter) on a run's data or a file; returns the output directory.

    Args:
      run_path: a run directory (its model, adapter, seed, data and settings), or None with
        `model_name` and `data`.
      model_name: a preset to load instead of the run's (required without `run_path`).
      adapter: an adapter directory (default: the run's).
      data / data_format: a JSONL or CSV file to evaluate on instead of the run's data.
      split: without `data`, the run's "validation" or "train" examples.
      limit: the first N examples (default: the run's `eval.limit`; 0 = all).
      max_new_tokens: the longest answer (default: the run's `samples.max_new_tokens`).
      out: the output directory (default `RUN_DIR/evaluations/<timestamp>`; required without
        `run_path`).

    Raises:
      ValueError: for a missing model, data or output directory.
      example.DataError: for bad rows in `data`, before anything is loaded or written.
    """
    from gemma_tune import config as config_lib
    from gemma_tune import model
    from gemma_tune.evaluation import comparison, reference_loss
    from gemma_tune.model import adapters
    from gemma_tune.runs.tuned_run import run_dir, tuned_run
    from gemma_tune.training import template

    if run_path:
        config = tuned_run.read_config(run_path)
        adapter = adapter or tuned_run.adapter_path(run_path)
        preset = model_name or config["model"]["preset"]
        seed = config.get("seed", 0)
        stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
        out = out or os.path.join(run_path, "evaluations", stamp)
    else:
        if not model_name or not data:
            raise ValueError("give a run directory, or a model with a data file")
        if not out:
            raise ValueError("without a run directory, give an output directory (--out)")
        config = config_lib.base_config().to_dict()
        config["experiment"] = f"evaluate {os.path.basename(data)}"
        config["model"]["preset"] = preset = model_name
        seed = 0
    limit = config["eval"]["limit"] if limit is None else limit
    max_new_tokens = max_new_tokens or config["samples"]["max_new_tokens"]
    batch_size = config["samples"]["batch_size"]
    print("Reading the evaluation data ...", flush=True)
    examples = _examples(config, limit, data, data_format, split)
    index = retriever(config.get("retrieval"))
    prompt_variants = variants(examples, index, config.get("retrieval", {}).get("top_k", 0))
    run_dir.create(out)
    run_dir.write_json(out, "config.json", config)
    if adapter:
        loaded = tuned_run.load_base(preset, adapter, config["model"]["dtype"], seed=seed)
    else:
        loaded = model.load(preset, config["model"]["dtype"], seed=seed)
    chat_template = template.ChatTemplate(loaded.tokenizer)
    prompts = list(config["eval"].get("prompts", []))
    scorer = reference_loss.ReferenceLoss(
        loaded.causal_lm,
        chat_template,
        config["sequence_length"],
        config["train"]["eval_batch_size"],
    )

    def measure(label):
        answers = answer_variants(
            loaded.causal_lm, chat_template, prompt_variants, label, max_new_tokens, batch_size
        )
        losses = {f"{label}{suffix}": scorer(items) for suffix, items in prompt_variants.items()}
        free = answer_prompts(loaded.causal_lm, chat_template, prompts, max_new_tokens, batch_size)
        return answers, losses, {label: free}

    answers, losses, free_answers = measure(BASE)
    if adapter:
        adapters.load(loaded.causal_lm, adapter, loaded.base_fingerprint)
        scorer.reload()
        more = measure(TUNED)
        answers, losses, free_answers = (
            {**answers, **more[0]},
            {**losses, **more[1]},
            {**free_answers, **more[2]},
        )
    result = comparison.compare(
        examples_for_scoring(prompt_variants),
        answers,
        baseline=BASE,
        primary_metric=config["eval"].get("primary_metric", "token_f1"),
        losses=losses,
        qualitative=qualitative_records(prompts, free_answers),
    )
    print(result.table(), flush=True)
    html_path, _ = write(out, result)
    print(f"Report: {html_path}")
    print(f"Evaluation directory: {out}", flush=True)
    return out


def examples_for_scoring(prompt_variants: dict[str, list]) -> list:
    """The examples the comparison lists (with retrieved context when there is some, so the
    report shows what the +context systems saw)."""
    return prompt_variants.get(CONTEXT, prompt_variants[""])


def retriever(retrieval_config):
    """A BM25 retriever over `retrieval.corpus`, or None when the experiment has none."""
    settings = dict(retrieval_config or {})
    if not settings.get("corpus"):
        return None
    from gemma_tune.evaluation import corpus, retrieval

    print(f"Indexing {settings['corpus']} for retrieval ...", flush=True)
    passages = corpus.load_corpus(settings["corpus"], passage_words=settings["passage_words"])
    print(f"{len(passages)} passages indexed", flush=True)
    return retrieval.Retriever(passages)


def main(argv) -> int:
    logging.set_verbosity(logging.WARNING)
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    from gemma_tune.data import example

    try:
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
        )
    except (example.DataError, FileExistsError, FileNotFoundError, ValueError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    define_flags()
    app.run(lambda argv: sys.exit(main(argv)))
