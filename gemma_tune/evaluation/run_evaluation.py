"""Base vs tuned, in numbers and side by side: the evaluation of a training run, and of a run
or a model afterwards (what `python -m gemma_tune.evaluate` runs).

`RunEvaluation` is what training does: the base model's answers before the first update, the
tuned model's after the last, then the comparison and `samples.md`. `evaluate` rebuilds a run's
base and tuned model (or loads a model and an optional adapter), answers, scores and reports
the run's validation split or any data file into a new directory. Both answer through
`gemma_tune.evaluation.answers` and score through `gemma_tune.evaluation.comparison`.
"""

from __future__ import annotations

import dataclasses
import datetime
import os
from typing import Any

from gemma_tune import console
from gemma_tune.evaluation import answers
from gemma_tune.evaluation.answers import BASE, TUNED
from gemma_tune.runs import run_dir, run_start


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

    def __init__(self, loaded, chat_template, config, eval_examples, sample_examples, retriever):
        self.loaded = loaded
        self.template = chat_template
        self.config = config
        self.eval_examples = answers.answerable(eval_examples, "evaluation")
        sample_examples = answers.answerable(sample_examples, "samples")
        self.retriever = retriever
        self.variants = answers.variants(
            self.eval_examples or sample_examples, retriever, config.retrieval.top_k
        )
        self.answers: dict[str, list[str]] = {}
        self.free_answers: dict[str, list[str]] = {}

    def answer(self, label: str, run_path: str | None = None) -> None:
        """Generates every variant's answers and the qualitative prompts' with the model's
        current weights, as system `label`. With `run_path`, base answers are saved there and
        reused when the run resumes (the weights have moved on by then)."""
        if run_path and label == BASE and self._reuse_base_answers(run_path):
            return
        samples_config = self.config.samples
        generated = answers.answer_variants(
            self.loaded.causal_lm,
            self.template,
            self.variants,
            label,
            samples_config.max_new_tokens,
            samples_config.batch_size,
            sampling=answers.sampling_settings(self.config.eval, self.config.seed),
        )
        free = answers.answer_prompts(
            self.loaded.causal_lm,
            self.template,
            list(self.config.eval.prompts),
            samples_config.max_new_tokens,
            samples_config.batch_size,
        )
        self.answers.update(generated)
        self.free_answers[label] = free
        if run_path and label == BASE:
            record = {"answers": generated, "qualitative": {label: free}}
            run_dir.write_json(run_path, run_dir.BASE_ANSWERS, record)

    def _reuse_base_answers(self, run_path: str) -> bool:
        """Takes the base answers a resumed run saved before its first update, if any."""
        record = run_dir.read_json(run_path, run_dir.BASE_ANSWERS)
        if record is None:
            return False
        self.answers.update(record["answers"])
        self.free_answers.update(record["qualitative"])
        print(f"Base answers from {os.path.join(run_path, run_dir.BASE_ANSWERS)}", flush=True)
        return True

    def finish(self, run_path: str, final: dict) -> dict:
        """Writes `samples.md`, and with held-out examples `comparison.json` (the report is
        written once `result.json` exists); prints the comparison; returns `final` with the
        base and tuned means added."""
        from gemma_tune.evaluation import comparison

        suffix = answers.main_suffix(self.variants)
        self._write_samples(run_path, suffix)
        if not self.eval_examples:
            return final
        trained_with_context = self.retriever is not None and self.config.retrieval.train
        loss_suffix = suffix if trained_with_context else ""
        result = comparison.compare(
            answers.examples_for_scoring(self.variants),
            self.answers,
            baseline=BASE,
            primary=TUNED + suffix,
            primary_metric=self.config.eval.primary_metric,
            losses={
                BASE + loss_suffix: answers.loss_record(final, "base_val_"),
                TUNED + loss_suffix: answers.loss_record(final, "val_"),
            },
            qualitative=answers.qualitative_records(
                list(self.config.eval.prompts), self.free_answers
            ),
        )
        console.result(result.table())
        run_dir.write_json(run_path, run_dir.COMPARISON, result.to_dict())
        means = result.means()
        return {**final, "base": means[BASE], "tuned": means[TUNED]}

    def _write_samples(self, run_path: str, suffix: str) -> None:
        """`samples.md`: the first `samples.count` prompts answered base vs tuned."""
        from gemma_tune.evaluation import samples

        count = self.config.samples.count
        text = samples.to_markdown(
            f"{self.config.experiment}: base vs tuned",
            self.variants[suffix][:count],
            self.answers[BASE + suffix][:count],
            self.answers[TUNED + suffix][:count],
        )
        run_dir.write_text(run_path, run_dir.SAMPLES, text)


