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

These equal TRL's `DPOTrainer` losses for the same log-probabilities (tests/dpo_parity_test.py).

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

LOSS_TYPES = ("sigmoid", "robust", "ipo")


def check_settings(beta: float, loss_type: str, label_smoothing: float) -> None:
    """Raises ValueError naming the setting when the DPO settings make no sense: an unknown
    loss type, beta <= 0, or a label smoothing outside [0, 0.5) (or set with `ipo`, which has
    none)."""
    if loss_type not in LOSS_TYPES:
        raise ValueError(
            f"dpo loss {loss_type!r} is unknown; choose one of: {', '.join(LOSS_TYPES)}"
        )
    if not beta > 0:
        raise ValueError(f"dpo beta must be > 0, got {beta}")
    if not 0 <= label_smoothing < 0.5:
        raise ValueError(f"dpo label_smoothing must be in [0, 0.5), got {label_smoothing}")
    if loss_type == "ipo" and label_smoothing:
        raise ValueError("dpo label_smoothing applies to the sigmoid and robust losses, not ipo")


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
):
    """The DPO loss of each pair (`[N]`), from the answers' summed log-probabilities.

    Args:
      policy_chosen / policy_rejected: `[N]` log p(answer | prompt) under the policy.
      reference_chosen / reference_rejected: `[N]` the same under the reference (constants).
      beta: the strength of the pull towards the reference (TRL's `beta`; IPO's tau).
      loss_type: one of `LOSS_TYPES`.
      label_smoothing: the assumed share of flipped labels, for `sigmoid` and `robust`.
      chosen_tokens / rejected_tokens: `[N]` answer token counts, needed by `ipo`.

    Returns:
      `[N]` float32 losses.
    """
    check_settings(beta, loss_type, label_smoothing)
    chosen_ratio = policy_chosen - jax.lax.stop_gradient(reference_chosen)
    rejected_ratio = policy_rejected - jax.lax.stop_gradient(reference_rejected)
    if loss_type == "ipo":
        if chosen_tokens is None or rejected_tokens is None:
            raise ValueError("the ipo loss needs chosen_tokens and rejected_tokens")
        delta = chosen_ratio / jnp.maximum(chosen_tokens, 1.0) - rejected_ratio / jnp.maximum(
            rejected_tokens, 1.0
        )
        return (delta - 1.0 / (2.0 * beta)) ** 2
    agree = jax.nn.log_sigmoid(beta * (chosen_ratio - rejected_ratio))
    flipped = jax.nn.log_sigmoid(-beta * (chosen_ratio - rejected_ratio))
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
):
    """Sums over pairs of what users watch (divide by `pairs` for TRL's means), as sums so
    that gradient accumulation and several devices add them exactly.

    Args:
      policy_* / reference_*: `[N]` as `pair_losses`.
      beta: as `pair_losses`.
      pair_weights: `[N]` 1 for a real pair, 0 for a padding pair of a fixed-shape batch
        (default: all 1).

    Returns:
      A dict of float32 scalars: `rewards/chosen`, `rewards/rejected` (beta times the
      log-ratio to the reference), `rewards/margins` (their difference), `rewards/accuracies`
      (pairs whose chosen reward is the higher), `logps/chosen`, `logps/rejected` (the policy's
      summed answer log-probabilities), and `pairs` (the weight sum). None carries a gradient.
    """
    values = jax.lax.stop_gradient(
        (policy_chosen, policy_rejected, reference_chosen, reference_rejected)
    )
    policy_chosen, policy_rejected, reference_chosen, reference_rejected = values
    weights = _weights(pair_weights, policy_chosen)
    chosen_rewards = beta * (policy_chosen - reference_chosen)
    rejected_rewards = beta * (policy_rejected - reference_rejected)
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
    pair_weights=None,
):
    """The mean DPO loss over the pairs and the mean of each metric, as TRL logs them.

    Arguments as `pair_losses`, and `pair_weights` as `metric_sums` (padding pairs count in
    neither the loss nor the metrics). Returns `(loss, metrics)`, `metrics` keyed as
    `metric_sums` without `pairs`.
    """
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
    )
    sums = metric_sums(
        policy_chosen,
        policy_rejected,
        reference_chosen,
        reference_rejected,
        beta=beta,
        pair_weights=pair_weights,
    )
    pairs = jnp.maximum(sums.pop("pairs"), 1.0)
    weights = _weights(pair_weights, losses)
    return jnp.sum(losses * weights) / pairs, {name: total / pairs for name, total in sums.items()}


def batch_sums(
    row_log_probs,
    batch,
    *,
    beta: float,
    loss_type: str = "sigmoid",
    label_smoothing: float = 0.0,
):
    """The DPO loss sum and metric sums of one pair batch (`pair_batches.pair_batch`), from
    the policy's per-row answer log-probabilities (`loss.head_row_log_probs` on its rows):
    what a training or validation step adds up, dividing by `pairs` at the end.

    Returns:
      `metric_sums`' dict plus `loss`, the sum of the real pairs' losses.
    """
    policy_chosen, policy_rejected = pair_batches.split_rows(row_log_probs)
    chosen_tokens, rejected_tokens = pair_batches.split_rows(
        jnp.sum(batch["target_weights"], axis=-1)
    )
    losses = pair_losses(
        policy_chosen,
        policy_rejected,
        batch["reference_chosen"],
        batch["reference_rejected"],
        beta=beta,
        loss_type=loss_type,
        label_smoothing=label_smoothing,
        chosen_tokens=chosen_tokens,
        rejected_tokens=rejected_tokens,
    )
    sums = metric_sums(
        policy_chosen,
        policy_rejected,
        batch["reference_chosen"],
        batch["reference_rejected"],
        beta=beta,
        pair_weights=batch["pair_weights"],
    )
    sums["loss"] = jnp.sum(losses * batch["pair_weights"])
    return sums
