"""The training objective: sparse categorical cross-entropy averaged over weighted tokens.

Keras' default reduction divides by every position, padding included, so short examples and
long prompts would dilute the loss. Here the loss is `sum(w * nll) / sum(w)`: padding and
prompt tokens (weight 0) neither count nor dilute, and gradient accumulation stays exact
because sums, not means, are accumulated.

Preference objectives (`dpo`) need a different reduction of the same head: the sum of each
row's answer-token log-probabilities (`row_log_probs`, and `head_row_log_probs` from hidden
states without full logits).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np


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
    embedding_grad: bool = False,
):
    """`weighted_sums` computed from final hidden states, without full `[B, L, vocab]` logits.

    Gemma's tied LM head (`hidden @ embeddings.T`) dominates a small model's step: Gemma 3 has
    a 262,144-token vocabulary. Only positions that carry loss need logits, so this gathers
    at most `max_targets` weighted positions and computes their logits `chunk_size` at a time,
    so memory stays at one chunk's logits. Under differentiation each chunk's gradient is
    computed in the forward pass, while its logits are at hand (`_fused_head`): the head costs
    two vocabulary-sized matmuls per chunk (logits, input gradient) instead of the three of a
    rematerialized backward pass (logits, logits again, input gradient).

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
      embedding_grad: whether the embedding matrix is trained (full fine-tuning); its
        gradient costs a third matmul per chunk, so it is only computed when asked for.

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
    totals = _fused_head(
        jnp.pad(flat_hidden, ((0, pad), (0, 0))).reshape(chunks, chunk_size, width),
        embeddings,
        embedding_scale,
        jnp.pad(flat_ids, (0, pad)).reshape(chunks, chunk_size),
        jnp.pad(flat_weights, (0, pad)).reshape(chunks, chunk_size),
        soft_cap or 0.0,
        bool(embedding_grad),
    )
    return totals[0], totals[1], totals[2]


def _chunk(chunk_hidden, table, scale, chunk_ids, chunk_weights, soft_cap, with_grads):
    """One chunk's `(loss_sum, weight_sum, correct_sum)` and, `with_grads`, the gradient of its
    loss sum with respect to its logits before the soft cap and the scale (`[T, vocab]`)."""
    logits, capped = _chunk_logits(chunk_hidden, table, scale, soft_cap)
    log_normalizer = jax.nn.logsumexp(logits, axis=-1)
    target_logits = jnp.take_along_axis(logits, chunk_ids[:, None], axis=-1)[:, 0]
    sums = jnp.stack(
        [
            jnp.sum((log_normalizer - target_logits) * chunk_weights),
            jnp.sum(chunk_weights),
            jnp.sum((jnp.argmax(logits, axis=-1) == chunk_ids) * chunk_weights),
        ]
    )
    if not with_grads:
        return sums, None
    # d(sum w * (logsumexp - logit[target])) / d logits = w * (softmax - onehot(target)).
    probabilities = jnp.exp(logits - log_normalizer[:, None])
    targets = jax.nn.one_hot(chunk_ids, logits.shape[-1], dtype=jnp.float32)
    d_logits = (probabilities - targets) * chunk_weights[:, None]
    return sums, _raw_gradient(d_logits, capped, scale, soft_cap)


def _chunk_logits(chunk_hidden, table, scale, soft_cap):
    """A chunk's fp32 logits (`[T, vocab]`), and `tanh(raw / soft_cap)` when capped (else
    None), which the gradient through the cap needs."""
    raw = jnp.einsum("th,vh->tv", chunk_hidden, table, preferred_element_type=jnp.float32)
    if scale is not None:
        raw = raw / scale.astype(jnp.float32)
    capped = jnp.tanh(raw / soft_cap) if soft_cap else None
    return (capped * soft_cap if soft_cap else raw), capped


def _raw_gradient(d_logits, capped, scale, soft_cap):
    """A gradient with respect to the logits, carried back through the soft cap and the
    int8 scale to the raw `hidden @ table.T` product."""
    if soft_cap:
        d_logits = d_logits * (1.0 - capped * capped)
    if scale is not None:
        d_logits = d_logits / scale.astype(jnp.float32)
    return d_logits


