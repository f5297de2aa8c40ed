"""Every config key's valid range, in one place, and `check`, which applies them all.

    config_ranges.check(config)   # ValueError: "lora.rank=0: must be >= 1; train.batch_size=0: ..."

`gemma_tune.config.load` and `from_run` call `check` on every config they resolve, and
`gemma_tune.train.run` again on the config it is given, so a value out of range stops a run
before anything is written, with the key, the value and the valid range named. The table of
ranges is in docs/configuration.md ("Valid ranges"); a test keeps the two equal.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable


@dataclasses.dataclass(frozen=True)
class Range:
    """A config key's valid values: `holds(value)`, and how an error message says them
    (`text`, or the names `choices()` returns)."""

    text: str
    holds: Callable[[object], bool]
    choices: Callable[[], tuple] | None = None
    choices_lead: str = "one of "

    def describe(self) -> str:
        """The valid values in words, e.g. ">= 1" or "one of hf, tfds, file, tiny"."""
        if self.choices is not None:
            return self.choices_lead + ", ".join(self.choices())
        return self.text


def _number(value) -> bool:
    """A finite int or float (not a bool, NaN or infinity: no setting means anything there)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def at_least(low) -> Range:
    """Finite numbers >= `low`."""
    return Range(f">= {low}", lambda v: _number(v) and v >= low)


def above(low) -> Range:
    """Finite numbers > `low`."""
    return Range(f"> {low}", lambda v: _number(v) and v > low)


def unit_interval() -> Range:
    """Numbers in [0, 1): fractions and probabilities that must leave something over."""
    return Range("in [0, 1)", lambda v: _number(v) and 0 <= v < 1)


def any_of(choices: Callable[[], tuple]) -> Range:
    """A list of names, each one `choices()` returns (the empty list too)."""
    return Range(
        "",
        lambda v: isinstance(v, (list, tuple)) and all(x in choices() for x in v),
        choices,
        "a list of any of ",
    )


def devices() -> Range:
    """A mesh axis: a device count, or -1 for all the devices the other axis leaves."""
    return Range("-1 (all) or >= 1", lambda v: _number(v) and (v == -1 or v >= 1))


def one_of(choices: Callable[[], tuple]) -> Range:
    """One of the names `choices()` returns (read when checked, from the module that owns
    them, so this list never drifts from what the code accepts)."""
    return Range("", lambda v: v in choices(), choices)


def _sources():
    from gemma_tune.data import sources

    return sources.SOURCES


def _dedup_modes():
    from gemma_tune.data import duplicates

    return duplicates.MODES


def _schedules():
    from gemma_tune.training import optimizer

    return optimizer.SCHEDULES


def _trackers():
    from gemma_tune.training import tracking

    return tracking.TRACKERS


def _objectives():
    from gemma_tune.training import objectives

    return objectives.NAMES


def _dpo_losses():
    from gemma_tune.training import dpo

    return dpo.LOSS_TYPES


def _methods():
    from gemma_tune.model import tuning

    return tuning.METHODS


def _lora_layouts():
    from gemma_tune.model import lora

    return lora.LAYOUTS


def _vision_targets():
    from gemma_tune.model import vision_lora

    return vision_lora.TARGETS


def _remat_modes():
    from gemma_tune.model import tuning

    return tuning.REMAT_MODES


def _quantize_modes():
    from gemma_tune.model import quantize

    return quantize.MODES


