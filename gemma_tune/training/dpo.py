"""Direct Preference Optimization (Rafailov et al. 2023): the objective and what users watch.

DPO tunes a policy to prefer `chosen` over `rejected` answers without a reward model. Per
pair, with `logp` the sum of the answer tokens' log-probabilities (`loss.head_row_log_probs`)
under the policy being tuned and `ref` the same under the reference model:

    chosen_reward   = beta * (logp(chosen)   - ref(chosen))
    rejected_reward = beta * (logp(rejected) - ref(rejected))
    delta           = (logp(chosen) - ref(chosen)) - (logp(rejected) - ref(rejected))

  sigmoid  -log sigmoid(beta * delta) (DPO); with `label_smoothing` e, the conservative
           cDPO form -(1 - e) log sigmoid(beta * delta) - e log sigmoid(-beta * delta), for
           labels flipped with probability e (Mitchell 2023; TRL's `sigmoid` before 1.0)
  robust   (-(1 - e) log sigmoid(beta * delta) + e log sigmoid(-beta * delta)) / (1 - 2e),
           the unbiased loss under flipped labels (Chowdhury et al. 2024, rDPO; TRL `robust`)
  ipo      (delta_per_token - 1 / (2 beta))^2, IPO (Azar et al. 2023) with each log-ratio
           divided by its answer's token count, as TRL's `ipo` does (the IPO authors' form)
  sft      -logp(chosen) / tokens(chosen): supervised tuning on the chosen answers alone, the
           rejected ones unused (TRL's `sft` loss type). The control that tells what the
           preference term adds: same pairs, steps and schedule, and the same rewards and
           margins watched against the reference

  simpo    -(1 - e) log sigmoid(beta * (avg(chosen) - avg(rejected)) - gamma) - e log
           sigmoid(-(...)), SimPO (Meng et al. 2024): `avg` the policy's mean log-probability
           per answer token, no reference model (`REFERENCE_FREE`); rewards are beta * avg

With `rpo_alpha` a > 0 every loss adds a times the chosen answer's negative log-likelihood per
token, -logp(chosen) / tokens(chosen): RPO (Pang et al. 2024, "Iterative Reasoning Preference
Optimization"; TRL's `rpo_alpha`), which keeps DPO from lowering the chosen answers'
likelihood along with the rejected ones'. TRL 1.x writes it as a second loss type,
`loss_type=["sigmoid", "sft"]` with `loss_weights=[1, a]` (its `rpo_alpha` before 1.0), and
averages the NLL over all the batch's chosen tokens, the paper (and gemma_tune) per pair: the
two agree when the chosen answers are equally long.

These equal TRL's losses for the same log-probabilities: `DPOTrainer`'s, and for `simpo`
`CPOTrainer`'s (tests/dpo_parity_test.py).

The reference model is the policy before DPO training starts: the base model with the adapters
as loaded (`train.init_from` a supervised run, the two-step recipe Vertex AI and OpenAI
recommend) or as initialised (LoRA's and DoRA's initial adapters leave the base unchanged),
or all the weights as loaded for full fine-tuning. Its log-probabilities depend only on the
pair, so they are computed once, in one pass over the training and validation pairs before the
first step, and stored with each pair (two floats): no second model is kept in memory, for any
method, full fine-tuning included, and no step pays a second forward pass. The reference pass
must encode and truncate the pairs exactly as training does and run without dropout.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from gemma_tune.training import pair_batches

LOSS_TYPES = ("sigmoid", "robust", "ipo", "simpo", "sft")
# Losses that need no reference log-probabilities: the reference pass is skipped for them.
REFERENCE_FREE = frozenset({"simpo"})
# The losses that read each answer's token count.
PER_TOKEN = frozenset({"ipo", "simpo", "sft"})
# Losses without label smoothing.
UNSMOOTHED = frozenset({"ipo", "sft"})


def check_settings(
    beta: float,
    loss_type: str,
    label_smoothing: float,
    simpo_gamma: float = 0.5,
    rpo_alpha: float = 0.0,
) -> None:
    """Raises ValueError naming the setting when the DPO settings make no sense: an unknown
    loss type, beta <= 0, a label smoothing outside [0, 0.5) (or set with `ipo`, which has
    none), a negative SimPO margin or a negative RPO weight."""
    if loss_type not in LOSS_TYPES:
        raise ValueError(
            f"dpo loss {loss_type!r} is unknown; choose one of: {', '.join(LOSS_TYPES)}"
        )
    if not beta > 0:
        raise ValueError(f"dpo beta must be > 0, got {beta}")
    if not 0 <= label_smoothing < 0.5:
        raise ValueError(f"dpo label_smoothing must be in [0, 0.5), got {label_smoothing}")
    if loss_type in UNSMOOTHED and label_smoothing:
        raise ValueError(
            f"dpo label_smoothing applies to the sigmoid, robust and simpo losses, not {loss_type}"
        )
    if simpo_gamma < 0:
        raise ValueError(f"dpo simpo_gamma must be >= 0, got {simpo_gamma}")
    if rpo_alpha < 0:
        raise ValueError(f"dpo rpo_alpha must be >= 0, got {rpo_alpha}")


def _per_token(values, tokens, loss_type: str):
    """`values / tokens` (at least 1 token), checking the counts were given."""
    if tokens is None:
        raise ValueError(f"the {loss_type} loss needs chosen_tokens and rejected_tokens")
    return values / jnp.maximum(tokens, 1.0)


def _rewards(policy, reference, tokens, beta: float, loss_type: str):
    """One side's rewards: beta times the log-ratio to the reference, or for a
    `REFERENCE_FREE` loss (SimPO) beta times the mean log-probability per token."""
    if loss_type in REFERENCE_FREE:
        return beta * _per_token(policy, tokens, loss_type)
    return beta * (policy - reference)


def pair_losses(
    policy_chosen,
    policy_rejected,
    reference_chosen,
    reference_rejected,
    *,
    beta: float,
    loss_type: str = "sigmoid",
    label_smoothing: float = 0.0,
    chosen_tokens=None,
    rejected_tokens=None,
    simpo_gamma: float = 0.5,
    rpo_alpha: float = 0.0,
):
    """The DPO loss of each pair (`[N]`), from the answers' summed log-probabilities.

    Args:
      policy_chosen / policy_rejected: `[N]` log p(answer | prompt) under the policy.
      reference_chosen / reference_rejected: `[N]` the same under the reference (constants);
        None for a `REFERENCE_FREE` loss.
      beta: the strength of the pull towards the reference (TRL's `beta`; IPO's tau).
      loss_type: one of `LOSS_TYPES`.
      label_smoothing: the assumed share of flipped labels, for `sigmoid`, `robust`, `simpo`.
      chosen_tokens / rejected_tokens: `[N]` answer token counts, needed by `PER_TOKEN` losses.
      simpo_gamma: SimPO's target reward margin (TRL's `simpo_gamma`).
      rpo_alpha: the weight of the chosen answers' per-token negative log-likelihood added to
        each pair's loss (RPO; 0: plain DPO). Needs `chosen_tokens`.

    Returns:
      `[N]` float32 losses.
    """
    check_settings(beta, loss_type, label_smoothing, simpo_gamma, rpo_alpha)
    losses = _preference_losses(
        policy_chosen,
        policy_rejected,
        reference_chosen,
        reference_rejected,
        beta=beta,
        loss_type=loss_type,
        label_smoothing=label_smoothing,
        chosen_tokens=chosen_tokens,
        rejected_tokens=rejected_tokens,
        simpo_gamma=simpo_gamma,
    )
    if rpo_alpha:
        losses = losses - rpo_alpha * _per_token(policy_chosen, chosen_tokens, "rpo")
    return losses


def _preference_losses(
    policy_chosen,
    policy_rejected,
    reference_chosen,
    reference_rejected,
    *,
    beta,
    loss_type,
    label_smoothing,
    chosen_tokens,
    rejected_tokens,
    simpo_gamma,
):
    """`pair_losses` without the RPO term: the preference loss `loss_type` names."""
    if loss_type == "sft":
        return -_per_token(policy_chosen, chosen_tokens, loss_type)
    if loss_type in REFERENCE_FREE:
        delta = _per_token(policy_chosen, chosen_tokens, loss_type) - _per_token(
            policy_rejected, rejected_tokens, loss_type
        )
        delta = delta - simpo_gamma / beta
    else:
        chosen_ratio = policy_chosen - jax.lax.stop_gradient(reference_chosen)
        rejected_ratio = policy_rejected - jax.lax.stop_gradient(reference_rejected)
        delta = chosen_ratio - rejected_ratio
    if loss_type == "ipo":
        delta = _per_token(chosen_ratio, chosen_tokens, loss_type) - _per_token(
            rejected_ratio, rejected_tokens, loss_type
        )
        return (delta - 1.0 / (2.0 * beta)) ** 2
    agree = jax.nn.log_sigmoid(beta * delta)
    flipped = jax.nn.log_sigmoid(-beta * delta)
    if loss_type == "robust":
        return (-(1 - label_smoothing) * agree + label_smoothing * flipped) / (
            1 - 2 * label_smoothing
        )
    return -(1 - label_smoothing) * agree - label_smoothing * flipped


def metric_sums(
    policy_chosen,
    policy_rejected,
    reference_chosen,
    reference_rejected,
    *,
    beta: float,
    pair_weights=None,
    loss_type: str = "sigmoid",
    chosen_tokens=None,
    rejected_tokens=None,
):
    """Sums over pairs of what users watch (divide by `pairs` for TRL's means), as sums so
    that gradient accumulation and several devices add them exactly.

    Args:
      policy_* / reference_*: `[N]` as `pair_losses`.
      beta: as `pair_losses`.
      pair_weights: `[N]` 1 for a real pair, 0 for a padding pair of a fixed-shape batch
        (default: all 1).
      loss_type / chosen_tokens / rejected_tokens: as `pair_losses`; SimPO's rewards are
        per token and need no reference.

    Returns:
      A dict of float32 scalars: `rewards/chosen`, `rewards/rejected` (beta times the
      log-ratio to the reference; SimPO: beta times the mean log-probability per token),
      `rewards/margins` (their difference), `rewards/accuracies`
      (pairs whose chosen reward is the higher), `logps/chosen`, `logps/rejected` (the policy's
      summed answer log-probabilities), and `pairs` (the weight sum). None carries a gradient.
    """
    policy_chosen, policy_rejected, reference_chosen, reference_rejected = jax.lax.stop_gradient(
        (policy_chosen, policy_rejected, reference_chosen, reference_rejected)
    )
    weights = _weights(pair_weights, policy_chosen)
    chosen_rewards = _rewards(policy_chosen, reference_chosen, chosen_tokens, beta, loss_type)
    rejected_rewards = _rewards(
        policy_rejected, reference_rejected, rejected_tokens, beta, loss_type
    )
    won = (chosen_rewards > rejected_rewards).astype(jnp.float32)
    return {
        "rewards/chosen": jnp.sum(chosen_rewards * weights),
        "rewards/rejected": jnp.sum(rejected_rewards * weights),
        "rewards/margins": jnp.sum((chosen_rewards - rejected_rewards) * weights),
        "rewards/accuracies": jnp.sum(won * weights),
        "logps/chosen": jnp.sum(policy_chosen * weights),
        "logps/rejected": jnp.sum(policy_rejected * weights),
        "pairs": jnp.sum(weights),
    }


def _weights(pair_weights, like):
    """`pair_weights` as float32, or ones shaped like `like`."""
    if pair_weights is None:
        return jnp.ones(jnp.shape(like), jnp.float32)
    return jnp.asarray(pair_weights, jnp.float32)


def dpo_loss(
    policy_chosen,
    policy_rejected,
    reference_chosen,
    reference_rejected,
    *,
    beta: float,
    loss_type: str = "sigmoid",
    label_smoothing: float = 0.0,
    chosen_tokens=None,
    rejected_tokens=None,
    simpo_gamma: float = 0.5,
    rpo_alpha: float = 0.0,
    pair_weights=None,
):
    """The mean DPO loss over the pairs and the mean of each metric, as TRL logs them.

    Arguments as `pair_losses`, and `pair_weights` as `metric_sums` (padding pairs count in
    neither the loss nor the metrics). Returns `(loss, metrics)`, `metrics` keyed as
    `metric_sums` without `pairs`.
    """
    sums = pair_sums(
        policy_chosen,
        policy_rejected,
        reference_chosen,
        reference_rejected,
        beta=beta,
        loss_type=loss_type,
        label_smoothing=label_smoothing,
        simpo_gamma=simpo_gamma,
        rpo_alpha=rpo_alpha,
        chosen_tokens=chosen_tokens,
        rejected_tokens=rejected_tokens,
        pair_weights=pair_weights,
    )
    pairs = jnp.maximum(sums.pop("pairs"), 1.0)
    loss_sum = sums.pop("loss")
    return loss_sum / pairs, {name: total / pairs for name, total in sums.items()}


def batch_sums(
    answer_log_probs,
    batch,
    *,
    beta: float,
    loss_type: str = "sigmoid",
    label_smoothing: float = 0.0,
    simpo_gamma: float = 0.5,
    rpo_alpha: float = 0.0,
):
    """The DPO loss sum and metric sums of one pair batch (`pair_batches.pair_batch`, or a
    packed `pair_packing.packed_batch`), from the policy's answer log-probabilities
    (`loss.head_row_log_probs` on its rows: per row, or per segment of packed rows): what a
    training or validation step adds up, dividing by `pairs` at the end. A `REFERENCE_FREE`
    loss needs no `reference_*` in the batch.

    Returns:
      `metric_sums`' dict plus `loss`, the sum of the real pairs' losses.
    """
    policy_chosen, policy_rejected = pair_batches.pair_values(answer_log_probs, batch)
    chosen_tokens, rejected_tokens = pair_batches.pair_tokens(batch)
    return pair_sums(
        policy_chosen,
        policy_rejected,
        batch.get("reference_chosen"),
        batch.get("reference_rejected"),
        beta=beta,
        loss_type=loss_type,
        label_smoothing=label_smoothing,
        simpo_gamma=simpo_gamma,
        rpo_alpha=rpo_alpha,
        chosen_tokens=chosen_tokens,
        rejected_tokens=rejected_tokens,
        pair_weights=batch["pair_weights"],
    )


def pair_sums(
    policy_chosen,
    policy_rejected,
    reference_chosen,
    reference_rejected,
    *,
    beta: float,
    loss_type: str = "sigmoid",
    label_smoothing: float = 0.0,
    simpo_gamma: float = 0.5,
    rpo_alpha: float = 0.0,
    chosen_tokens=None,
    rejected_tokens=None,
    pair_weights=None,
):
    """`metric_sums`' dict plus `loss`, the weighted sum of the pairs' losses: `batch_sums`
    from per-pair values (arguments as `pair_losses` and `metric_sums`)."""
    losses = pair_losses(
        policy_chosen,
        policy_rejected,
        reference_chosen,
        reference_rejected,
        beta=beta,
        loss_type=loss_type,
        label_smoothing=label_smoothing,
        chosen_tokens=chosen_tokens,
        rejected_tokens=rejected_tokens,
        simpo_gamma=simpo_gamma,
        rpo_alpha=rpo_alpha,
    )
    sums = metric_sums(
        policy_chosen,
        policy_rejected,
        reference_chosen,
        reference_rejected,
        beta=beta,
        pair_weights=pair_weights,
        loss_type=loss_type,
        chosen_tokens=chosen_tokens,
        rejected_tokens=rejected_tokens,
    )
    sums["loss"] = jnp.sum(losses * _weights(pair_weights, losses))
    return sums
