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


def head_sums(
    hidden,
    embeddings,
    target_ids,
    target_weights,
    *,
    embedding_scale=None,
    soft_cap: float | None = None,
    max_targets: int = 0,
    chunk_size: int = 256,
):
    """`weighted_sums` computed from final hidden states, without full `[B, L, vocab]` logits.

    Gemma's tied LM head (`hidden @ embeddings.T`) dominates a small model's step: Gemma 3 has
    a 262,144-token vocabulary. Only positions that carry loss need logits, so this gathers
    at most `max_targets` weighted positions and computes their logits `chunk_size` at a time,
    rematerialized in the backward pass, so memory stays at one chunk's logits.

    Args:
      hidden: `[B, L, H]` final (normed) hidden states.
      embeddings: `[vocab, H]` token embedding matrix (the tied head); int8 when quantized.
      embedding_scale: `[vocab]` per-token scales of an int8 `embeddings` (the float matrix is
        `embeddings / scale[:, None]`), or None for a float matrix.
      target_ids / target_weights: `[B, L]`.
      soft_cap: Gemma 2's final logit soft cap (`tanh(logits / cap) * cap`), or None.
      max_targets: how many weighted positions to keep; must be at least the number of
        positions with non-zero weight (the caller guarantees it). 0 keeps every position.
      chunk_size: positions per logits chunk.

    Returns:
      `(loss_sum, weight_sum, correct_sum)` exactly as `weighted_sums` would on full logits.
    """
    batch, length, width = hidden.shape
    flat_hidden = hidden.reshape(batch * length, width)
    flat_ids = target_ids.reshape(-1)
    flat_weights = target_weights.reshape(-1).astype(jnp.float32)
    if 0 < max_targets < batch * length:
        (positions,) = jnp.nonzero(flat_weights > 0, size=max_targets, fill_value=0)
        valid = jnp.arange(max_targets) < jnp.sum(flat_weights > 0)
        flat_hidden = flat_hidden[positions]
        flat_ids = flat_ids[positions]
        flat_weights = jnp.where(valid, flat_weights[positions], 0.0)
    count = flat_hidden.shape[0]
    chunks = -(-count // chunk_size)
    pad = chunks * chunk_size - count
    flat_hidden = jnp.pad(flat_hidden, ((0, pad), (0, 0)))
    flat_ids = jnp.pad(flat_ids, (0, pad))
    flat_weights = jnp.pad(flat_weights, (0, pad))

    @jax.checkpoint
    def chunk_sums(chunk_hidden, chunk_ids, chunk_weights):
        logits = jnp.einsum(
            "th,vh->tv",
            chunk_hidden,
            embeddings.astype(chunk_hidden.dtype),
            preferred_element_type=jnp.float32,
        )
        if embedding_scale is not None:
            logits = logits / embedding_scale.astype(jnp.float32)
        if soft_cap:
            logits = jnp.tanh(logits / soft_cap) * soft_cap
        return jnp.stack(weighted_sums(logits, chunk_ids, chunk_weights))

    def body(total, chunk):
        return total + chunk_sums(*chunk), None

    totals, _ = jax.lax.scan(
        body,
        jnp.zeros(3, jnp.float32),
        (
            flat_hidden.reshape(chunks, chunk_size, width),
            flat_ids.reshape(chunks, chunk_size),
            flat_weights.reshape(chunks, chunk_size),
        ),
    )
    return totals[0], totals[1], totals[2]
