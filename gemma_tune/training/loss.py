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

import jax
import jax.numpy as jnp

from gemma_tune.training import vocab_tiled_head


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
    vocab_block: int = vocab_tiled_head.VOCAB_BLOCK,
    embedding_grad: bool = False,
):
    """`weighted_sums` computed from final hidden states, without `[positions, vocab]` logits.

    Gemma's tied LM head (`hidden @ embeddings.T`) dominates a small model's step: Gemma 3 has
    a 262,144-token vocabulary. Only positions that carry loss need logits, so this gathers at
    most `max_targets` weighted positions; their log-normalizers come from
    `vocab_tiled_head.log_normalizer`, one `[chunk_size, vocab_block]` tile of logits at a
    time, with the gradient accumulated in the same walk (two vocabulary matmuls per position
    in a training step), and their target logits from one gathered embedding row each.

    Args:
      hidden: `[B, L, H]` final (normed) hidden states.
      embeddings: `[vocab, H]` token embedding matrix (the tied head); int8 when quantized.
      embedding_scale: `[vocab]` per-token scales of an int8 `embeddings` (the float matrix is
        `embeddings / scale[:, None]`), or None for a float matrix.
      target_ids / target_weights: `[B, L]`.
      soft_cap: Gemma 2's final logit soft cap (`tanh(logits / cap) * cap`), or None.
      max_targets: how many weighted positions to keep; must be at least the number of
        positions with non-zero weight (the caller guarantees it). 0 keeps every position.
      chunk_size: positions per logits tile.
      vocab_block: vocabulary rows per logits tile.
      embedding_grad: whether the embedding matrix is trained (full fine-tuning); its
        gradient costs a second walk over the vocabulary, so it is only computed when asked.

    Returns:
      `(loss_sum, weight_sum, correct_sum)` as `weighted_sums` would give on full logits.
    """
    batch, length, _ = hidden.shape
    row_of = jnp.arange(batch * length) // length
    flat_hidden, flat_ids, flat_weights, _ = _weighted_positions(
        hidden, target_ids, target_weights, row_of, max_targets
    )
    log_probs, best = _target_log_probs(
        flat_hidden, embeddings, flat_ids, embedding_scale, soft_cap, chunk_size, vocab_block,
        embedding_grad,
    )  # fmt: skip
    return (
        -jnp.sum(log_probs * flat_weights),
        jnp.sum(flat_weights),
        jnp.sum((best == flat_ids) * flat_weights),
    )


def _target_log_probs(
    flat_hidden, embeddings, flat_ids, embedding_scale, soft_cap, chunk_size, vocab_block,
    embedding_grad,
):  # fmt: skip
    """`(log p(target) [N], argmax [N])` of each position through the tied head, the
    normalizer walked over vocabulary tiles (`vocab_tiled_head`), the target logit gathered.
    Its operations are named `lm_head` in the compiled program (`benchmarks/step_profile.py`)."""
    head = dict(embedding_scale=embedding_scale, soft_cap=soft_cap)
    with jax.named_scope("lm_head"):
        log_normalizer, best = vocab_tiled_head.log_normalizer(
            flat_hidden,
            embeddings,
            chunk_size=chunk_size,
            vocab_block=vocab_block,
            embedding_grad=embedding_grad,
            **head,
        )
        target = vocab_tiled_head.target_logits(flat_hidden, embeddings, flat_ids, **head)
    return target - log_normalizer, best


def _weighted_positions(hidden, target_ids, target_weights, row_of, max_targets):
    """`(hidden [N, H], ids [N], weights [N], row_of [N])` of the positions the head needs:
    every position, or the first `max_targets` with non-zero weight (the rest weight 0)."""
    batch, length, width = hidden.shape
    flat_hidden = hidden.reshape(batch * length, width)
    flat_ids = jnp.asarray(target_ids).reshape(-1)
    flat_weights = jnp.asarray(target_weights, jnp.float32).reshape(-1)
    if 0 < max_targets < batch * length:
        (positions,) = jnp.nonzero(flat_weights > 0, size=max_targets, fill_value=0)
        valid = jnp.arange(max_targets) < jnp.sum(flat_weights > 0)
        flat_hidden = flat_hidden[positions]
        flat_ids = flat_ids[positions]
        flat_weights = jnp.where(valid, flat_weights[positions], 0.0)
        row_of = row_of[positions]
    return flat_hidden, flat_ids, flat_weights, row_of


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
    vocab_block: int = vocab_tiled_head.VOCAB_BLOCK,
    embedding_grad: bool = False,
    segment_ids=None,
    segments_per_row: int = 0,
):
    """`row_log_probs` computed from final hidden states through the tied head, with the
    same vocabulary-tiled normalizer as `head_sums` (no `[positions, vocab]` logits).

    Args:
      hidden: `[B, L, H]` final (normed) hidden states.
      embeddings: `[vocab, H]` token embedding matrix (the tied head); int8 when quantized.
      target_ids / target_weights: `[B, L]`.
      embedding_scale: `[vocab]` per-token scales of an int8 `embeddings`, or None.
      soft_cap: the final logit soft cap (`tanh(logits / cap) * cap`), or None.
      max_targets: how many weighted positions to keep in all rows together; at least the
        number with non-zero weight. 0 keeps every position.
      chunk_size: positions per logits tile.
      vocab_block: vocabulary rows per logits tile.
      embedding_grad: whether the embedding matrix is trained (full fine-tuning).
      segment_ids: `[B, L]` example numbers (1, 2, ...; 0 on padding) of rows packing several
        answers (`packing`), summed apart; None sums each row whole.
      segments_per_row: with `segment_ids`, the most examples a row holds.

    Returns:
      `[B]` float32 sums of `w * log p(target)` per row; with `segment_ids`,
      `[B, segments_per_row]` sums per packed example (0 where a row holds fewer).
    """
    batch, length, _ = hidden.shape
    row_of = jnp.arange(batch * length) // length
    groups = batch
    if segment_ids is not None:
        segment = jnp.maximum(jnp.asarray(segment_ids).reshape(-1) - 1, 0)  # Padding: weight 0.
        row_of = row_of * segments_per_row + segment
        groups = batch * segments_per_row
    flat_hidden, flat_ids, flat_weights, row_of = _weighted_positions(
        hidden, target_ids, target_weights, row_of, max_targets
    )
    log_probs, _ = _target_log_probs(
        flat_hidden, embeddings, flat_ids, embedding_scale, soft_cap, chunk_size, vocab_block,
        embedding_grad,
    )  # fmt: skip
    sums = jax.ops.segment_sum(log_probs * flat_weights, row_of, groups)
    return sums if segment_ids is None else sums.reshape(batch, segments_per_row)