@functools.partial(jax.custom_vjp, nondiff_argnums=(5, 6))
def _fused_head(hidden, embeddings, scale, ids, weights, soft_cap, embedding_grad):
    """Sums over `[chunks, T, H]` hidden states, one chunk of logits at a time (a scan)."""
    table = embeddings.astype(hidden.dtype)

    def body(total, chunk):
        sums, _ = _chunk(chunk[0], table, scale, chunk[1], chunk[2], soft_cap, False)
        return total + sums, None

    totals, _ = jax.lax.scan(body, jnp.zeros(3, jnp.float32), (hidden, ids, weights))
    return totals


def _fused_head_forward(hidden, embeddings, scale, ids, weights, soft_cap, embedding_grad):
    table = embeddings.astype(hidden.dtype)

    def body(carry, chunk):
        total, d_table = carry
        chunk_hidden, chunk_ids, chunk_weights = chunk
        sums, d_raw = _chunk(chunk_hidden, table, scale, chunk_ids, chunk_weights, soft_cap, True)
        d_raw = d_raw.astype(table.dtype)
        d_hidden = jnp.einsum("tv,vh->th", d_raw, table, preferred_element_type=jnp.float32)
        if embedding_grad:
            d_table = d_table + jnp.einsum(
                "tv,th->vh", d_raw, chunk_hidden, preferred_element_type=jnp.float32
            )
        return (total + sums, d_table), d_hidden

    d_table = jnp.zeros(table.shape, jnp.float32) if embedding_grad else None
    (totals, d_table), d_hidden = jax.lax.scan(
        body, (jnp.zeros(3, jnp.float32), d_table), (hidden, ids, weights)
    )
    residuals = (d_hidden.astype(hidden.dtype), d_table, embeddings, scale, ids, weights)
    return totals, residuals


def _fused_head_backward(soft_cap, embedding_grad, residuals, cotangent):
    d_hidden, d_table, embeddings, scale, ids, weights = residuals
    # Only the loss sum has a gradient; the weight and hit counts are piecewise constant.
    g = cotangent[0]
    if embedding_grad:
        d_embeddings = (d_table * g).astype(embeddings.dtype)
    elif jnp.issubdtype(embeddings.dtype, jnp.integer):
        d_embeddings = np.zeros(embeddings.shape, jax.dtypes.float0)
    else:
        d_embeddings = jnp.zeros_like(embeddings)
    return (
        (d_hidden * g).astype(d_hidden.dtype),
        d_embeddings,
        None if scale is None else jnp.zeros_like(scale),
        np.zeros(ids.shape, jax.dtypes.float0),
        jnp.zeros_like(weights),
    )


_fused_head.defvjp(_fused_head_forward, _fused_head_backward)


def row_log_probs(logits, target_ids, target_weights):
    """Per-row weighted sums of the targets' log-probabilities, from full logits.

    The quantity preference objectives compare: `log p(answer | prompt)` of each row is the sum
    of its answer tokens' log-probabilities. This is the plain form, for tests and small
    vocabularies; `head_row_log_probs` computes the same from hidden states without full logits.

    Args:
      logits: `[B, L, vocab]` unnormalized scores (computed in fp32).
      target_ids / target_weights: `[B, L]`; weight 1 on the answer's tokens, 0 elsewhere.

    Returns:
      `[B]` float32: `sum_i w[b, i] * log_softmax(logits[b, i])[target_ids[b, i]]`.
    """
    log_probs = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
    target_log_probs = jnp.take_along_axis(log_probs, target_ids[..., None], axis=-1)[..., 0]
    return jnp.sum(target_log_probs * target_weights.astype(jnp.float32), axis=-1)


