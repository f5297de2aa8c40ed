"""The loss is a mean over weighted tokens: padding and prompt tokens neither count nor dilute."""

import jax
import numpy as np
import pytest

from gemma_tune.training import loss


def _random(seed, shape):
    return jax.random.normal(jax.random.PRNGKey(seed), shape)


def test_matches_hand_computed_mean():
    logits = np.log(np.array([[[0.5, 0.25, 0.25], [0.1, 0.8, 0.1]]], np.float32))
    targets = np.array([[0, 1]])
    weights = np.array([[1.0, 1.0]])
    expected = -(np.log(0.5) + np.log(0.8)) / 2
    np.testing.assert_allclose(loss.mean_loss(logits, targets, weights), expected, rtol=1e-6)


def test_zero_weight_positions_do_not_change_the_loss():
    logits = _random(0, (2, 6, 11))
    targets = np.array([[1, 2, 3, 4, 0, 0], [5, 6, 7, 0, 0, 0]])
    weights = np.array([[0, 0, 1, 1, 0, 0], [0, 1, 1, 0, 0, 0]], np.float32)
    before = loss.mean_loss(logits, targets, weights)
    # Scramble every unweighted position: logits and targets alike.
    scrambled = np.where(weights[..., None] > 0, logits, _random(1, logits.shape) * 10)
    other_targets = np.where(weights > 0, targets, 9)
    after = loss.mean_loss(scrambled, other_targets, weights)
    np.testing.assert_allclose(before, after, rtol=1e-6)


def test_padding_does_not_dilute():
    logits = _random(2, (1, 4, 7))
    targets = np.array([[1, 2, 0, 0]])
    short = loss.mean_loss(logits[:, :2], targets[:, :2], np.ones((1, 2)))
    padded = loss.mean_loss(logits, targets, np.array([[1.0, 1.0, 0.0, 0.0]]))
    np.testing.assert_allclose(short, padded, rtol=1e-6)


def test_accuracy_counts_weighted_argmax_hits():
    logits = np.eye(4, dtype=np.float32)[None] * 5  # position i predicts token i
    targets = np.array([[0, 1, 3, 3]])
    weights = np.array([[1.0, 1.0, 1.0, 0.0]])
    _, weight_sum, correct = loss.weighted_sums(logits, targets, weights)
    assert float(weight_sum) == 3.0
    assert float(correct) == 2.0


def _head_problem(seed=3, soft_cap=None):
    hidden = _random(seed, (2, 7, 5))
    embeddings = _random(seed + 1, (13, 5))
    targets = jax.random.randint(jax.random.PRNGKey(seed + 2), (2, 7), 0, 13)
    weights = np.array([[0, 0, 1, 1, 1, 0, 0], [0, 1, 0, 1, 0, 0, 0]], np.float32)
    return hidden, embeddings, targets, weights


def _full_logits_sums(hidden, embeddings, targets, weights, soft_cap=None):
    logits = hidden @ embeddings.T
    if soft_cap:
        logits = jax.numpy.tanh(logits / soft_cap) * soft_cap
    return loss.weighted_sums(logits, targets, weights)


@pytest.mark.parametrize(
    "max_targets, chunk_size, soft_cap", [(0, 4, None), (6, 4, None), (8, 3, 2.0), (0, 256, 30.0)]
)
def test_chunked_head_equals_full_logits_in_value_and_gradient(max_targets, chunk_size, soft_cap):
    hidden, embeddings, targets, weights = _head_problem()

    def chunked(h):
        sums = loss.head_sums(
            h,
            embeddings,
            targets,
            weights,
            soft_cap=soft_cap,
            max_targets=max_targets,
            chunk_size=chunk_size,
        )
        return sums[0] / sums[1], sums

    def full(h):
        sums = _full_logits_sums(h, embeddings, targets, weights, soft_cap)
        return sums[0] / sums[1], sums

    (value, sums), grad = jax.value_and_grad(chunked, has_aux=True)(hidden)
    (expected_value, expected_sums), expected_grad = jax.value_and_grad(full, has_aux=True)(hidden)
    np.testing.assert_allclose(value, expected_value, rtol=1e-5)
    np.testing.assert_allclose(np.array(sums), np.array(expected_sums), rtol=1e-5)
    np.testing.assert_allclose(grad, expected_grad, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("soft_cap", [None, 2.0])
def test_chunked_head_gradient_reaches_a_trained_embedding(soft_cap):
    """Full fine-tuning trains the tied embedding: its gradient (logits and input lookups
    aside, the head's part) must equal the full-logits one."""
    hidden, embeddings, targets, weights = _head_problem(seed=5)

    def chunked(h, e):
        sums = loss.head_sums(
            h, e, targets, weights, soft_cap=soft_cap, chunk_size=4, embedding_grad=True
        )
        return sums[0]

    def full(h, e):
        return _full_logits_sums(h, e, targets, weights, soft_cap)[0]

    grads = jax.grad(chunked, argnums=(0, 1))(hidden, embeddings)
    expected = jax.grad(full, argnums=(0, 1))(hidden, embeddings)
    for got, want in zip(grads, expected, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)
        assert float(np.abs(want).max()) > 1e-3  # a gradient that could be wrong


def test_chunked_head_on_an_int8_embedding_matches_its_float_equivalent():
    hidden, embeddings, targets, weights = _head_problem(seed=7)
    scale = 127.0 / np.abs(np.asarray(embeddings)).max(axis=1)
    quantized = np.round(np.asarray(embeddings) * scale[:, None]).astype(np.int8)
    dequantized = quantized.astype(np.float32) / scale[:, None]

    def chunked(h):
        sums = loss.head_sums(
            h, quantized, targets, weights, embedding_scale=scale, soft_cap=3.0, chunk_size=5
        )
        return sums[0] / sums[1]

    def full(h):
        sums = _full_logits_sums(h, dequantized, targets, weights, 3.0)
        return sums[0] / sums[1]

    value, grad = jax.value_and_grad(chunked)(hidden)
    expected_value, expected_grad = jax.value_and_grad(full)(hidden)
    np.testing.assert_allclose(value, expected_value, rtol=1e-5)
    np.testing.assert_allclose(grad, expected_grad, rtol=1e-4, atol=1e-6)
