"""The training objective: sparse categorical cross-entropy averaged over weighted tokens.

Keras' default reduction divides by every position, padding included, so short examples and
long prompts would dilute the loss. Here the loss is `sum(w * nll) / sum(w)`: padding and
prompt tokens (weight 0) neither count nor dilute, and gradient accumulation stays exact
because sums, not means, are accumulated.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def weighted_sums(logits, target_ids, target_weights):
    """Per-batch sums for a masked token-level cross-entropy and accuracy.

    Args:
      logits: `[..., length, vocab]` unnormalized scores (any float dtype; computed in fp32).
      target_ids: `[..., length]` int ids of the next token.
      target_weights: `[..., length]` loss weights (0 for padding and untrained tokens).

    Returns:
      `(loss_sum, weight_sum, correct_sum)`: the weighted negative log-likelihood sum, the sum
      of weights and the weighted count of argmax hits (sparse categorical accuracy).
    """
    logits = logits.astype(jnp.float32)
    log_normalizer = jax.nn.logsumexp(logits, axis=-1)
    target_logits = jnp.take_along_axis(logits, target_ids[..., None], axis=-1)[..., 0]
    nll = log_normalizer - target_logits
    weights = target_weights.astype(jnp.float32)
    correct = (jnp.argmax(logits, axis=-1) == target_ids).astype(jnp.float32)
    return jnp.sum(nll * weights), jnp.sum(weights), jnp.sum(correct * weights)


def mean_loss(logits, target_ids, target_weights):
    """The mean cross-entropy over weighted tokens (0 when no token carries weight)."""
    loss_sum, weight_sum, _ = weighted_sums(logits, target_ids, target_weights)
    return loss_sum / jnp.maximum(weight_sum, 1e-9)
