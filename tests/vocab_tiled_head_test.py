"""The vocabulary-tiled LM head equals the plain loss of full logits, in value and gradient,
and never holds a `[positions, vocab]` array."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gemma_tune.training import loss, vocab_tiled_head

VOCAB, WIDTH = 23, 6  # 23 rows: no block size below divides it, so every walk has a tail.


def _problem(seed):
    keys = jax.random.split(jax.random.PRNGKey(seed), 3)
    hidden = jax.random.normal(keys[0], (3, 5, WIDTH))
    embeddings = jax.random.normal(keys[1], (VOCAB, WIDTH))
    # Every other target is the argmax, so accuracy counts hits as well as misses.
    argmax = jnp.argmax(hidden @ embeddings.T, axis=-1)
    targets = jnp.where(
        np.arange(5) % 2 == 0, argmax, jax.random.randint(keys[2], (3, 5), 0, VOCAB)
    )
    # Zeros inside rows, a row with no weight at all (padding) and a weight that is not 1.
    weights = np.array([[0, 1, 1, 0, 1], [0, 0, 0, 0, 0], [1, 0.5, 0, 1, 1]], np.float32)
    return hidden, embeddings, targets, weights


def _quantized(embeddings):
    scale = 127.0 / np.abs(np.asarray(embeddings)).max(axis=1)
    table = np.round(np.asarray(embeddings) * scale[:, None]).astype(np.int8)
    return table, scale.astype(np.float32), table.astype(np.float32) / scale[:, None]


def _full_logits(hidden, embeddings, soft_cap):
    logits = hidden @ embeddings.T
    return jnp.tanh(logits / soft_cap) * soft_cap if soft_cap else logits


CASES = [
    # (soft_cap, max_targets, chunk_size, vocab_block)
    (None, 0, 4, 5),
    (30.0, 0, 256, 4),
    (2.0, 10, 3, 7),
    (2.0, 0, 2, 64),  # one block larger than the vocabulary
]


@pytest.mark.parametrize("soft_cap, max_targets, chunk_size, vocab_block", CASES)
def test_head_sums_equal_full_logits_in_value_and_gradient(
    soft_cap, max_targets, chunk_size, vocab_block
):
    hidden, embeddings, targets, weights = _problem(seed=1)

    def tiled(h, e):
        sums = loss.head_sums(
            h,
            e,
            targets,
            weights,
            soft_cap=soft_cap,
            max_targets=max_targets,
            chunk_size=chunk_size,
            vocab_block=vocab_block,
            embedding_grad=True,
        )
        return sums[0] / sums[1], sums

    def full(h, e):
        sums = loss.weighted_sums(_full_logits(h, e, soft_cap), targets, weights)
        return sums[0] / sums[1], sums

    (value, sums), grads = jax.value_and_grad(tiled, argnums=(0, 1), has_aux=True)(
        hidden, embeddings
    )
    (want_value, want_sums), want_grads = jax.value_and_grad(full, argnums=(0, 1), has_aux=True)(
        hidden, embeddings
    )
    np.testing.assert_allclose(value, want_value, rtol=1e-5)
    np.testing.assert_allclose(np.array(sums), np.array(want_sums), rtol=1e-5)
    assert float(want_sums[2]) > 0  # some argmax hits, so accuracy is really compared
    for got, want in zip(grads, want_grads, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)
        assert float(np.abs(want).max()) > 1e-3


@pytest.mark.parametrize("soft_cap", [None, 3.0])
def test_head_sums_on_an_int8_table_equal_its_float_equivalent(soft_cap):
    hidden, embeddings, targets, weights = _problem(seed=2)
    table, scale, dequantized = _quantized(embeddings)

    def tiled(h):
        sums = loss.head_sums(
            h, table, targets, weights, embedding_scale=scale, soft_cap=soft_cap, vocab_block=6
        )
        return sums[0], sums

    def full(h):
        sums = loss.weighted_sums(_full_logits(h, dequantized, soft_cap), targets, weights)
        return sums[0], sums

    (value, sums), grad = jax.value_and_grad(tiled, has_aux=True)(hidden)
    (want_value, want_sums), want_grad = jax.value_and_grad(full, has_aux=True)(hidden)
    np.testing.assert_allclose(value, want_value, rtol=1e-5)
    np.testing.assert_allclose(np.array(sums), np.array(want_sums), rtol=1e-5)
    np.testing.assert_allclose(grad, want_grad, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("soft_cap, int8", [(None, False), (2.0, False), (None, True)])
def test_row_log_probs_equal_full_logits_in_value_and_gradient(soft_cap, int8):
    hidden, embeddings, targets, weights = _problem(seed=3)
    scale = None
    head_table = dense = embeddings
    if int8:
        head_table, scale, dense = _quantized(embeddings)
    cotangent = jnp.array([1.0, -2.0, 0.5])  # rows matter differently, as in DPO

    def tiled(h, e):
        rows = loss.head_row_log_probs(
            h,
            e,
            targets,
            weights,
            embedding_scale=scale,
            soft_cap=soft_cap,
            max_targets=11,
            chunk_size=4,
            vocab_block=5,
            embedding_grad=not int8,
        )
        return jnp.sum(rows * cotangent), rows

    def full(h, e):
        rows = loss.row_log_probs(_full_logits(h, e, soft_cap), targets, weights)
        return jnp.sum(rows * cotangent), rows

    argnums = (0,) if int8 else (0, 1)
    (_, rows), grads = jax.value_and_grad(tiled, argnums=argnums, has_aux=True)(hidden, head_table)
    (_, want_rows), want_grads = jax.value_and_grad(full, argnums=argnums, has_aux=True)(
        hidden, dense
    )
    np.testing.assert_allclose(rows, want_rows, rtol=1e-5, atol=1e-6)
    assert float(rows[1]) == 0.0  # the row without weights
    for got, want in zip(grads, want_grads, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("vocab_block", [3, 8])  # the tied rows in other blocks, in one block
def test_ties_count_the_first_index_as_argmax(vocab_block):
    """`jnp.argmax` picks the first of equal logits; the walk must too, across blocks and
    within one."""
    embeddings = jnp.concatenate([jnp.eye(4), jnp.eye(4)])  # rows v and v + 4 tie
    hidden = jnp.eye(4)[None] * 3.0
    first = jnp.array([[0, 1, 2, 3]])
    ones = np.ones((1, 4))
    _, _, correct = loss.head_sums(hidden, embeddings, first, ones, vocab_block=vocab_block)
    _, _, correct_later = loss.head_sums(
        hidden, embeddings, first + 4, ones, vocab_block=vocab_block
    )
    assert (float(correct), float(correct_later)) == (4.0, 0.0)


def _shapes(jaxpr):
    """Every intermediate's shape in a jaxpr and its sub-jaxprs (loops, custom gradients)."""
    for eqn in jaxpr.eqns:
        yield from (tuple(var.aval.shape) for var in eqn.outvars)
        for param in eqn.params.values():
            for item in param if isinstance(param, (tuple, list)) else [param]:
                inner = getattr(item, "jaxpr", item)
                if hasattr(inner, "eqns"):
                    yield from _shapes(inner)


