"""Parity with Hugging Face TRL: for the same log-probabilities and beta, gemma_tune's DPO
loss, rewards and the gradient of the loss with respect to the log-probabilities equal those
of TRL's `DPOTrainer._compute_loss` (TRL 1.16; `pip install -e '.[parity]'`), called on torch
tensors with the model replaced by its per-token log-probabilities; SimPO's equal
`CPOTrainer.cpo_loss` (TRL's experimental CPO trainer, which runs SimPO)."""

import collections
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gemma_tune.training import dpo

torch = pytest.importorskip("torch")
trl = pytest.importorskip("trl")

PAIRS, LENGTH = 4, 9


class _Accelerator:
    """What `_compute_loss` asks of accelerate on one process: a device and gathers."""

    device = "cpu"

    @staticmethod
    def gather(tensor):
        return tensor

    gather_for_metrics = gather


def _trl_trainer(beta, loss_type, label_smoothing, loss_weights=None):
    """A DPOTrainer with only the attributes `_compute_loss` reads (no model, no dataset);
    `loss_type` a name or a list of names combined with `loss_weights`."""
    loss_types = [loss_type] if isinstance(loss_type, str) else list(loss_type)
    trainer = object.__new__(trl.DPOTrainer)
    trainer.__dict__.update(
        beta=beta,
        loss_types=loss_types,
        loss_weights=loss_weights or [1.0] * len(loss_types),
        label_smoothing=label_smoothing,
        f_divergence_type="reverse_kl",
        ld_alpha=None,
        use_weighting=False,
        aux_loss_enabled=False,
        precompute_ref_logps=True,
        accelerator=_Accelerator(),
        model=types.SimpleNamespace(training=True),
        _metrics={"train": collections.defaultdict(list), "eval": collections.defaultdict(list)},
        _total_train_tokens=0,
        _tp_size=1,
    )
    return trainer


def _problem(seed, pairs=PAIRS, chosen_length=None):
    """Per-token log-probabilities of 2 * pairs rows (chosen rows, then rejected rows, TRL's
    layout), answer masks of varied lengths (every chosen answer `chosen_length` tokens if
    given), and reference sums."""
    rng = np.random.default_rng(seed)
    completion_mask = np.zeros((2 * pairs, LENGTH), np.int64)
    for row in range(2 * pairs):
        start = rng.integers(2, 5)
        length = rng.integers(1, LENGTH - start)
        if chosen_length and row < pairs:
            length = chosen_length
        completion_mask[row, start : start + length] = 1
    token_log_probs = -rng.gamma(2.0, 1.0, (2 * pairs, LENGTH - 1)) * completion_mask[:, 1:]
    reference = token_log_probs.sum(axis=1) + rng.normal(0, 1.5, 2 * pairs)
    return completion_mask, token_log_probs, reference


def _trl_loss(problem, beta, loss_type, label_smoothing, loss_weights=None):
    completion_mask, token_log_probs, reference = problem
    rows = pairs = len(completion_mask)
    pairs //= 2
    trainer = _trl_trainer(beta, loss_type, label_smoothing, loss_weights)
    leaf = torch.tensor(token_log_probs, dtype=torch.float64, requires_grad=True)
    shift = torch.tensor(completion_mask[:, 1:], dtype=torch.float64)

    def model(**kwargs):
        log_probs = leaf * shift
        return types.SimpleNamespace(
            log_probs=log_probs,
            entropy=torch.zeros_like(log_probs),
            mean_logits=torch.zeros_like(log_probs),
            is_top1=torch.zeros(log_probs.shape, dtype=torch.bool),
        )

    inputs = {
        "input_ids": torch.zeros((rows, LENGTH), dtype=torch.long),
        "attention_mask": torch.ones((rows, LENGTH), dtype=torch.long),
        "completion_mask": torch.tensor(completion_mask),
        "ref_chosen_logps": torch.tensor(reference[:pairs]),
        "ref_rejected_logps": torch.tensor(reference[pairs:]),
    }
    loss = trainer._compute_loss(model, inputs, return_outputs=False)
    loss.backward()
    # Every answer token of a row has its row's gradient: read it at the first one.
    first = np.argmax(completion_mask[:, 1:], axis=1)
    row_grad = leaf.grad.numpy()[np.arange(rows), first]
    metrics = {name: values[-1] for name, values in trainer._metrics["train"].items()}
    return float(loss.detach()), row_grad, metrics


def _our_loss(problem, beta, loss_type, label_smoothing, rpo_alpha=0.0):
    completion_mask, token_log_probs, reference = problem
    pairs = len(completion_mask) // 2
    policy = jnp.asarray(token_log_probs.sum(axis=1), jnp.float32)
    tokens = jnp.asarray(completion_mask.sum(axis=1), jnp.float32)
    reference = jnp.asarray(reference, jnp.float32)

    def loss(policy):
        return dpo.dpo_loss(
            policy[:pairs],
            policy[pairs:],
            reference[:pairs],
            reference[pairs:],
            beta=beta,
            loss_type=loss_type,
            label_smoothing=label_smoothing,
            rpo_alpha=rpo_alpha,
            chosen_tokens=tokens[:pairs],
            rejected_tokens=tokens[pairs:],
        )

    (value, metrics), grad = jax.value_and_grad(loss, has_aux=True)(policy)
    return float(value), np.asarray(grad), {k: float(v) for k, v in metrics.items()}


