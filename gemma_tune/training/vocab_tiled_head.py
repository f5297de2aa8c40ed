"""The tied LM head's log-normalizer, one `[positions, vocabulary block]` tile at a time.

Gemma 3's vocabulary has 262,144 tokens: a chunk of 256 positions has 256 MiB of float32
logits, and a plain softmax cross-entropy keeps several such arrays (logits, probabilities,
their gradient). Here the logits of a chunk are never whole: the vocabulary is walked in
blocks with an online log-sum-exp (a running max and a rescaled running sum of exponentials,
as in Wijmans et al. 2024, "Cut Your Losses in Large-Vocabulary Language Models"), so only one
`[chunk, block]` tile of logits exists at a time; the largest temporary is the tile, not the
vocabulary.

The gradient needs no second pass either. The derivative of `logsumexp(logits)` with respect
to the hidden state is the softmax-weighted mean of the (dequantized, soft-cap-scaled)
embedding rows, `sum_v p_v * dlogit_v/draw_v * table_v`; it is accumulated in the same walk
with the same online rescaling (as flash attention accumulates its values), and kept as a
`[positions, width]` residual. So a training step costs two vocabulary matmuls per position
(logits, expectation), as the previous fused head did, without its `[positions, vocab]`
buffers. The embedding's own gradient (full fine-tuning) needs each position's final
normalizer inside the sum over positions, so it is formed in the backward pass by a second
walk that recomputes each tile's logits (two more matmuls, only when the embedding trains).

The target logit is not part of this walk: it is one gathered embedding row per position
(`target_logits`), plain JAX whose gradient JAX forms itself (a scatter into the embedding's
rows when it trains). The losses in `loss` are built from the two.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

# Vocabulary rows per tile. On a 2-core AVX2 CPU the gradient of a Gemma 3 270M head (256
# positions, width 640) was fastest with 4,096 of the 1,024 to 16,384 tried (on a loaded
# machine: a constant, not a setting), and a tile of 256 x 4,096 float32 logits is 4 MiB
# (benchmarks/RESULTS.md, "Vocabulary-tiled LM head").
VOCAB_BLOCK = 4096


def log_normalizer(
    hidden,
    embeddings,
    *,
    embedding_scale=None,
    soft_cap: float | None = None,
    chunk_size: int = 256,
    vocab_block: int = VOCAB_BLOCK,
    embedding_grad: bool = False,
):
    """Each position's `logsumexp` of its logits and the index of its largest logit.

    Args:
      hidden: `[N, H]` final (normed) hidden states of the positions that need the head.
      embeddings: `[vocab, H]` tied embedding matrix; int8 when quantized.
      embedding_scale: `[vocab]` per-token scales of an int8 `embeddings` (the float matrix is
        `embeddings / scale[:, None]`), or None.
      soft_cap: the final logit soft cap (`tanh(logits / cap) * cap`, Gemma 2), or None.
      chunk_size: positions per tile.
      vocab_block: vocabulary rows per tile (any vocabulary size; the last block may be
        shorter).
      embedding_grad: whether the embedding trains; its gradient costs a second walk over the
        vocabulary in the backward pass, so it is only formed when asked for.

    Returns:
      `(log_normalizer, best)`: `[N]` float32 `logsumexp` of each position's logits, and `[N]`
      int32 index of its largest logit (the first one on ties, as `jnp.argmax`).
    """
    count, width = hidden.shape
    chunk = max(1, min(chunk_size, count))
    chunks = -(-count // chunk)
    pad = chunks * chunk - count
    tiles = jnp.pad(hidden, ((0, pad), (0, 0))).reshape(chunks, chunk, width)
    block = max(1, min(vocab_block, embeddings.shape[0]))
    lse, best = _tiled(
        soft_cap or 0.0, block, bool(embedding_grad), tiles, embeddings, embedding_scale
    )
    return lse.reshape(-1)[:count], best.reshape(-1)[:count]


def target_logits(hidden, embeddings, target_ids, *, embedding_scale=None, soft_cap=None):
    """`[N]` float32 logits of each position's target token: its embedding row, gathered.

    Args:
      hidden: `[N, H]` hidden states; embeddings / embedding_scale / soft_cap: as in
        `log_normalizer`.
      target_ids: `[N]` int token ids.
    """
    rows = jnp.asarray(embeddings)[target_ids].astype(hidden.dtype)
    raw = jnp.einsum("th,th->t", hidden, rows, preferred_element_type=jnp.float32)
    if embedding_scale is not None:
        raw = raw / jnp.asarray(embedding_scale)[target_ids].astype(jnp.float32)
    return jnp.tanh(raw / soft_cap) * soft_cap if soft_cap else raw


def _tile(chunk_hidden, embeddings, scale, start, size, soft_cap):
    """One tile: the `[T, size]` fp32 logits of vocabulary rows `start:start + size`, the
    derivative of each logit with respect to `chunk_hidden @ table.T` (soft cap and int8 scale;
    None when both are absent) and the block of the table in the hidden states' dtype."""
    table = jax.lax.dynamic_slice_in_dim(embeddings, start, size).astype(chunk_hidden.dtype)
    raw = jnp.einsum("th,vh->tv", chunk_hidden, table, preferred_element_type=jnp.float32)
    slope = None
    if scale is not None:
        inverse_scale = 1.0 / jax.lax.dynamic_slice_in_dim(scale, start, size).astype(jnp.float32)
        raw = raw * inverse_scale
        slope = inverse_scale  # Broadcasts over the chunk's positions.
    if not soft_cap:
        return raw, slope, table
    capped = jnp.tanh(raw / soft_cap)
    cap_slope = 1.0 - capped * capped
    return capped * soft_cap, (cap_slope if slope is None else cap_slope * slope), table