def head_row_log_probs(
    hidden,
    embeddings,
    target_ids,
    target_weights,
    *,
    embedding_scale=None,
    soft_cap: float | None = None,
    max_targets: int = 0,
    chunk_size: int = 256,
    embedding_grad: bool = False,
    segment_ids=None,
    segments_per_row: int = 0,
):
    """`row_log_probs` computed from final hidden states through the tied head, one chunk of
    weighted positions at a time, as `head_sums` does for the supervised loss.

    The gradient is formed in the forward pass as well: each position's gradient of its
    weighted log-probability with respect to its hidden state does not depend on what the
    objective does with the row's sum, so it is computed while the chunk's logits exist, and
    the backward pass only multiplies each position's stored gradient by its cotangent (the
    cotangent of its row's sum). The input gradient costs no second vocabulary matmul in the
    backward pass; with `embedding_grad` (full fine-tuning) the embedding's gradient does need
    each cotangent inside the sum over positions, so the backward pass recomputes the logits
    for it (four vocabulary matmuls per chunk in all, where the supervised head has three).

    Args:
      hidden: `[B, L, H]` final (normed) hidden states.
      embeddings: `[vocab, H]` token embedding matrix (the tied head); int8 when quantized.
      target_ids / target_weights: `[B, L]`.
      embedding_scale: `[vocab]` per-token scales of an int8 `embeddings`, or None.
      soft_cap: the final logit soft cap (`tanh(logits / cap) * cap`), or None.
      max_targets: how many weighted positions to keep in all rows together; at least the
        number with non-zero weight. 0 keeps every position.
      chunk_size: positions per logits chunk.
      embedding_grad: whether the embedding matrix is trained (full fine-tuning).
      segment_ids: `[B, L]` example numbers (1, 2, ...; 0 on padding) of rows packing several
        answers (`packing`), summed apart; None sums each row whole.
      segments_per_row: with `segment_ids`, the most examples a row holds.

    Returns:
      `[B]` float32 sums of `w * log p(target)` per row; with `segment_ids`,
      `[B, segments_per_row]` sums per packed example (0 where a row holds fewer).
    """
    batch, length, width = hidden.shape
    flat_hidden = hidden.reshape(batch * length, width)
    flat_ids = jnp.asarray(target_ids).reshape(-1)
    flat_weights = jnp.asarray(target_weights, jnp.float32).reshape(-1)
    row_of = jnp.arange(batch * length) // length
    groups = batch
    if segment_ids is not None:
        segment = jnp.maximum(jnp.asarray(segment_ids).reshape(-1) - 1, 0)  # Padding: weight 0.
        row_of = row_of * segments_per_row + segment
        groups = batch * segments_per_row
    if 0 < max_targets < batch * length:
        (positions,) = jnp.nonzero(flat_weights > 0, size=max_targets, fill_value=0)
        valid = jnp.arange(max_targets) < jnp.sum(flat_weights > 0)
        flat_hidden = flat_hidden[positions]
        flat_ids = flat_ids[positions]
        flat_weights = jnp.where(valid, flat_weights[positions], 0.0)
        row_of = row_of[positions]
    count = flat_hidden.shape[0]
    chunks = -(-count // chunk_size)
    pad = chunks * chunk_size - count
    position_log_probs = _fused_log_probs(
        jnp.pad(flat_hidden, ((0, pad), (0, 0))).reshape(chunks, chunk_size, width),
        embeddings,
        embedding_scale,
        jnp.pad(flat_ids, (0, pad)).reshape(chunks, chunk_size),
        jnp.pad(flat_weights, (0, pad)).reshape(chunks, chunk_size),
        soft_cap or 0.0,
        bool(embedding_grad),
    )
    sums = jax.ops.segment_sum(position_log_probs.reshape(-1)[:count], row_of, groups)
    return sums if segment_ids is None else sums.reshape(batch, segments_per_row)


def _chunk_log_probs(chunk_hidden, table, scale, chunk_ids, chunk_weights, soft_cap, with_grads):
    """One chunk's `w * log p(target)` per position (`[T]`) and, `with_grads`, its gradient
    with respect to the raw logits before the soft cap and the scale (`[T, vocab]`)."""
    logits, capped = _chunk_logits(chunk_hidden, table, scale, soft_cap)
    log_normalizer = jax.nn.logsumexp(logits, axis=-1)
    target_logits = jnp.take_along_axis(logits, chunk_ids[:, None], axis=-1)[:, 0]
    weighted = (target_logits - log_normalizer) * chunk_weights
    if not with_grads:
        return weighted, None
    # d(w * (logit[target] - logsumexp)) / d logits = w * (onehot(target) - softmax).
    probabilities = jnp.exp(logits - log_normalizer[:, None])
    targets = jax.nn.one_hot(chunk_ids, logits.shape[-1], dtype=jnp.float32)
    d_logits = (targets - probabilities) * chunk_weights[:, None]
    return weighted, _raw_gradient(d_logits, capped, scale, soft_cap)


@functools.partial(jax.custom_vjp, nondiff_argnums=(5, 6))
def _fused_log_probs(hidden, embeddings, scale, ids, weights, soft_cap, embedding_grad):
    """`[chunks, T]` weighted target log-probabilities of `[chunks, T, H]` hidden states."""
    table = embeddings.astype(hidden.dtype)

    def body(carry, chunk):
        weighted, _ = _chunk_log_probs(chunk[0], table, scale, chunk[1], chunk[2], soft_cap, False)
        return carry, weighted

    _, weighted = jax.lax.scan(body, None, (hidden, ids, weights))
    return weighted


def _fused_log_probs_forward(hidden, embeddings, scale, ids, weights, soft_cap, embedding_grad):
    table = embeddings.astype(hidden.dtype)

    def body(carry, chunk):
        chunk_hidden, chunk_ids, chunk_weights = chunk
        weighted, d_raw = _chunk_log_probs(
            chunk_hidden, table, scale, chunk_ids, chunk_weights, soft_cap, True
        )
        d_hidden = jnp.einsum(
            "tv,vh->th", d_raw.astype(table.dtype), table, preferred_element_type=jnp.float32
        )
        return carry, (weighted, d_hidden.astype(hidden.dtype))

    _, (weighted, d_hidden) = jax.lax.scan(body, None, (hidden, ids, weights))
    kept_hidden = hidden if embedding_grad else None  # Only the embedding's gradient needs it.
    return weighted, (d_hidden, kept_hidden, embeddings, scale, ids, weights)


def _fused_log_probs_backward(soft_cap, embedding_grad, residuals, cotangent):
    d_hidden, hidden, embeddings, scale, ids, weights = residuals
    cotangent = cotangent.astype(jnp.float32)
    if embedding_grad:
        table = embeddings.astype(hidden.dtype)

        def body(d_table, chunk):
            chunk_hidden, chunk_ids, chunk_weights = chunk
            # The gradient is linear in the weights: the cotangent scales each position's.
            _, d_raw = _chunk_log_probs(
                chunk_hidden, table, scale, chunk_ids, chunk_weights, soft_cap, True
            )
            d_table = d_table + jnp.einsum(
                "tv,th->vh",
                d_raw.astype(table.dtype),
                chunk_hidden,
                preferred_element_type=jnp.float32,
            )
            return d_table, None

        d_table, _ = jax.lax.scan(
            body, jnp.zeros(table.shape, jnp.float32), (hidden, ids, weights * cotangent)
        )
        d_embeddings = d_table.astype(embeddings.dtype)
    elif jnp.issubdtype(embeddings.dtype, jnp.integer):
        d_embeddings = np.zeros(embeddings.shape, jax.dtypes.float0)
    else:
        d_embeddings = jnp.zeros_like(embeddings)
    return (
        (d_hidden * cotangent[..., None]).astype(d_hidden.dtype),
        d_embeddings,
        None if scale is None else jnp.zeros_like(scale),
        np.zeros(ids.shape, jax.dtypes.float0),
        jnp.zeros_like(weights),
    )


_fused_log_probs.defvjp(_fused_log_probs_forward, _fused_log_probs_backward)