def write(out_path: str, comparison) -> tuple[str, str]:
    """Writes `comparison.json` and the report next to it; returns the report paths."""
    from gemma_tune.reporting import report

    run_dir.write_json(out_path, run_dir.COMPARISON, comparison.to_dict())
    return report.write(out_path)


@dataclasses.dataclass
class Target:
    """What `evaluate` loads and where it writes: a config (the run's, or the base config for
    a model on its own), the preset, the adapter (None: the base alone), the seed tiny models
    are drawn from, the output directory, and the adapter the base system has (`base_adapter`:
    a run that started from another run's adapter, `train.init_from`, compares against that,
    as its training did; None: the pretrained model)."""

    config: dict
    preset: str
    adapter: str | None
    seed: int
    out: str
    base_adapter: str | None = None


def resolve_target(run_path, model_name, adapter, data, out) -> Target:
    """The `Target` for a run directory, or for a model with a data file (no run).

    Raises:
      ValueError: without a run, when the model, the data file or `out` is missing.
      FileNotFoundError: when `run_path` is not a run directory (or has no adapter).
    """
    from gemma_tune.runs import tuned_run

    if run_path:
        config = tuned_run.read_config(run_path)
        stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
        own_model = not model_name and not adapter
        return Target(
            config=config,
            preset=model_name or config["model"]["preset"],
            adapter=adapter or tuned_run.adapter_path(run_path),
            seed=config.get("seed", 0),
            out=out or os.path.join(run_path, run_dir.EVALUATIONS_DIR, stamp),
            base_adapter=tuned_run.init_adapter_path(config) if own_model else None,
        )
    if not model_name or not data:
        raise ValueError("give a run directory, or a model with a data file")
    if not out:
        raise ValueError("without a run directory, give an output directory (--out)")
    from gemma_tune import config as config_lib

    config = config_lib.base_config().to_dict()
    config["experiment"] = f"evaluate {os.path.basename(data)}"
    config["model"]["preset"] = model_name
    return Target(config=config, preset=model_name, adapter=adapter, seed=0, out=out)


def read_examples(
    config: dict, limit: int, data: str | None, data_format: str, split: str, images=False
):
    """The examples to evaluate: the `data` file, or the run's configured split; the first
    `limit` of them (0 = all). Image rows are kept with `images` (a model with a vision
    encoder), else refused.

    Raises:
      ValueError: when the run's split is empty.
      example.DataError: for bad rows, before anything is loaded or written.
    """
    import ml_collections

    from gemma_tune.data import sources

    if data:
        examples = sources.read_file(
            data, format=data_format, keep_context=True, images=images
        ).examples
    elif config.get("train", {}).get("objective") == "dpo":
        from gemma_tune.data import preference_sources

        # A preference run's prompts, answered with the preferred answer as the reference.
        pairs = preference_sources.load(ml_collections.ConfigDict(config["data"]))
        train, validation = ([pair.chosen_example for pair in side] for side in pairs[:2])
    else:
        train, validation, _ = sources.load(
            ml_collections.ConfigDict(config["data"]), images=images
        )
    if not data:
        examples = validation if split == "validation" else train
        if not examples:
            raise ValueError(f"the run's data has no {split} examples; give a data file")
    return examples[:limit] if limit > 0 else examples


@dataclasses.dataclass
class Measurements:
    """One loaded model answering and scoring the same prompt variants as several systems:
    its answers, reference losses and qualitative answers, keyed by system name."""

    loaded: Any
    chat_template: Any
    scorer: Any
    prompt_variants: dict[str, list]
    prompts: list[str]
    max_new_tokens: int
    batch_size: int
    decode_dtype: str = "float32"
    sampling: dict = dataclasses.field(default_factory=dict)
    answers: dict[str, list[str]] = dataclasses.field(default_factory=dict)
    losses: dict[str, dict] = dataclasses.field(default_factory=dict)
    free_answers: dict[str, list[str]] = dataclasses.field(default_factory=dict)

    def measure(self, label: str) -> None:
        """Answers and scores every variant, and the free prompts, as system `label`."""
        causal_lm, template = self.loaded.causal_lm, self.chat_template
        self.answers.update(
            answers.answer_variants(
                causal_lm,
                template,
                self.prompt_variants,
                label,
                self.max_new_tokens,
                self.batch_size,
                self.decode_dtype,
                self.sampling,
            )
        )
        for suffix, items in self.prompt_variants.items():
            self.losses[f"{label}{suffix}"] = self.scorer(items)
        self.free_answers[label] = answers.answer_prompts(
            causal_lm,
            template,
            self.prompts,
            self.max_new_tokens,
            self.batch_size,
            self.decode_dtype,
        )


