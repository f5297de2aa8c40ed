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
- `Preference`: DPO and its variants (`dpo`) on batches of pairs (`pair_batches`: the chosen
  rows then the rejected rows; with `train.packing`, `pair_packing`: rows of whole pairs, each
  answer its own segment); each answer's log-probability comes from
  `loss.head_row_log_probs` (per row or per segment), and the reference model's were computed
  once before training (`ScoredPairs`, by pair). Metrics as TRL names them (`rewards/chosen`,
  `rewards/rejected`, `rewards/margins`, `rewards/accuracies`, `logps/chosen`,
  `logps/rejected`), `pairs`, and
  `likelihood_accuracy`: the share of pairs whose chosen answer the model finds likelier (the
  one preference score that also means something for the model before training).
"""

from __future__ import annotations

import dataclasses
import math

import jax.numpy as jnp
import numpy as np

from gemma_tune.training import batching, dpo, loss, pair_batches, pair_encoding, pair_packing

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
            rpo_alpha=settings.get("rpo_alpha", 0.0),
        )
    return Supervised()


def check_config(config) -> None:
    """Refuses settings that cannot apply to the run's objective, naming them, before
    anything is written: retrieval and training on the prompt with DPO, and `dpo.*` settings
    changed for a supervised run (they would be silently unused). Packing applies to both
    (DPO packs whole pairs: `pair_packing`).

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

    def reference_validation(self, data, batch_size, sequence_length, pad_id, limit=0) -> None:
        """None: supervised tuning has no reference scores to take its validation at step 0
        from (`Preference.reference_validation`), so the loop runs it."""
        del data, batch_size, sequence_length, pad_id, limit

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
    """Encoded pairs, packed into rows of whole pairs when `train.packing` is on, and, once the
    reference pass ran, each pair's reference answer log-probabilities, indexed by pair (None
    for reference-free losses).

    `len()` counts what batches are made of: pairs, or packed rows (`pair_packing`).
    """

    pairs: list[pair_encoding.EncodedPair]
    reference_chosen: np.ndarray | None = None
    reference_rejected: np.ndarray | None = None
    packed: list[pair_packing.PackedRow] | None = None

    def __post_init__(self):
        self.segments = None if self.packed is None else pair_packing.segments_per_row(self.packed)

    def __len__(self) -> int:
        return len(self.pairs) if self.packed is None else len(self.packed)

    def width(self, sequence_length: int) -> int:
        """The widest input row of this set: `sequence_length`, or a packed row's width."""
        if self.packed is None:
            return sequence_length
        return pair_packing.row_width(sequence_length)

    def rows(self, indices) -> list:
        """The encoded rows of the batch units at `indices` (both sides of each pair, or the
        packed rows)."""
        if self.packed is not None:
            return [self.packed[i].encoded for i in indices]
        return [row for i in indices for row in (self.pairs[i].chosen, self.pairs[i].rejected)]

    def batch(self, indices, width: int, pad_id: int, per_batch: int) -> dict:
        """The batch of the units at `indices` (pairs: `pair_batches.pair_batch`; packed rows:
        `pair_packing.packed_batch`), `width` inputs wide, with their references."""
        reference = None
        if self.reference_chosen is not None:
            reference = (self.reference_chosen, self.reference_rejected)
        if self.packed is not None:
            rows = [self.packed[i] for i in indices]
            return pair_packing.packed_batch(
                rows, width, pad_id, per_batch, self.segments, reference
            )
        if reference is not None:
            reference = (reference[0][indices], reference[1][indices])
        return pair_batches.pair_batch(
            [self.pairs[i] for i in indices], width, pad_id, per_batch, reference, indices
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

    def __init__(
        self,
        beta: float,
        loss_type: str,
        label_smoothing: float,
        simpo_gamma: float,
        rpo_alpha: float = 0.0,
    ):
        dpo.check_settings(beta, loss_type, label_smoothing, simpo_gamma, rpo_alpha)
        self.settings = dict(
            beta=beta,
            loss_type=loss_type,
            label_smoothing=label_smoothing,
            simpo_gamma=simpo_gamma,
            rpo_alpha=rpo_alpha,
        )
        self.needs_reference = loss_type not in dpo.REFERENCE_FREE

    @staticmethod
    def answer_log_probs(head_args: dict, batch: dict):
        """Each answer's log-probability: per row (`[2P]`), or per segment of packed rows
        (`[R, S]`, S the static width of the batch's `segment_tokens`)."""
        if "segment_ids" not in batch:
            return loss.head_row_log_probs(**head_args)
        return loss.head_row_log_probs(
            **head_args,
            segment_ids=batch["segment_ids"],
            segments_per_row=batch["segment_tokens"].shape[1],
        )

    def pair_log_probs(self, head_args: dict, batch: dict):
        """`(chosen, rejected)` answer log-probabilities per pair slot of a batch, either
        layout (the reference pass: `pair_batches.scatter_by_pair`)."""
        return pair_batches.pair_values(self.answer_log_probs(head_args, batch), batch)

    def sums(self, head_args: dict, batch: dict) -> dict:
        """The DPO loss sum and metric sums of one pair batch (either layout)."""
        return self._pair_sums(*self.pair_log_probs(head_args, batch), batch)

    def _pair_sums(self, chosen, rejected, batch) -> dict:
        """`dpo.pair_sums` of a batch's pairs given the policy's answer log-probabilities per
        pair slot, and `likelihood_wins`."""
        chosen_tokens, rejected_tokens = pair_batches.pair_tokens(batch)
        sums = dpo.pair_sums(
            chosen,
            rejected,
            batch.get("reference_chosen"),
            batch.get("reference_rejected"),
            chosen_tokens=chosen_tokens,
            rejected_tokens=rejected_tokens,
            pair_weights=batch["pair_weights"],
            **self.settings,
        )
        wins = (chosen > rejected).astype(jnp.float32)
        sums["likelihood_wins"] = jnp.sum(wins * batch["pair_weights"])
        return sums

    def reference_validation(
        self, data: ScoredPairs, batch_size: int, sequence_length: int, pad_id: int, limit=0
    ) -> dict | None:
        """The validation metrics of the model the reference pass scored, from its scores
        alone: what `validation_metrics` over `eval_batches` gives at step 0 of a run, whose
        policy is still the reference, without a forward pass. None for a reference-free loss
        or before the reference pass.

        The policy is the reference, so every reward is exactly 0 (a tie, which counts as not
        won) and each pair's loss is that of a zero margin (log 2 for `sigmoid`).
        """
        if not self.needs_reference or data.reference_chosen is None:
            return None
        totals = dict.fromkeys(self.sum_names, 0.0)
        for batch in self.eval_batches(data, batch_size, sequence_length, pad_id, limit):
            sums = self._pair_sums(batch["reference_chosen"], batch["reference_rejected"], batch)
            for name in totals:
                totals[name] += float(sums[name])
        return self.validation_metrics(totals)

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
        """The `[accumulation, rows, L]` batch of one step: `train.batch_size` pairs per
        micro-batch, each micro-batch's chosen and rejected rows together (`2 * batch_size`
        rows), or with packing `train.batch_size` packed rows of whole pairs; L as
        `batching.bucket_width` over the step's rows."""
        per_micro, accumulation = train.batch_size, train.grad_accum_steps
        start = step_in_epoch * per_micro * accumulation
        indices = order[start : start + per_micro * accumulation]
        width = batching.bucket_width(
            data.rows(indices), data.width(sequence_length), train.length_bucket
        )
        micro = [
            data.batch(indices[k * per_micro : (k + 1) * per_micro], width, pad_id, per_micro)
            for k in range(accumulation)
        ]
        return {name: np.stack([m[name] for m in micro]) for name in micro[0]}

    def eval_batches(
        self, data: ScoredPairs, batch_size: int, sequence_length: int, pad_id: int, limit=0
    ):
        """Validation batches of `batch_size` pairs, or packed rows (at most `limit` batches
        when positive), in order, each as wide as the set's rows may be."""
        count = len(data) if limit <= 0 else min(len(data), limit * batch_size)
        for start in range(0, count, batch_size):
            indices = np.arange(start, min(start + batch_size, count))
            yield data.batch(indices, data.width(sequence_length), pad_id, batch_size)

    def rows(self, data: ScoredPairs) -> list:
        """Every encoded row of the data (for the head's target budget)."""
        return data.rows(range(len(data)))

    def progress(self, metrics: dict) -> dict:
        """Loss, reward accuracy and margin on the progress bar."""
        return {
            "loss": f"{metrics['loss']:.4f}",
            "acc": f"{metrics['rewards/accuracies']:.2f}",
            "margin": f"{metrics['rewards/margins']:.3f}",
        }
