"""What a training run optimizes (`train.objective`): the step's sums, the batches and the
metrics, for supervised tuning (`sft`) and Direct Preference Optimization (`dpo`).

The trainer runs the same backbone for both and hands the final hidden states to the
objective (`head_args`: the hidden states, the tied embedding and the head's settings); the
loop asks the objective for each step's batch and for the validation batches. Every objective
returns sums, never means, so gradient accumulation and several devices add them exactly; the
step divides the gradient by the sum named `count` (weighted target tokens for `sft`, pairs for
`dpo`).

- `Supervised`: the masked cross-entropy of the answer tokens (`loss.head_sums`); metrics
  `loss`, `accuracy` (argmax hits per target token), `target_tokens`, and in validation
  `perplexity`.
- `Preference`: DPO and its variants (`dpo`) on batches of pairs (`pair_batches`): the chosen
  rows then the rejected rows; each pair's answer log-probabilities come from
  `loss.head_row_log_probs`, and the reference model's were computed once before training
  (`ScoredPairs`). Metrics as TRL names them (`rewards/chosen`, `rewards/rejected`,
  `rewards/margins`, `rewards/accuracies`, `logps/chosen`, `logps/rejected`), `pairs`, and
  `likelihood_accuracy`: the share of pairs whose chosen answer the model finds likelier (the
  one preference score that also means something for the model before training).
"""

from __future__ import annotations

import dataclasses
import math

import jax.numpy as jnp
import numpy as np

from gemma_tune.training import batching, dpo, loss, pair_batches, pair_encoding

NAMES = ("sft", "dpo")


def from_config(config):
    """The objective `train.objective` names (configs older than the setting: `sft`)."""
    name = config.train.get("objective", "sft")
    if name == "dpo":
        settings = config.dpo
        return Preference(
            beta=settings.beta,
            loss_type=settings.loss,
            label_smoothing=settings.label_smoothing,
            simpo_gamma=settings.simpo_gamma,
        )
    return Supervised()


def check_config(config) -> None:
    """Refuses settings that cannot apply to the run's objective, naming them, before
    anything is written: packing, retrieval and training on the prompt with DPO, and `dpo.*`
    settings changed for a supervised run (they would be silently unused).

    Raises:
      ValueError: naming the setting and why.
    """
    from gemma_tune import config as config_lib

    if config.train.get("objective", "sft") != "dpo":
        defaults = config_lib.base_config().dpo
        changed = [k for k in defaults if "dpo" in config and config.dpo[k] != defaults[k]]
        if changed:
            raise ValueError(
                f"dpo.{changed[0]} is set but train.objective is "
                f"{config.train.get('objective', 'sft')!r}; set train.objective=dpo"
            )
        return
    if config.train.packing:
        raise ValueError(
            "train.packing does not apply to train.objective=dpo: each batch holds whole "
            "pairs (set train.packing=false; train.length_bucket trims padding instead)"
        )
    if config.retrieval.corpus:
        raise ValueError(
            "retrieval.corpus does not apply to train.objective=dpo: put any context in the "
            "pairs' prompts"
        )
    if config.template.train_on_prompt:
        raise ValueError(
            "template.train_on_prompt does not apply to train.objective=dpo: DPO compares "
            "the answers' log-probabilities alone"
        )


class Supervised:
    """Supervised tuning: the cross-entropy of the weighted (answer) tokens."""

    name = "sft"
    count = "target_tokens"
    sum_names = ("loss", "target_tokens", "correct")

    def sums(self, head_args: dict, batch: dict) -> dict:
        """The loss, weight and argmax-hit sums of one batch."""
        del batch
        loss_sum, weight_sum, correct = loss.head_sums(**head_args)
        return {"loss": loss_sum, "target_tokens": weight_sum, "correct": correct}

    def means(self, sums: dict) -> dict:
        """The step's metrics from its summed values (jax or Python numbers)."""
        tokens = jnp.maximum(sums["target_tokens"], 1.0)
        return {
            "loss": sums["loss"] / tokens,
            "accuracy": sums["correct"] / tokens,
            "target_tokens": sums["target_tokens"],
        }

    def validation_metrics(self, sums: dict) -> dict:
        """Validation loss, accuracy and perplexity from sums over the validation batches."""
        tokens = max(sums["target_tokens"], 1e-9)
        mean = sums["loss"] / tokens
        return {
            "loss": mean,
            "accuracy": sums["correct"] / tokens,
            "perplexity": math.exp(min(mean, 50.0)),
            "target_tokens": sums["target_tokens"],
        }

    def train_batch(self, data, order, step_in_epoch: int, train, sequence_length, pad_id):
        """The `[accumulation, batch, L]` batch of one step (`batching.train_batch`)."""
        return batching.train_batch(
            data,
            order,
            step_in_epoch,
            train.batch_size,
            train.grad_accum_steps,
            sequence_length,
            pad_id,
            train.length_bucket,
        )

    def eval_batches(self, data, batch_size: int, sequence_length: int, pad_id: int, limit=0):
        """`[batch_size, L]` validation batches (at most `limit` when positive)."""
        count = len(data) if limit <= 0 else min(len(data), limit * batch_size)
        for start in range(0, count, batch_size):
            yield batching.pack(
                data[start : start + batch_size], sequence_length, pad_id, batch_size
            )

    def rows(self, data) -> list:
        """Every encoded row of the data (for the head's target budget)."""
        return list(data)

    def progress(self, metrics: dict) -> dict:
        """What the progress bar shows after each step."""
        return {"loss": f"{metrics['loss']:.4f}"}