@pytest.mark.parametrize("embedding_grad, int8", [(False, False), (True, False), (False, True)])
def test_no_positions_by_vocabulary_array_in_a_training_step(embedding_grad, int8):
    """The only vocabulary-sized arrays are the table, its scale and its gradient: no logits,
    probabilities or one-hot matrix over the whole vocabulary."""
    tokens, vocabulary, block = 48, 1000, 128
    hidden = jax.random.normal(jax.random.PRNGKey(0), (1, tokens, 16))
    embeddings = jax.random.normal(jax.random.PRNGKey(1), (vocabulary, 16))
    scale = None
    if int8:
        embeddings, scale, _ = _quantized(embeddings)
    targets = jax.random.randint(jax.random.PRNGKey(2), (1, tokens), 0, vocabulary)

    def loss_sum(h, e):
        return loss.head_sums(
            h,
            e,
            targets,
            np.ones((1, tokens), np.float32),
            embedding_scale=scale,
            chunk_size=16,
            vocab_block=block,
            embedding_grad=embedding_grad,
        )[0]

    argnums = (0, 1) if embedding_grad else (0,)
    shapes = set(_shapes(jax.make_jaxpr(jax.grad(loss_sum, argnums))(hidden, embeddings).jaxpr))
    assert (16, block) in shapes  # the tiles are there
    assert {s for s in shapes if vocabulary in s} <= {(vocabulary, 16), (vocabulary,)}


def _block_matmuls(jaxpr, block: int) -> int:
    """Matmuls with a vocabulary-block operand in a jaxpr and its sub-jaxprs."""
    count = 0
    for eqn in jaxpr.eqns:
        if eqn.primitive.name == "dot_general":
            count += any(block in var.aval.shape for var in eqn.invars)
        for param in eqn.params.values():
            for item in param if isinstance(param, (tuple, list)) else [param]:
                inner = getattr(item, "jaxpr", item)
                if hasattr(inner, "eqns"):
                    count += _block_matmuls(inner, block)
    return count


def test_training_costs_two_matmuls_per_tile_and_evaluation_one():
    """The gradient is accumulated while each tile's logits exist: logits and expectation,
    no recomputed logits (the head is most of a small model's step)."""
    tokens, width, vocabulary, block = 64, 24, 2048, 512
    hidden = jax.random.normal(jax.random.PRNGKey(3), (1, tokens, width))
    embeddings = jax.random.normal(jax.random.PRNGKey(4), (vocabulary, width))
    targets = jax.random.randint(jax.random.PRNGKey(5), (1, tokens), 0, vocabulary)
    weights = np.ones((1, tokens), np.float32)

    def loss_sum(h):
        return loss.head_sums(h, embeddings, targets, weights, chunk_size=32, vocab_block=block)[0]

    assert _block_matmuls(jax.make_jaxpr(jax.grad(loss_sum))(hidden).jaxpr, block) == 2
    assert _block_matmuls(jax.make_jaxpr(loss_sum)(hidden).jaxpr, block) == 1


def test_log_normalizer_is_logsumexp_and_argmax():
    hidden = jax.random.normal(jax.random.PRNGKey(6), (7, WIDTH)) * 4
    embeddings = jax.random.normal(jax.random.PRNGKey(7), (VOCAB, WIDTH))
    lse, best = vocab_tiled_head.log_normalizer(hidden, embeddings, chunk_size=3, vocab_block=4)
    logits = hidden @ embeddings.T
    np.testing.assert_allclose(lse, jax.nn.logsumexp(logits, axis=-1), rtol=1e-6)
    np.testing.assert_array_equal(best, jnp.argmax(logits, axis=-1))