def _blocks(vocabulary: int, block: int):
    """`(full_blocks, tail)`: how many whole blocks, and the rows left over (0 if none)."""
    return vocabulary // block, vocabulary % block


def first_index_of(logits, maxima):
    """`jnp.argmax(logits, axis=-1)` (the first index on ties) given each row's maximum: the
    smallest column holding it. XLA:CPU runs `argmax` as a reduction over (value, index) pairs
    that it does not vectorize, which took 12% of a Gemma 3 270M training step; this is a
    comparison and a plain minimum, 5-7x faster (`benchmarks/RESULTS.md`, "Where the step's
    time goes"). Greedy decoding picks its tokens with it too (`evaluation.decoding`)."""
    columns = jax.lax.broadcasted_iota(jnp.int32, logits.shape, logits.ndim - 1)
    return jnp.min(jnp.where(logits == maxima[..., None], columns, logits.shape[-1]), axis=-1)


def _chunk_forward(chunk_hidden, embeddings, scale, soft_cap, block, with_expectation):
    """A chunk's online walk over the vocabulary: `(lse, best, expectation)`, where
    `expectation` (`[T, H]`, only `with_expectation`) is the gradient of `lse` with respect to
    `chunk_hidden`."""
    count, width = chunk_hidden.shape
    full, tail = _blocks(embeddings.shape[0], block)

    def step(carry, start, size):
        running_max, running_sum, best, expectation = carry
        logits, slope, table = _tile(chunk_hidden, embeddings, scale, start, size, soft_cap)
        block_max = jnp.max(logits, axis=-1)
        block_best = first_index_of(logits, block_max) + start
        new_max = jnp.maximum(running_max, block_max)
        rescale = jnp.exp(running_max - new_max)
        probabilities = jnp.exp(logits - new_max[:, None])
        running_sum = running_sum * rescale + jnp.sum(probabilities, axis=-1)
        best = jnp.where(block_max > running_max, block_best, best)  # Earlier blocks win ties.
        if expectation is not None:
            weights = probabilities if slope is None else probabilities * slope
            expectation = expectation * rescale[:, None] + jnp.einsum(
                "tv,vh->th", weights.astype(table.dtype), table, preferred_element_type=jnp.float32
            )
        return new_max, running_sum, best, expectation

    carry = (
        jnp.full((count,), -jnp.inf, jnp.float32),
        jnp.zeros((count,), jnp.float32),
        jnp.zeros((count,), jnp.int32),
        jnp.zeros((count, width), jnp.float32) if with_expectation else None,
    )
    carry = jax.lax.fori_loop(0, full, lambda i, c: step(c, i * block, block), carry)
    if tail:
        carry = step(carry, full * block, tail)
    running_max, running_sum, best, expectation = carry
    lse = running_max + jnp.log(running_sum)
    if expectation is not None:
        expectation = (expectation / running_sum[:, None]).astype(chunk_hidden.dtype)
    return lse, best, expectation


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 1, 2))
def _tiled(soft_cap, block, embedding_grad, hidden, embeddings, scale):
    """`(lse, best)`, each `[chunks, T]`, of `[chunks, T, H]` hidden states (a scan over chunks)."""

    def body(carry, chunk_hidden):
        lse, best, _ = _chunk_forward(chunk_hidden, embeddings, scale, soft_cap, block, False)
        return carry, (lse, best)

    _, outputs = jax.lax.scan(body, None, hidden)
    return outputs