# Each numeric or enumerated key's valid values. Keys not listed (names, paths, lists, flags)
# have no range beyond their type, which the locked config enforces.
RANGES: dict[str, Range] = {
    "seed": at_least(0),
    "sequence_length": at_least(2),
    "model.dtype": one_of(lambda: ("auto", "float32", "bfloat16", "float16")),
    "model.quantize": one_of(_quantize_modes),
    "model.int4_block_size": at_least(1),
    "method": one_of(_methods),
    "lora.rank": at_least(1),
    "lora.alpha": at_least(0),
    "lora.dropout": unit_interval(),
    "lora.layout": one_of(_lora_layouts),
    "lora.vision_targets": any_of(_vision_targets),
    "data.source": one_of(_sources),
    "data.max_examples": Range(">= 0 (0: all)", at_least(0).holds),
    "data.max_field_chars": Range(">= 0 (0: no cap)", at_least(0).holds),
    "data.validation_fraction": unit_interval(),
    "data.dedup": one_of(_dedup_modes),
    "data.seed": at_least(0),
    "train.epochs": at_least(1),
    "train.batch_size": at_least(1),
    "train.grad_accum_steps": at_least(1),
    "train.length_bucket": Range(">= 0 (0: pad to sequence_length)", at_least(0).holds),
    "train.max_steps": Range(">= 0 (0: no cap)", at_least(0).holds),
    "train.learning_rate": above(0),
    "train.weight_decay": at_least(0),
    "train.schedule": one_of(_schedules),
    # true/false: what the key held before its modes (full/none), in older run configs.
    "train.remat": Range(
        "",
        lambda v: v in (True, False, "true", "false") or v in _remat_modes(),
        _remat_modes,
    ),
    "train.warmup_steps": at_least(0),
    "train.grad_clip_norm": Range(">= 0 (0: no clipping)", at_least(0).holds),
    "train.adam_beta1": unit_interval(),
    "train.adam_beta2": unit_interval(),
    "train.adam_epsilon": above(0),
    "train.log_every": at_least(1),
    "train.eval_every": Range(">= 0 (0: only at the end)", at_least(0).holds),
    "train.eval_batch_size": at_least(1),
    "train.eval_batches": Range(">= 0 (0: all)", at_least(0).holds),
    "train.checkpoint_every": Range(">= 0 (0: only at the end)", at_least(0).holds),
    "train.keep_checkpoints": at_least(1),
    "train.report_to": any_of(_trackers),
    "train.early_stopping_patience": Range(">= 0 (0: off)", at_least(0).holds),
    "train.objective": one_of(_objectives),
    "dpo.beta": above(0),
    "dpo.loss": one_of(_dpo_losses),
    "dpo.label_smoothing": Range("in [0, 0.5)", lambda v: _number(v) and 0 <= v < 0.5),
    "dpo.simpo_gamma": at_least(0),
    "dpo.rpo_alpha": at_least(0),
    "samples.count": at_least(0),
    "samples.max_new_tokens": at_least(1),
    "samples.batch_size": at_least(1),
    "eval.limit": Range(">= 0 (0: no scoring)", at_least(0).holds),
    "eval.sample_temperature": Range(">= 0 (0: greedy answers only)", at_least(0).holds),
    "eval.sample_top_p": Range("in (0, 1]", lambda v: _number(v) and 0 < v <= 1),
    "mesh.data": devices(),
    "mesh.model": devices(),
    "mesh.num_processes": Range(">= 0 (0: from the environment)", at_least(0).holds),
    "mesh.process_id": Range(">= -1 (-1: from the environment)", at_least(-1).holds),
    "retrieval.top_k": at_least(1),
    "retrieval.passage_words": at_least(1),
}


def _lookup(config, key: str):
    node = config
    for part in key.split("."):
        node = node[part]
    return node


def check(config) -> None:
    """Checks every key of `RANGES` in `config` (a ConfigDict or a plain dict).

    Raises:
      ValueError: one line naming each key out of range, its value and its valid range,
        e.g. "train.batch_size=0: must be >= 1".
    """
    problems = []
    for key, valid in RANGES.items():
        try:
            value = _lookup(config, key)
        except (KeyError, AttributeError):  # An older run's config without the key.
            continue
        if not valid.holds(value):
            finite = isinstance(value, float) and not math.isfinite(value) and valid.choices is None
            rule = f"a finite number {valid.describe()}" if finite else valid.describe()
            problems.append(f"{key}={_shown(value)}: must be {rule}")
    if problems:
        raise ValueError("; ".join(problems))


def _shown(value) -> str:
    if isinstance(value, float) and math.isnan(value):
        return "nan"
    return json.dumps(value) if isinstance(value, str) else str(value)
