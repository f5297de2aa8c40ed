"""The DPO objective: the losses as their papers write them, the metrics users watch,
padding pairs left out, no gradient into the reference, and bad settings named."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gemma_tune.training import dpo

POLICY_CHOSEN = np.array([-10.0, -4.0, -7.5], np.float32)
POLICY_REJECTED = np.array([-12.0, -3.0, -7.5], np.float32)
REFERENCE_CHOSEN = np.array([-11.0, -4.5, -8.0], np.float32)
REFERENCE_REJECTED = np.array([-11.5, -3.5, -6.0], np.float32)
TOKENS_CHOSEN = np.array([4.0, 2.0, 3.0], np.float32)
TOKENS_REJECTED = np.array([5.0, 1.0, 3.0], np.float32)
LOG_PROBS = (POLICY_CHOSEN, POLICY_REJECTED, REFERENCE_CHOSEN, REFERENCE_REJECTED)


def _log_sigmoid(x):
    return -np.log1p(np.exp(-x))


def test_losses_match_their_papers():
    beta, smoothing = 0.2, 0.1
    chosen_ratio = POLICY_CHOSEN - REFERENCE_CHOSEN
    rejected_ratio = POLICY_REJECTED - REFERENCE_REJECTED
    delta = chosen_ratio - rejected_ratio
    expected = {
        ("sigmoid", 0.0): -_log_sigmoid(beta * delta),
        ("sigmoid", smoothing): -(1 - smoothing) * _log_sigmoid(beta * delta)
        - smoothing * _log_sigmoid(-beta * delta),
        ("robust", smoothing): (
            -(1 - smoothing) * _log_sigmoid(beta * delta) + smoothing * _log_sigmoid(-beta * delta)
        )
        / (1 - 2 * smoothing),
        ("ipo", 0.0): (
            chosen_ratio / TOKENS_CHOSEN - rejected_ratio / TOKENS_REJECTED - 1 / (2 * beta)
        )
        ** 2,
    }
    for (loss_type, label_smoothing), want in expected.items():
        got = dpo.pair_losses(
            *LOG_PROBS,
            beta=beta,
            loss_type=loss_type,
            label_smoothing=label_smoothing,
            chosen_tokens=TOKENS_CHOSEN,
            rejected_tokens=TOKENS_REJECTED,
        )
        np.testing.assert_allclose(got, want, rtol=1e-5, err_msg=loss_type)


def test_simpo_needs_no_reference_and_rewards_the_per_token_log_probability():
    beta, gamma, smoothing = 2.0, 0.8, 0.1
    average = POLICY_CHOSEN / TOKENS_CHOSEN - POLICY_REJECTED / TOKENS_REJECTED
    delta = average - gamma / beta
    want = -(1 - smoothing) * _log_sigmoid(beta * delta) - smoothing * _log_sigmoid(-beta * delta)
    settings = {
        "beta": beta,
        "loss_type": "simpo",
        "label_smoothing": smoothing,
        "simpo_gamma": gamma,
        "chosen_tokens": TOKENS_CHOSEN,
        "rejected_tokens": TOKENS_REJECTED,
    }
    loss, metrics = dpo.dpo_loss(POLICY_CHOSEN, POLICY_REJECTED, None, None, **settings)
    np.testing.assert_allclose(loss, want.mean(), rtol=1e-6)
    chosen_rewards = beta * POLICY_CHOSEN / TOKENS_CHOSEN
    np.testing.assert_allclose(metrics["rewards/chosen"], chosen_rewards.mean(), rtol=1e-6)
    assert "simpo" in dpo.REFERENCE_FREE and "simpo" in dpo.PER_TOKEN


@pytest.mark.parametrize("loss_type", ["sigmoid", "ipo"])
def test_rpo_adds_the_chosen_answers_nll_per_token(loss_type):
    settings = {
        "beta": 0.1,
        "loss_type": loss_type,
        "chosen_tokens": TOKENS_CHOSEN,
        "rejected_tokens": TOKENS_REJECTED,
    }
    plain = np.asarray(dpo.pair_losses(*LOG_PROBS, **settings))
    with_rpo = np.asarray(dpo.pair_losses(*LOG_PROBS, **settings, rpo_alpha=0.5))
    np.testing.assert_allclose(with_rpo - plain, 0.5 * -POLICY_CHOSEN / TOKENS_CHOSEN, rtol=1e-6)

    def chosen_gradient(rpo_alpha):
        def loss(chosen):
            return dpo.dpo_loss(chosen, *LOG_PROBS[1:], **settings, rpo_alpha=rpo_alpha)[0]

        return np.asarray(jax.grad(loss)(jnp.asarray(POLICY_CHOSEN)))

    # The NLL term pushes every chosen answer's likelihood up, by alpha / (pairs * tokens).
    extra = chosen_gradient(0.5) - chosen_gradient(0.0)
    np.testing.assert_allclose(extra, -0.5 / (3 * TOKENS_CHOSEN), rtol=1e-5)


def test_metrics_are_the_rewards_users_watch():
    loss, metrics = dpo.dpo_loss(*LOG_PROBS, beta=0.5)
    chosen_rewards = 0.5 * (POLICY_CHOSEN - REFERENCE_CHOSEN)  # 0.5, 0.25, 0.25
    rejected_rewards = 0.5 * (POLICY_REJECTED - REFERENCE_REJECTED)  # -0.25, 0.25, -0.75
    np.testing.assert_allclose(metrics["rewards/chosen"], chosen_rewards.mean(), rtol=1e-6)
    np.testing.assert_allclose(metrics["rewards/rejected"], rejected_rewards.mean(), rtol=1e-6)
    margins = (chosen_rewards - rejected_rewards).mean()
    np.testing.assert_allclose(metrics["rewards/margins"], margins, rtol=1e-6)
    np.testing.assert_allclose(metrics["rewards/accuracies"], 2 / 3, rtol=1e-6)  # a tie loses
    np.testing.assert_allclose(metrics["logps/chosen"], POLICY_CHOSEN.mean(), rtol=1e-6)
    np.testing.assert_allclose(metrics["logps/rejected"], POLICY_REJECTED.mean(), rtol=1e-6)
    delta = (chosen_rewards - rejected_rewards) / 0.5
    np.testing.assert_allclose(loss, (-_log_sigmoid(0.5 * delta)).mean(), rtol=1e-6)


def test_at_the_start_the_policy_is_the_reference():
    """Before the first step the policy is the reference: every reward is 0 and the sigmoid
    loss is log 2, whatever the data."""
    loss, metrics = dpo.dpo_loss(POLICY_CHOSEN, POLICY_REJECTED, *LOG_PROBS[:2], beta=0.1)
    np.testing.assert_allclose(loss, np.log(2), rtol=1e-6)
    assert float(metrics["rewards/margins"]) == 0 and float(metrics["rewards/accuracies"]) == 0


def test_padding_pairs_count_in_neither_loss_nor_metrics():
    padded = [np.concatenate([values, [0.0, 0.0]]) for values in LOG_PROBS]
    weights = np.array([1, 1, 1, 0, 0], np.float32)
    for loss_type in dpo.LOSS_TYPES:
        tokens = {"chosen_tokens": np.r_[TOKENS_CHOSEN, 0, 0]}
        tokens["rejected_tokens"] = np.r_[TOKENS_REJECTED, 0, 0]
        want = dpo.dpo_loss(
            *LOG_PROBS, beta=0.3, loss_type=loss_type, **{k: v[:3] for k, v in tokens.items()}
        )
        got = dpo.dpo_loss(*padded, beta=0.3, loss_type=loss_type, pair_weights=weights, **tokens)
        np.testing.assert_allclose(got[0], want[0], rtol=1e-6)
        for name, value in want[1].items():
            np.testing.assert_allclose(got[1][name], value, rtol=1e-6, err_msg=name)


def test_only_the_policy_gets_a_gradient():
    def loss(values):
        return dpo.dpo_loss(*values, beta=0.1, label_smoothing=0.2)[0]

    grads = jax.grad(loss)(tuple(jnp.asarray(v) for v in LOG_PROBS))
    assert np.all(np.asarray(grads[0]) < 0) and np.all(np.asarray(grads[1]) > 0)
    assert not np.any(np.asarray(grads[2])) and not np.any(np.asarray(grads[3]))


@pytest.mark.parametrize(
    "settings, message",
    [
        ({"loss_type": "hinge"}, "dpo loss 'hinge' is unknown; choose one of: sigmoid"),
        ({"beta": 0.0}, "dpo beta must be > 0"),
        ({"label_smoothing": 0.5}, r"label_smoothing must be in \[0, 0.5\)"),
        ({"loss_type": "ipo", "label_smoothing": 0.1}, "not ipo"),
        ({"loss_type": "ipo"}, "needs chosen_tokens"),
        ({"loss_type": "simpo"}, "the simpo loss needs chosen_tokens"),
        ({"loss_type": "simpo", "simpo_gamma": -1.0}, "simpo_gamma must be >= 0"),
        ({"rpo_alpha": -0.5}, "rpo_alpha must be >= 0"),
        ({"rpo_alpha": 0.5}, "the rpo loss needs chosen_tokens"),
    ],
)
def test_bad_settings_are_named(settings, message):
    with pytest.raises(ValueError, match=message):
        dpo.pair_losses(*LOG_PROBS, **{"beta": 0.1, **settings})
