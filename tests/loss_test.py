"""The loss is a mean over weighted tokens: padding and prompt tokens neither count nor dilute."""

import jax
import numpy as np

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