@dataclasses.dataclass
class ScoredPairs:
    """Encoded pairs and, once the reference pass ran, each pair's reference answer
    log-probabilities (None for reference-free losses)."""

    pairs: list[pair_encoding.EncodedPair]
    reference_chosen: np.ndarray | None = None
    reference_rejected: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.pairs)

    def batch(self, indices, sequence_length: int, pad_id: int, pairs_per_batch: int) -> dict:
        """The `pair_batches.pair_batch` of the pairs at `indices`, with their references."""
        reference = None
        if self.reference_chosen is not None:
            reference = (self.reference_chosen[indices], self.reference_rejected[indices])
        return pair_batches.pair_batch(
            [self.pairs[i] for i in indices], sequence_length, pad_id, pairs_per_batch, reference
        )


class Preference:
    """DPO (and IPO, rDPO, SimPO) on pairs of answers (`dpo`)."""

    name = "dpo"
    count = "pairs"
    _metric_names = (
        "rewards/chosen",
        "rewards/rejected",
        "rewards/margins",
        "rewards/accuracies",
        "logps/chosen",
        "logps/rejected",
    )
    sum_names = ("loss", "pairs", "likelihood_wins", *_metric_names)

    def __init__(self, beta: float, loss_type: str, label_smoothing: float, simpo_gamma: float):
        dpo.check_settings(beta, loss_type, label_smoothing, simpo_gamma)
        self.settings = dict(
            beta=beta,
            loss_type=loss_type,
            label_smoothing=label_smoothing,
            simpo_gamma=simpo_gamma,
        )
        self.needs_reference = loss_type not in dpo.REFERENCE_FREE

    def sums(self, head_args: dict, batch: dict) -> dict:
        """The DPO loss sum and metric sums of one pair batch."""
        row_log_probs = loss.head_row_log_probs(**head_args)
        sums = dpo.batch_sums(row_log_probs, batch, **self.settings)
        chosen, rejected = pair_batches.split_rows(row_log_probs)
        wins = (chosen > rejected).astype(jnp.float32)
        sums["likelihood_wins"] = jnp.sum(wins * batch["pair_weights"])
        return sums

    def _means(self, sums: dict, pairs) -> dict:
        means = {name: sums[name] / pairs for name in ("loss", *self._metric_names)}
        means["likelihood_accuracy"] = sums["likelihood_wins"] / pairs
        means["pairs"] = sums["pairs"]
        return means

    def means(self, sums: dict) -> dict:
        """The step's metrics: the mean loss and TRL's metrics over the step's pairs."""
        return self._means(sums, jnp.maximum(sums["pairs"], 1.0))

    def validation_metrics(self, sums: dict) -> dict:
        """The same means over all validation pairs."""
        return self._means(sums, max(sums["pairs"], 1e-9))

    def train_batch(
        self, data: ScoredPairs, order, step_in_epoch: int, train, sequence_length, pad_id
    ):
        """The `[accumulation, 2 * batch, L]` batch of one step: `train.batch_size` pairs per
        micro-batch, each micro-batch's chosen and rejected rows together; L as
        `batching.bucket_width` over both sides' rows."""
        per_micro, accumulation = train.batch_size, train.grad_accum_steps
        start = step_in_epoch * per_micro * accumulation
        indices = order[start : start + per_micro * accumulation]
        rows = [row for i in indices for row in (data.pairs[i].chosen, data.pairs[i].rejected)]
        width = batching.bucket_width(rows, sequence_length, train.length_bucket)
        micro = [
            data.batch(indices[k * per_micro : (k + 1) * per_micro], width, pad_id, per_micro)
            for k in range(accumulation)
        ]
        return {name: np.stack([m[name] for m in micro]) for name in micro[0]}

    def eval_batches(
        self, data: ScoredPairs, batch_size: int, sequence_length: int, pad_id: int, limit=0
    ):
        """Validation batches of `batch_size` pairs (at most `limit` batches when positive)."""
        count = len(data) if limit <= 0 else min(len(data), limit * batch_size)
        for start in range(0, count, batch_size):
            indices = np.arange(start, min(start + batch_size, count))
            yield data.batch(indices, sequence_length, pad_id, batch_size)

    def rows(self, data: ScoredPairs) -> list:
        """Both rows of every pair (for the head's target budget)."""
        return [row for pair in data.pairs for row in (pair.chosen, pair.rejected)]

    def progress(self, metrics: dict) -> dict:
        """Loss, reward accuracy and margin on the progress bar."""
        return {
            "loss": f"{metrics['loss']:.4f}",
            "acc": f"{metrics['rewards/accuracies']:.2f}",
            "margin": f"{metrics['rewards/margins']:.3f}",
        }