@pytest.mark.parametrize(
    "loss_type, label_smoothing, beta",
    [("sigmoid", 0.0, 0.1), ("sigmoid", 0.0, 0.5), ("robust", 0.1, 0.2), ("robust", 0.3, 1.0)]
    + [("ipo", 0.0, 0.1), ("ipo", 0.0, 0.7)],
)
def test_loss_rewards_and_gradient_equal_trl(loss_type, label_smoothing, beta):
    for seed in range(3):
        problem = _problem(seed)
        trl_value, trl_grad, trl_metrics = _trl_loss(problem, beta, loss_type, label_smoothing)
        value, grad, metrics = _our_loss(problem, beta, loss_type, label_smoothing)
        np.testing.assert_allclose(value, trl_value, rtol=1e-5)
        np.testing.assert_allclose(grad, trl_grad, rtol=1e-4, atol=1e-7)
        assert set(metrics) <= set(trl_metrics)
        for name, got in metrics.items():
            np.testing.assert_allclose(got, trl_metrics[name], rtol=1e-5, atol=1e-6, err_msg=name)


@pytest.mark.parametrize(
    "trl_losses, trl_weights, loss_type, rpo_alpha",
    [(["sft"], [1.0], "sft", 0.0), (["sigmoid", "sft"], [1.0, 0.5], "sigmoid", 0.5)],
)
def test_sft_loss_and_rpo_equal_trl_sft_loss_type(trl_losses, trl_weights, loss_type, rpo_alpha):
    """`dpo.loss=sft` and `dpo.rpo_alpha` against TRL's `sft` loss type, alone and weighted
    beside `sigmoid`: TRL averages the NLL over the batch's chosen tokens, gemma_tune per pair,
    equal when every chosen answer is as long (the problems here)."""
    for seed in range(3):
        problem = _problem(seed, chosen_length=3 + seed)
        trl_value, trl_grad, trl_metrics = _trl_loss(problem, 0.1, trl_losses, 0.0, trl_weights)
        value, grad, metrics = _our_loss(problem, 0.1, loss_type, 0.0, rpo_alpha)
        np.testing.assert_allclose(value, trl_value, rtol=1e-5)
        np.testing.assert_allclose(grad, trl_grad, rtol=1e-4, atol=1e-7)
        for name, got in metrics.items():
            np.testing.assert_allclose(got, trl_metrics[name], rtol=1e-5, atol=1e-6, err_msg=name)
        assert np.all(grad[PAIRS:] == 0) == (loss_type == "sft")


def test_cdpo_label_smoothing_equals_trl_smoothed_sigmoid_form():
    """TRL 1.x keeps the cDPO form (`-(1-e) logsigmoid(b d) - e logsigmoid(-b d)`) in its
    `aot` losses only; on a single pair `aot`'s sort is the identity, so it is that form."""
    for seed in range(4):
        problem = _problem(seed, pairs=1)
        trl_value, trl_grad, _ = _trl_loss(problem, 0.3, "aot", 0.2)
        value, grad, _ = _our_loss(problem, 0.3, "sigmoid", 0.2)
        np.testing.assert_allclose(value, trl_value, rtol=1e-5)
        np.testing.assert_allclose(grad, trl_grad, rtol=1e-4, atol=1e-7)


def test_simpo_equals_trl_cpo_trainer():
    """TRL's CPOTrainer averages the answer's log-probabilities per token for SimPO and passes
    the averages to `cpo_loss`; its rewards are beta times those averages."""
    cpo = pytest.importorskip("trl.experimental.cpo.cpo_trainer")
    beta, gamma, smoothing = 2.0, 0.5, 0.1
    trainer = object.__new__(cpo.CPOTrainer)
    trainer.__dict__.update(
        alpha=0.0,
        beta=beta,
        loss_type="simpo",
        simpo_gamma=gamma,
        label_smoothing=smoothing,
        accelerator=_Accelerator(),
    )
    for seed in range(3):
        completion_mask, token_log_probs, _ = _problem(seed)
        tokens = completion_mask.sum(axis=1).astype(np.float64)
        sums = torch.tensor(token_log_probs.sum(axis=1), requires_grad=True)
        averages = sums / torch.tensor(tokens)
        losses, chosen_rewards, rejected_rewards = trainer.cpo_loss(
            averages[:PAIRS], averages[PAIRS:]
        )
        losses.mean().backward()

        def ours(policy, tokens=tokens):
            return dpo.dpo_loss(
                policy[:PAIRS],
                policy[PAIRS:],
                None,
                None,
                beta=beta,
                loss_type="simpo",
                label_smoothing=smoothing,
                simpo_gamma=gamma,
                chosen_tokens=jnp.asarray(tokens[:PAIRS], jnp.float32),
                rejected_tokens=jnp.asarray(tokens[PAIRS:], jnp.float32),
            )

        policy = jnp.asarray(token_log_probs.sum(axis=1), jnp.float32)
        (value, metrics), grad = jax.value_and_grad(ours, has_aux=True)(policy)
        np.testing.assert_allclose(value, float(losses.mean().detach()), rtol=1e-5)
        np.testing.assert_allclose(grad, sums.grad.numpy(), rtol=1e-4, atol=1e-7)
        np.testing.assert_allclose(
            metrics["rewards/chosen"], float(chosen_rewards.mean()), rtol=1e-5
        )
        np.testing.assert_allclose(
            metrics["rewards/rejected"], float(rejected_rewards.mean()), rtol=1e-5
        )
