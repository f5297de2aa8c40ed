"""The fixed prompts answered at every validation during training (`train.generate_every_eval`).

    python -m gemma_tune.train --experiment=tiny:gemma3 --set train.eval_every=2 \\
        --set train.generate_every_eval=true --set 'eval.prompts=["Say hello."]'

With `train.generate_every_eval=true` and `eval.prompts` set, each validation (the base model's
at step 0 with `train.eval_at_start`, every `train.eval_every` steps, and the final one) also
answers the fixed prompts greedily with the weights of that step, exactly as the end of the run
answers them (`answers.answer_prompts`: same prompt encoding, `samples.max_new_tokens`,
`samples.batch_size`). The answers go to `generations.jsonl` in the run directory (one
`{"step", "prompt", "answer"}` record per prompt per validation; the whole file is rewritten
atomically per validation, so it never holds half a validation's answers), to the trackers as
one table, `generations_during_training`, at that step, and to the report (per prompt, the
answer at each step).

The current weights are passed to the run's decoder (`generate.decoder_for`) as values, taken
from the trainer's arrays without writing them into the Keras model: the decoder's compiled
prefill and decode step take the weights as arguments, so a validation's generations reuse the
functions compiled for the base model's answers at the start of the run (same prompts, same
batch size, same widths) and compile nothing (measured in docs/evaluation.md).

A resumed run drops the records of the steps it redoes (`truncate`, the same rule as
metrics.jsonl), so the file ends up as an uninterrupted run's. The module imports no model
code until answers are generated, so the report reads generations.jsonl through it cheaply.
"""

from __future__ import annotations

import json
import os

from gemma_tune.runs import run_dir

TABLE = "generations_during_training"
SETTING = "train.generate_every_eval"


def check(config, has_validation: bool) -> None:
    """Refuses `train.generate_every_eval` where it cannot apply, before any work.

    Raises:
      ValueError: it is set without `eval.prompts` (nothing to answer) or without validation
        data (no validation to answer at).
    """
    if not config.train.get("generate_every_eval", False):
        return
    if not list(config.eval.prompts):
        raise ValueError(f"{SETTING} needs fixed prompts to answer: set eval.prompts")
    if not has_validation:
        raise ValueError(
            f"{SETTING} answers at each validation and there is none: set "
            "data.validation_path or data.validation_fraction"
        )


def trainer_weights(decoder, tuner) -> list:
    """The decoder's weight values with the trainer's current trainable arrays in place of
    the model's (which training does not update), gathered to one device when the trainer's
    weights are sharded.

    Args:
      decoder: the run's `generate.Decoder`.
      tuner: the run's `trainer.Trainer`.
    """
    from gemma_tune.training import multihost

    def gathered(value):
        return multihost.to_host(value) if tuner.mesh is not None else value

    current = {
        id(variable): value
        for variable, value in zip(tuner.backbone.trainable_variables, tuner.trainable, strict=True)
    }
    return [gathered(current[id(v)]) if id(v) in current else v.value for v in decoder.variables]


class ProgressGenerations:
    """Answers the fixed prompts with a trainer's current weights and records the answers.

    Args:
      causal_lm: the run's CausalLM (the one the trainer tunes).
      chat_template: the run's `template.ChatTemplate`.
      prompts: the fixed prompts (`eval.prompts`).
      max_new_tokens / batch_size: as the end of the run answers them (`samples.*`).
      run_path: the run directory (`generations.jsonl`), or None to record nothing on disk.
      trackers: the run's `tracking.Trackers`.
    """

    def __init__(
        self, causal_lm, chat_template, prompts, max_new_tokens: int, batch_size: int,
        run_path: str | None, trackers,
    ):  # fmt: skip
        from gemma_tune.evaluation import answers, generate

        self.prompts = list(prompts)
        self._template = chat_template
        self._decoder = generate.decoder_for(causal_lm)
        self._prompt_ids = [
            chat_template.encode_prompt(item) for item in answers.prompt_examples(self.prompts)
        ]
        self._max_new_tokens = max_new_tokens
        self._batch_size = batch_size
        self._run_path = run_path
        self._trackers = trackers

    def answer(self, weights) -> list[str]:
        """Greedy answers to the prompts with `weights` (the decoder's weight values)."""
        new_ids = self._decoder.generate(
            self._prompt_ids,
            self._max_new_tokens,
            self._template.stop_token_ids,
            weights=weights,
            batch_size=self._batch_size,
        )
        return [self._template.decode(ids) for ids in new_ids]

    def __call__(self, step: int, tuner) -> list[dict]:
        """Answers with `tuner`'s weights at `step`, appends the records to generations.jsonl
        and logs them to the trackers; returns the records."""
        found = self.answer(trainer_weights(self._decoder, tuner))
        records = [
            {"step": int(step), "prompt": p, "answer": a}
            for p, a in zip(self.prompts, found, strict=True)
        ]
        if self._run_path is not None:
            append(self._run_path, records)
        self._trackers.log_table(
            step, TABLE, ["prompt", "answer"], [[r["prompt"], r["answer"]] for r in records]
        )
        return records


def _lines(path: str) -> list[str]:
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [line if line.endswith("\n") else line + "\n" for line in f if line.strip()]


def append(run_path: str, records: list[dict]) -> str:
    """Adds `records` to the run's generations.jsonl, rewriting the file atomically (one
    validation's records are all there or none are); returns its path."""
    path = os.path.join(run_path, run_dir.GENERATIONS)
    new = [json.dumps(record, sort_keys=True) + "\n" for record in records]
    return run_dir.write_atomically(path, "".join(_lines(path) + new))


def read(run_path: str) -> list[dict]:
    """Every record of the run's generations.jsonl, in order (none without the file)."""
    return [json.loads(line) for line in _lines(os.path.join(run_path, run_dir.GENERATIONS))]


def truncate(run_path: str, last_step: int, keep_last_validation: bool = True) -> None:
    """Drops the records of steps a resumed run redoes: those after `last_step`, and those of
    `last_step` itself unless `keep_last_validation` (its validation is redone), as
    `metrics_log.truncate_metrics` does for metrics.jsonl."""
    path = os.path.join(run_path, run_dir.GENERATIONS)
    if not os.path.exists(path):
        return
    kept = []
    for line in _lines(path):
        step = json.loads(line)["step"]
        redone = step == last_step > 0 and not keep_last_validation
        if step <= last_step and not redone:
            kept.append(line)
    run_dir.write_atomically(path, "".join(kept))


def by_prompt(records: list[dict]) -> tuple[list[int], dict[str, dict[int, str]]]:
    """The steps answered (ascending) and, per prompt in first-seen order, its answer by step:
    what the report shows."""
    steps = sorted({record["step"] for record in records})
    answers_by_prompt: dict[str, dict[int, str]] = {}
    for record in records:
        answers_by_prompt.setdefault(record["prompt"], {})[record["step"]] = record["answer"]
    return steps, answers_by_prompt


def from_config(config, causal_lm, chat_template, run_path, trackers):
    """The run's `ProgressGenerations` when `train.generate_every_eval` asks for it (with the
    prompts and lengths of the end-of-run answers), else None."""
    if not config.train.get("generate_every_eval", False):
        return None
    return ProgressGenerations(
        causal_lm,
        chat_template,
        list(config.eval.prompts),
        config.samples.max_new_tokens,
        config.samples.batch_size,
        run_path,
        trackers,
    )
