"""PairScorer gives each pair's answer log-probabilities as the full logits of the CausalLM
give them, before and after its weights change (slow); preference_accuracy counts as
documented."""

import numpy as np
import pytest
from export_helpers import base_model, keras_logits

from gemma_tune import model
from gemma_tune.data import example as ex
from gemma_tune.data import preference
from gemma_tune.evaluation import preference_scores
from gemma_tune.training import loss, pair_batches, pair_encoding, template

LENGTH = 48


def _expected(loaded, encoded):
    """Log-probabilities from the CausalLM's full logits, one pair batch for all pairs."""
    pad_id = template.ChatTemplate(loaded.tokenizer).pad_id
    batch = pair_batches.pair_batch(encoded, LENGTH, pad_id, len(encoded))
    logits = keras_logits(loaded, batch["token_ids"])
    rows = loss.row_log_probs(logits, batch["target_ids"], batch["target_weights"])
    return pair_batches.split_rows(np.asarray(rows))


@pytest.mark.slow  # ~13 s on 2 CPU cores: a tiny model, compiled twice
def test_scores_equal_the_full_logits_and_follow_reloaded_weights():
    loaded = base_model("gemma2")  # soft-capped logits
    chat_template = template.ChatTemplate(loaded.tokenizer)
    pairs = [
        preference.PreferencePair((ex.Turn(ex.USER, f"Tell me about {word}."),), "yes", "no, no")
        for word in ("sky", "sea", "stone")
    ]
    encoded, _ = pair_encoding.encode_pairs(chat_template, pairs, LENGTH)
    scorer = preference_scores.PairScorer(loaded.causal_lm, chat_template.pad_id, LENGTH, 2)
    for got, want in zip(scorer(encoded), _expected(loaded, encoded), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    before = scorer(encoded)
    model.enable_lora(loaded, rank=2)
    for variable in loaded.causal_lm.backbone.trainable_variables:
        variable.assign(np.full(variable.shape, 0.05, np.float32))
    scorer.reload()
    after = scorer(encoded)
    assert not np.allclose(after[0], before[0])
    for got, want in zip(after, _expected(loaded, encoded), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_preference_accuracy():
    chosen, rejected = np.array([-1.0, -5.0, -2.0, -3.0]), np.array([-2.0, -4.0, -2.0, -9.0])
    reference = (np.array([-1.5, -6.0, -1.0, -3.0]), np.array([-2.0, -4.0, -3.0, -8.0]))
    scores = preference_scores.preference_accuracy(chosen, rejected, reference)
    assert scores["likelihood_accuracy"] == 0.5  # a tie counts as wrong
    assert scores["reward_accuracy"] == 0.75  # margins 0.5, 1.0, -2.0, 1.0
    assert scores["log_ratio_margin"] == pytest.approx(0.125)
    assert preference_scores.preference_accuracy(chosen, rejected) == {"likelihood_accuracy": 0.5}
    assert preference_scores.preference_accuracy(np.zeros(0), np.zeros(0)) == {}
