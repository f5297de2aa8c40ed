"""Preference pairs scored by a model: each answer's log-probability, and preference accuracy.

`PairScorer` gives every encoded pair's `log p(chosen | prompt)` and `log p(rejected | prompt)`
under a CausalLM's current weights, through the same fused head training uses
(`loss.head_row_log_probs`), in one compiled forward per batch of pairs. It serves two ends:
the DPO reference pass (the model before training, `dpo`'s reference design) and held-out
evaluation, where `preference_accuracy` says how often the model prefers the chosen answer:
by likelihood alone, and, given a reference's scores (the base model's), by DPO's implicit
reward, the share of pairs whose chosen answer gained more log-probability than the rejected one.
"""

from __future__ import annotations

import jax
import numpy as np

from gemma_tune.model import families
from gemma_tune.training import loss, pair_batches, pair_encoding


class PairScorer:
    """Scores encoded preference pairs with a CausalLM's current weights (no dropout).

    Args:
      causal_lm: the KerasHub CausalLM (its current variables are used; call `reload` after
        changing them, e.g. after loading an adapter).
      pad_id: the tokenizer's padding id (`ChatTemplate.pad_id`).
      sequence_length: the rows' length, as the pairs were encoded with.
      pairs_per_batch: pairs per forward pass (each is two rows).
      chunk_size: positions per LM-head chunk.
    """

    def __init__(
        self,
        causal_lm,
        pad_id: int,
        sequence_length: int,
        pairs_per_batch: int = 4,
        chunk_size: int = 256,
    ):
        self._backbone = causal_lm.backbone
        self._family = families.of_backbone(self._backbone)
        self._pad_id = pad_id
        self._length = sequence_length
        self._pairs_per_batch = pairs_per_batch
        self._chunk_size = chunk_size
        self._forward = jax.jit(self._row_log_probs)
        self.reload()

    def reload(self) -> None:
        """Picks up weights changed in the Keras model since the last call."""
        self._trainable = [v.value for v in self._backbone.trainable_variables]
        self._frozen = [v.value for v in self._backbone.non_trainable_variables]

    def _variable(self, variable, trainable, frozen):
        """`variable`'s value among the weights passed in (trainable or frozen)."""
        for values, variables in (
            (trainable, self._backbone.trainable_variables),
            (frozen, self._backbone.non_trainable_variables),
        ):
            for value, candidate in zip(values, variables, strict=True):
                if candidate is variable:
                    return value
        raise RuntimeError(f"{variable.path} is not a variable of the backbone")

    def _row_log_probs(self, trainable, frozen, batch):
        inputs = self._family.backbone_inputs(batch["token_ids"], batch["padding_mask"])
        hidden, _ = self._backbone.stateless_call(trainable, frozen, inputs, training=False)
        embedding = self._backbone.token_embedding
        scale = getattr(embedding, "embeddings_scale", None)  # An int8 head (QLoRA).
        return loss.head_row_log_probs(
            hidden,
            self._variable(embedding.embeddings, trainable, frozen),
            batch["target_ids"],
            batch["target_weights"],
            embedding_scale=None if scale is None else self._variable(scale, trainable, frozen),
            soft_cap=embedding.logit_soft_cap,
            chunk_size=self._chunk_size,
        )

    def __call__(self, pairs: list[pair_encoding.EncodedPair]) -> tuple[np.ndarray, np.ndarray]:
        """`(chosen, rejected)`: float32 `[len(pairs)]` answer log-probabilities, in order."""
        return pair_batches.reference_log_probs(
            pairs,
            lambda batch: self._forward(self._trainable, self._frozen, batch),
            sequence_length=self._length,
            pad_id=self._pad_id,
            pairs_per_batch=self._pairs_per_batch,
        )


def preference_accuracy(
    chosen: np.ndarray,
    rejected: np.ndarray,
    reference: tuple[np.ndarray, np.ndarray] | None = None,
) -> dict[str, float]:
    """How often a model prefers the chosen answers of held-out pairs.

    Args:
      chosen / rejected: the model's answer log-probabilities (`PairScorer`).
      reference: the reference model's `(chosen, rejected)` on the same pairs, or None.

    Returns:
      `likelihood_accuracy`: the share of pairs whose chosen answer is the likelier (summed
      log-probabilities, so a shorter answer is favoured); with `reference` also
      `reward_accuracy` (DPO's `rewards/accuracies`: the chosen answer's log-probability rose
      more, or fell less, than the rejected one's) and `log_ratio_margin`, the mean of that
      difference (DPO's `rewards/margins` divided by beta).
    """
    chosen, rejected = np.asarray(chosen, np.float64), np.asarray(rejected, np.float64)
    if not len(chosen):
        return {}
    scores = {"likelihood_accuracy": float(np.mean(chosen > rejected))}
    if reference is not None:
        margin = (chosen - reference[0]) - (rejected - reference[1])
        scores["reward_accuracy"] = float(np.mean(margin > 0))
        scores["log_ratio_margin"] = float(np.mean(margin))
    return scores
