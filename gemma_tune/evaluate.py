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

Training runs the same evaluation at its end (`eval.limit` > 0), from the same functions.
"""

from __future__ import annotations

import datetime
import json
import os
import sys

from absl import app, flags, logging

import gemma_tune  # noqa: F401  (selects the JAX backend)

FLAGS = flags.FLAGS
flags.DEFINE_string("run", None, "A run directory: its model, adapter, data and settings.")
flags.DEFINE_string("model", None, "A preset, preset directory, .gguf or tiny:ARCH (no --run).")
flags.DEFINE_string("adapter", None, "An adapter directory to compare against the base model.")
flags.DEFINE_string("data", None, "A JSONL or CSV file to evaluate on instead of the run's data.")
flags.DEFINE_string("format", "auto", "The --data file's format (see `gemma_tune.data check`).")
flags.DEFINE_enum("split", "validation", ["validation", "train"], "Which split of the run's data.")
flags.DEFINE_integer("limit", None, "Evaluate the first N examples (default: eval.limit).")
flags.DEFINE_integer("max_new_tokens", None, "Longest answer (default: samples.max_new_tokens).")
flags.DEFINE_string("out", None, "Output directory (default RUN_DIR/evaluations/<timestamp>).")

BASE, TUNED, CONTEXT = "base", "tuned", "+context"


def variants(examples, retriever=None, top_k: int = 0) -> dict[str, list]:
    """The prompt variants each model answers: as given (suffix ""), and with a retriever also
    without any context ("") and with the retrieved passages ("+context")."""
    if retriever is None:
        return {"": list(examples)}
    from gemma_tune import retrieval

    without = [_with_context(item, None) for item in examples]
    return {"": without, CONTEXT: retrieval.attach_context(without, retriever, top_k)}


def _with_context(item, context):
    import dataclasses

    return dataclasses.replace(item, context=context)


def answer_variants(causal_lm, chat_template, prompt_variants, label, max_new_tokens, batch_size):
    """Greedy answers of the model as it is now to every variant; keys are system names
    (`label` + the variant's suffix, e.g. "tuned+context")."""
    from gemma_tune import samples

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
    from gemma_tune import samples
    from gemma_tune.data import example

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
            from gemma_tune import run_dir

            record = {"answers": answers, "qualitative": {label: free}}
            run_dir.write_json(run_path, self.BASE_ANSWERS_FILE, record)

    def finish(self, run_path: str, final: dict) -> dict:
        """Writes `samples.md`, and with held-out examples `comparison.json` (the report is
        written once `result.json` exists); prints the comparison; returns `final` with the
        base and tuned means added."""
        from gemma_tune import comparison, samples

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
        from gemma_tune import run_dir

        run_dir.write_json(run_path, "comparison.json", result.to_dict())
        means = result.means()
        return {**final, "base": means[BASE], "tuned": means[TUNED]}


def write(out_path: str, comparison) -> tuple[str, str]:
    """Writes `comparison.json` and the report next to it; returns the report paths."""
    from gemma_tune import report, run_dir

    run_dir.write_json(out_path, "comparison.json", comparison.to_dict())
    return report.write(out_path)


def _examples(config: dict, limit: int):
    """The examples to evaluate: --data, or the run's configured split."""
    from gemma_tune.data import sources

    if FLAGS.data:
        examples = sources.read_file(FLAGS.data, format=FLAGS.format, keep_context=True).examples
    else:
        train, validation, _ = sources.load(_config_dict(config["data"]))
        examples = validation if FLAGS.split == "validation" else train
        if not examples:
            raise ValueError(f"the run's data has no {FLAGS.split} examples; give --data=FILE")
    return examples[:limit] if limit > 0 else examples


def _config_dict(section: dict):
    import ml_collections

    return ml_collections.ConfigDict(section)


def _setup():
    """Resolves flags to (config dict, preset, adapter_dir, seed, out_path)."""
    from gemma_tune import config as config_lib
    from gemma_tune import runs

    if FLAGS.run:
        config = runs.read_config(FLAGS.run)
        adapter_dir = FLAGS.adapter or runs.adapter_path(FLAGS.run)
        preset = FLAGS.model or config["model"]["preset"]
        stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
        out = FLAGS.out or os.path.join(FLAGS.run, "evaluations", stamp)
        return config, preset, adapter_dir, config.get("seed", 0), out
    if not FLAGS.model or not FLAGS.data:
        raise app.UsageError("give --run=RUN_DIR, or --model=PRESET with --data=FILE")
    if not FLAGS.out:
        raise app.UsageError("without --run, give --out=DIR for the results")
    config = config_lib.base_config().to_dict()
    config["experiment"] = f"evaluate {os.path.basename(FLAGS.data)}"
    config["model"]["preset"] = FLAGS.model
    return config, FLAGS.model, FLAGS.adapter, 0, FLAGS.out


def evaluate(config: dict, preset: str, adapter_dir, seed: int, out_path: str) -> str:
    """Answers, scores and reports the base model (and the adapter, when given) on the
    configured examples; returns the output directory."""
    from gemma_tune import adapters, comparison, model, reference_loss, run_dir, runs, template

    limit = FLAGS.limit if FLAGS.limit is not None else config["eval"]["limit"]
    max_new_tokens = FLAGS.max_new_tokens or config["samples"]["max_new_tokens"]
    batch_size = config["samples"]["batch_size"]
    print("Reading the evaluation data ...", flush=True)
    examples = _examples(config, limit)
    index = retriever(config.get("retrieval"))
    prompt_variants = variants(examples, index, config.get("retrieval", {}).get("top_k", 0))
    run_dir.create(out_path)
    run_dir.write_json(out_path, "config.json", config)
    if adapter_dir:
        loaded = runs.load_base(preset, adapter_dir, config["model"]["dtype"], seed=seed)
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
    if adapter_dir:
        adapters.load(loaded.causal_lm, adapter_dir)
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
    html_path, _ = write(out_path, result)
    print(f"Report: {html_path}")
    print(f"Evaluation directory: {out_path}", flush=True)
    return out_path


def examples_for_scoring(prompt_variants: dict[str, list]) -> list:
    """The examples the comparison lists (with retrieved context when there is some, so the
    report shows what the +context systems saw)."""
    return prompt_variants.get(CONTEXT, prompt_variants[""])


def retriever(retrieval_config):
    """A BM25 retriever over `retrieval.corpus`, or None when the experiment has none."""
    settings = dict(retrieval_config or {})
    if not settings.get("corpus"):
        return None
    from gemma_tune import corpus, retrieval

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
        config, preset, adapter_dir, seed, out_path = _setup()
        evaluate(config, preset, adapter_dir, seed, out_path)
    except (example.DataError, FileExistsError, FileNotFoundError, ValueError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    app.run(lambda argv: sys.exit(main(argv)))