def measure_base_and_tuned(
    target: Target, prompt_variants, max_new_tokens, decode_dtype: str = "float32"
) -> Measurements:
    """Loads the target's base model (with its `base_adapter`, if any), measures it, then (with
    an adapter) applies the adapter to the same model and measures it again as the tuned
    system; answers are decoded with `decode_dtype` weight matrices."""
    from gemma_tune import model
    from gemma_tune.evaluation import reference_loss
    from gemma_tune.model import adapters, vision
    from gemma_tune.runs import tuned_run
    from gemma_tune.training import template

    config = target.config
    dtype = config["model"]["dtype"]
    if target.adapter:
        loaded = tuned_run.load_base(target.preset, target.adapter, dtype, seed=target.seed)
    else:
        loaded = model.load(target.preset, dtype, seed=target.seed)
    chat_template = template.ChatTemplate(
        loaded.tokenizer, image_inputs=vision.image_inputs(loaded)
    )
    scorer = reference_loss.ReferenceLoss(
        loaded.causal_lm,
        chat_template,
        config["sequence_length"],
        config["train"]["eval_batch_size"],
    )
    prompts = list(config["eval"].get("prompts", []))
    batch_size = config["samples"]["batch_size"]
    measured = Measurements(
        loaded,
        chat_template,
        scorer,
        prompt_variants,
        prompts,
        max_new_tokens,
        batch_size,
        decode_dtype,
        answers.sampling_settings(config["eval"], target.seed),
    )
    if target.base_adapter:
        print(f"Base: the model {target.base_adapter} holds (train.init_from)", flush=True)
        adapters.load(loaded.causal_lm, target.base_adapter, loaded.base_fingerprint)
        scorer.reload()
    measured.measure(BASE)
    if target.adapter:
        adapters.load(loaded.causal_lm, target.adapter, loaded.base_fingerprint)
        scorer.reload()
        measured.measure(TUNED)
    return measured


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
    decode_dtype: str = "float32",
    sample_temperature: float | None = None,
    sample_top_p: float | None = None,
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
      decode_dtype: "float32" (default) or "bfloat16" weight matrices for generating the
        answers (`generate.DECODE_DTYPES`; losses are always measured as the model is).
      sample_temperature / sample_top_p: override the run's `eval.sample_temperature` and
        `eval.sample_top_p` (> 0: each model also answers once by sampling, `+sampled`).

    Raises:
      ValueError: for a missing model, data or output directory.
      example.DataError: for bad rows in `data`, before anything is loaded or written.
    """
    from gemma_tune import model
    from gemma_tune.evaluation import comparison, generate, retrieval

    generate.check_decode_dtype(decode_dtype)
    target = resolve_target(run_path, model_name, adapter, data, out)
    config = target.config
    _override_sampling(config, sample_temperature, sample_top_p)
    limit = config["eval"]["limit"] if limit is None else limit
    max_new_tokens = max_new_tokens or config["samples"]["max_new_tokens"]
    print("Reading the evaluation data ...", flush=True)
    images = model.reads_images(target.preset)
    examples = answers.answerable(
        read_examples(config, limit, data, data_format, split, images), "data"
    )
    if not examples:
        raise ValueError(
            'the evaluation data holds only documents ({"text"} rows): there is no prompt to '
            "answer; their validation loss is in the run's result.json"
        )
    retriever = retrieval.from_config(config.get("retrieval"))
    top_k = config.get("retrieval", {}).get("top_k", 0)
    prompt_variants = answers.variants(examples, retriever, top_k)
    run_start.create(target.out)
    run_dir.write_config(target.out, config)
    measured = measure_base_and_tuned(target, prompt_variants, max_new_tokens, decode_dtype)
    result = comparison.compare(
        answers.examples_for_scoring(prompt_variants),
        measured.answers,
        baseline=BASE,
        primary=(TUNED if target.adapter else BASE) + answers.main_suffix(prompt_variants),
        primary_metric=config["eval"].get("primary_metric", "token_f1"),
        losses=measured.losses,
        qualitative=answers.qualitative_records(measured.prompts, measured.free_answers),
    )
    console.result(result.table())
    html_path, _ = write(target.out, result)
    console.result(f"Report: {html_path}")
    console.result(f"Evaluation directory: {target.out}")
    return target.out


def _override_sampling(config: dict, temperature: float | None, top_p: float | None) -> None:
    """Puts the command's sampling settings into the evaluated config (and so into the
    evaluation directory's `config.json`), after checking them as a run's config is checked."""
    from gemma_tune import config_ranges

    settings = {"sample_temperature": temperature, "sample_top_p": top_p}
    for name, value in settings.items():
        if value is None:
            continue
        allowed = config_ranges.RANGES[f"eval.{name}"]
        if not allowed.holds(value):
            raise ValueError(f"--{name} must be {allowed.describe()}, got {value}")
        config["eval"][name] = value
