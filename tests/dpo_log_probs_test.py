"""Per-row answer log-probabilities from hidden states equal log_softmax of the full logits
gathered at the targets, in value and gradient (hidden states and a trained embedding), with
and without a soft cap, an int8 head and a subset of positions."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gemma_tune.training import loss


def _problem(seed=3):
    keys = jax.random.split(jax.random.PRNGKey(seed), 3)
    hidden = jax.random.normal(keys[0], (3, 7, 5))
    embeddings = jax.random.normal(keys[1], (13, 5))
    targets = jax.random.randint(keys[2], (3, 7), 0, 13)
    weights = np.array(
        [[0, 0, 1, 1, 1, 0, 0], [0, 1, 0, 1, 0, 0, 0], [0, 0, 0, 0, 1, 1, 1]], np.float32
    )
    return hidden, embeddings, targets, weights


def _full(hidden, embeddings, targets, weights, soft_cap=None):
    logits = hidden @ embeddings.T
    if soft_cap:
        logits = jnp.tanh(logits / soft_cap) * soft_cap
    return loss.row_log_probs(logits, targets, weights)


def _objective(row_values):
    """A non-linear use of the rows, so each row's cotangent differs (as DPO's does)."""
    return jnp.sum(jnp.sin(row_values) * jnp.array([1.0, -2.0, 0.5]))


def test_row_log_probs_is_the_weighted_sum_of_target_log_softmax():
    logits = np.log(np.array([[[0.5, 0.25, 0.25], [0.1, 0.8, 0.1], [0.2, 0.2, 0.6]]], np.float32))
    value = loss.row_log_probs(logits, np.array([[0, 1, 2]]), np.array([[0.0, 1.0, 1.0]]))
    np.testing.assert_allclose(value, [np.log(0.8) + np.log(0.6)], rtol=1e-6)


@pytest.mark.parametrize(
    "max_targets, chunk_size, soft_cap",
    [(0, 4, None), (8, 4, None), (10, 3, 2.0), (0, 256, 30.0)],
)
def test_head_row_log_probs_equals_full_logits(max_targets, chunk_size, soft_cap):
    hidden, embeddings, targets, weights = _problem()

    def fused(h, e):
        return loss.head_row_log_probs(
            h,
            e,
            targets,
            weights,
            soft_cap=soft_cap,
            max_targets=max_targets,
            chunk_size=chunk_size,
            embedding_grad=True,
        )

    def full(h, e):
        return _full(h, e, targets, weights, soft_cap)

    np.testing.assert_allclose(fused(hidden, embeddings), full(hidden, embeddings), rtol=1e-5)
    grads = jax.grad(lambda h, e: _objective(fused(h, e)), argnums=(0, 1))(hidden, embeddings)
    expected = jax.grad(lambda h, e: _objective(full(h, e)), argnums=(0, 1))(hidden, embeddings)
    for got, want in zip(grads, expected, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)
        assert float(np.abs(want).max()) > 1e-3


def test_head_row_log_probs_without_embedding_gradient_and_under_jit():
    hidden, embeddings, targets, weights = _problem(seed=4)

    @jax.jit
    def grad(h):
        rows = loss.head_row_log_probs(h, embeddings, targets, weights, chunk_size=5)
        return jax.grad(
            lambda h: _objective(
                loss.head_row_log_probs(h, embeddings, targets, weights, chunk_size=5)
            )
        )(h), rows

    got, rows = grad(hidden)
    want = jax.grad(lambda h: _objective(_full(h, embeddings, targets, weights)))(hidden)
    np.testing.assert_allclose(rows, _full(hidden, embeddings, targets, weights), rtol=1e-5)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)


def test_head_row_log_probs_on_an_int8_embedding():
    hidden, embeddings, targets, weights = _problem(seed=7)
    scale = 127.0 / np.abs(np.asarray(embeddings)).max(axis=1)
    quantized = np.round(np.asarray(embeddings) * scale[:, None]).astype(np.int8)
    dequantized = quantized.astype(np.float32) / scale[:, None]

    def fused(h):
        return loss.head_row_log_probs(
            h, quantized, targets, weights, embedding_scale=scale, soft_cap=3.0, chunk_size=5
        )

    np.testing.assert_allclose(
        fused(hidden), _full(hidden, dequantized, targets, weights, 3.0), rtol=1e-5
    )
    got = jax.grad(lambda h: _objective(fused(h)))(hidden)
    want = jax.grad(lambda h: _objective(_full(h, dequantized, targets, weights, 3.0)))(hidden)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)


def test_a_row_without_weighted_tokens_sums_to_zero():
    hidden, embeddings, targets, weights = _problem()
    weights = weights.copy()
    weights[1] = 0
    rows = loss.head_row_log_probs(hidden, embeddings, targets, weights, max_targets=8)
    assert float(rows[1]) == 0.0


def _vocabulary_matmuls(jaxpr, vocabulary: int) -> int:
    """Counts the matmuls with a vocabulary-sized operand in a jaxpr and its sub-jaxprs."""
    count = 0
    for eqn in jaxpr.eqns:
        if eqn.primitive.name == "dot_general":
            count += any(vocabulary in var.aval.shape for var in eqn.invars)
        for param in eqn.params.values():
            for item in param if isinstance(param, (tuple, list)) else [param]:
                inner = getattr(item, "jaxpr", item)
                if hasattr(inner, "eqns"):
                    count += _vocabulary_matmuls(inner, vocabulary)
    return count


@pytest.mark.parametrize("embedding_grad, expected", [(False, 2), (True, 4)])
def test_gradient_is_formed_in_the_forward_pass(embedding_grad, expected):
    """Logits and input gradient per chunk, nothing vocabulary-sized left for the backward
    pass; a trained embedding adds the recomputed logits and its own gradient."""
    tokens, width, vocabulary = 32, 16, 512
    hidden = jax.random.normal(jax.random.PRNGKey(1), (2, tokens, width))
    embeddings = jax.random.normal(jax.random.PRNGKey(2), (vocabulary, width))
    targets = jax.random.randint(jax.random.PRNGKey(3), (2, tokens), 0, vocabulary)
    weights = np.ones((2, tokens), np.float32)

    def objective(h, e):
        rows = loss.head_row_log_probs(
            h, e, targets, weights, chunk_size=16, embedding_grad=embedding_grad
        )
        return _objective(jnp.concatenate([rows, rows[:1]]))

    jaxpr = jax.make_jaxpr(jax.grad(objective, argnums=(0, 1)))(hidden, embeddings).jaxpr
    assert _vocabulary_matmuls(jaxpr, vocabulary) == expected


def test_packed_rows_sum_each_example_apart():
    """Two rows packing examples 1..3: each example's sum is the row sum over its positions."""
    hidden, embeddings, targets, weights = _problem(seed=9)
    segment_ids = np.array(
        [[1, 1, 1, 2, 2, 2, 0], [1, 1, 1, 1, 1, 1, 1], [1, 1, 2, 2, 3, 3, 3]], np.int32
    )
    weights = np.ones_like(weights) * (segment_ids > 0)

    def packed(h):
        return loss.head_row_log_probs(
            h,
            embeddings,
            targets,
            weights,
            max_targets=20,
            chunk_size=4,
            segment_ids=segment_ids,
            segments_per_row=3,
        )

    def apart(h):
        masks = [(segment_ids == number).astype(np.float32) for number in (1, 2, 3)]
        return jnp.stack([_full(h, embeddings, targets, weights * m) for m in masks], axis=1)

    np.testing.assert_allclose(packed(hidden), apart(hidden), rtol=1e-5, atol=1e-6)
    assert float(packed(hidden)[1, 1]) == 0.0  # a row with one example
    cotangent = jax.random.normal(jax.random.PRNGKey(4), (3, 3))
    got = jax.grad(lambda h: jnp.sum(jnp.sin(packed(h)) * cotangent))(hidden)
    want = jax.grad(lambda h: jnp.sum(jnp.sin(apart(h)) * cotangent))(hidden)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)
