"""DPO on a tiny Gemma with LoRA, from the reference pass to the metrics: the pieces a DPO
step will be made of (pair encoding, pair batches, per-row log-probabilities from the fused
head, the objective) move the model towards the chosen answers, on held-out prompts too.
Slow: `python -m pytest -m slow tests/dpo_tiny_run_test.py -s` prints the held-out metrics
before and after."""

import jax
import jax.numpy as jnp
import pytest
from export_helpers import base_model

from gemma_tune import model
from gemma_tune.data import example as ex
from gemma_tune.data import preference
from gemma_tune.training import dpo, loss, pair_batches, pair_encoding, template

SEQUENCE_LENGTH, PAIRS = 48, 8
WORDS = "red green blue sky tree river stone cloud bird lamp door road".split()


def _pairs(words):
    """Prompts about each word; the preferred answer is always the short one."""
    return [
        preference.PreferencePair(
            (ex.Turn(ex.USER, f"Tell me about the {word}."),), "yes", "no no no"
        )
        for word in words
    ]


def _batch(chat_template, pairs, reference=None):
    encoded, cut_away = pair_encoding.encode_pairs(chat_template, pairs, SEQUENCE_LENGTH)
    assert cut_away == 0
    return pair_batches.pair_batch(
        encoded, SEQUENCE_LENGTH, chat_template.pad_id, PAIRS, reference=reference
    )


@pytest.mark.slow  # ~30 s on 2 CPU cores, mostly compiling the tiny model's step
@pytest.mark.parametrize("loss_type", ["sigmoid", "ipo", "simpo"])
def test_dpo_steps_raise_reward_accuracy_and_margin_on_held_out_pairs(loss_type):
    loaded = base_model("gemma3")
    model.enable_lora(loaded, rank=4)
    backbone = loaded.causal_lm.backbone
    chat_template = template.ChatTemplate(loaded.tokenizer)
    trainable = [jnp.array(v.value) for v in backbone.trainable_variables]
    frozen = [v.value for v in backbone.non_trainable_variables]
    embedding_index = [id(v) for v in backbone.non_trainable_variables].index(
        id(backbone.token_embedding.embeddings)
    )

    def row_log_probs(trainable, batch):
        inputs = loaded.family.backbone_inputs(batch["token_ids"], batch["padding_mask"])
        hidden, _ = backbone.stateless_call(trainable, frozen, inputs, training=False)
        return loss.head_row_log_probs(
            hidden,
            frozen[embedding_index],
            batch["target_ids"],
            batch["target_weights"],
            soft_cap=backbone.token_embedding.logit_soft_cap,
            chunk_size=64,
        )

    def with_reference(pairs):
        """The reference pass: the model before training, once per pair."""
        encoded, _ = pair_encoding.encode_pairs(chat_template, pairs, SEQUENCE_LENGTH)
        reference = pair_batches.reference_log_probs(
            encoded,
            lambda batch: row_log_probs(trainable, batch),
            sequence_length=SEQUENCE_LENGTH,
            pad_id=chat_template.pad_id,
            pairs_per_batch=PAIRS,
        )
        return _batch(chat_template, pairs, reference=reference)

    train, held_out = with_reference(_pairs(WORDS[:PAIRS])), with_reference(_pairs(WORDS[PAIRS:]))
    # SimPO's beta scales per-token averages, an answer's length smaller than DPO's sums.
    settings = {"beta": 2.5 if loss_type == "simpo" else 0.5, "loss_type": loss_type}

    @jax.jit
    def metrics(trainable, batch):
        sums = dpo.batch_sums(row_log_probs(trainable, batch), batch, **settings)
        return {name: value / sums["pairs"] for name, value in sums.items()}

    @jax.jit
    def step(trainable, batch):
        def objective(trainable):
            sums = dpo.batch_sums(row_log_probs(trainable, batch), batch, **settings)
            return sums["loss"] / sums["pairs"]

        grads = jax.grad(objective)(trainable)
        return [w - 0.05 * g for w, g in zip(trainable, grads, strict=True)]

    before, before_train = metrics(trainable, held_out), metrics(trainable, train)
    if loss_type not in dpo.REFERENCE_FREE:  # The policy is the reference: no margin yet.
        assert float(before["rewards/margins"]) == pytest.approx(0, abs=1e-5)
    for _ in range(12):
        trainable = step(trainable, train)
    after, after_train = metrics(trainable, held_out), metrics(trainable, train)
    print(loss_type, "held out before:", before, "after:", after)
    assert float(after_train["loss"]) < float(before_train["loss"])
    assert float(after_train["rewards/accuracies"]) == 1.0
    assert float(after["rewards/accuracies"]) == 1.0  # prompts never trained on
    assert float(after["rewards/margins"]) > float(before["rewards/margins"]) + 0.1
    assert float(after["rewards/chosen"]) > float(after["rewards/rejected"])