def _tiled_forward(soft_cap, block, embedding_grad, hidden, embeddings, scale):
    def body(carry, chunk_hidden):
        return carry, _chunk_forward(chunk_hidden, embeddings, scale, soft_cap, block, True)

    _, (lse, best, expectation) = jax.lax.scan(body, None, hidden)
    kept_hidden = hidden if embedding_grad else None  # Only the embedding's gradient needs it.
    return (lse, best), (expectation, kept_hidden, embeddings, scale, lse)


def _tiled_backward(soft_cap, block, embedding_grad, residuals, cotangents):
    expectation, hidden, embeddings, scale, lse = residuals
    d_lse = cotangents[0].astype(jnp.float32)  # `best` is an index: no gradient.
    d_hidden = (d_lse[..., None] * expectation.astype(jnp.float32)).astype(expectation.dtype)
    if embedding_grad:
        d_embeddings = _embedding_gradient(
            hidden, embeddings, scale, lse, d_lse, soft_cap, block
        ).astype(embeddings.dtype)
    elif jnp.issubdtype(embeddings.dtype, jnp.integer):
        d_embeddings = np.zeros(embeddings.shape, jax.dtypes.float0)
    else:
        d_embeddings = jnp.zeros_like(embeddings)
    return d_hidden, d_embeddings, None if scale is None else jnp.zeros_like(scale)


def _embedding_gradient(hidden, embeddings, scale, lse, d_lse, soft_cap, block):
    """`sum_t d_lse[t] * p[t, v] * dlogit/draw[t, v] * hidden[t]` for every vocabulary row `v`:
    the embedding's gradient through the normalizer, one block of rows at a time (each block
    walks every chunk of positions, recomputing its tiles' logits)."""
    full, tail = _blocks(embeddings.shape[0], block)
    width = hidden.shape[-1]

    def block_gradient(start, size):
        def body(total, chunk):
            chunk_hidden, chunk_lse, chunk_d_lse = chunk
            logits, slope, _ = _tile(chunk_hidden, embeddings, scale, start, size, soft_cap)
            weights = jnp.exp(logits - chunk_lse[:, None]) * chunk_d_lse[:, None]
            if slope is not None:
                weights = weights * slope
            return total + jnp.einsum(
                "tv,th->vh",
                weights.astype(hidden.dtype),
                chunk_hidden,
                preferred_element_type=jnp.float32,
            ), None

        total, _ = jax.lax.scan(body, jnp.zeros((size, width), jnp.float32), (hidden, lse, d_lse))
        return total

    def fill(i, d_table):
        return jax.lax.dynamic_update_slice_in_dim(
            d_table, block_gradient(i * block, block), i * block, 0
        )

    d_table = jax.lax.fori_loop(0, full, fill, jnp.zeros(embeddings.shape, jnp.float32))
    if tail:
        d_table = jax.lax.dynamic_update_slice_in_dim(
            d_table, block_gradient(full * block, tail), full * block, 0
        )
    return d_table


_tiled.defvjp(_tiled_forward, _tiled_backward)
