"""Pair batches: chosen rows then rejected rows, filler pairs weighted out, the reference
log-probabilities beside them; `dpo.batch_sums` on a batch equals `dpo.dpo_loss` on its pairs."""

import numpy as np
import pytest

from gemma_tune.data import example as ex
from gemma_tune.data import preference
from gemma_tune.training import dpo, pair_batches, pair_encoding


def _encoded(chat_template, count):
    pairs = [
        preference.PreferencePair((ex.Turn(ex.USER, f"q{i}"),), f"yes {i}", "no")
        for i in range(count)
    ]
    return pair_encoding.encode_pairs(chat_template, pairs, 32)[0]


def test_layout_fillers_and_reference(chat_template):
    encoded = _encoded(chat_template, 3)
    reference = (np.array([-1.0, -2.0, -3.0]), np.array([-4.0, -5.0, -6.0]))
    batch = pair_batches.pair_batch(encoded, 32, chat_template.pad_id, 4, reference=reference)
    assert batch["token_ids"].shape == batch["target_weights"].shape == (8, 32)
    for index, pair in enumerate(encoded):
        n = len(pair.chosen.token_ids) - 1
        np.testing.assert_array_equal(batch["token_ids"][index, :n], pair.chosen.token_ids[:-1])
        n = len(pair.rejected.token_ids) - 1
        np.testing.assert_array_equal(
            batch["token_ids"][4 + index, :n], pair.rejected.token_ids[:-1]
        )
    assert batch["target_weights"][[3, 7]].sum() == 0  # the filler pair's two rows
    np.testing.assert_array_equal(batch["pair_weights"], [1, 1, 1, 0])
    np.testing.assert_array_equal(batch["reference_chosen"], [-1, -2, -3, 0])
    np.testing.assert_array_equal(batch["reference_rejected"], [-4, -5, -6, 0])
    chosen, rejected = pair_batches.split_rows(np.arange(8))
    np.testing.assert_array_equal(chosen, [0, 1, 2, 3])
    np.testing.assert_array_equal(rejected, [4, 5, 6, 7])
    with pytest.raises(ValueError, match="5 pairs do not fit a batch of 4"):
        pair_batches.pair_batch(_encoded(chat_template, 5), 32, chat_template.pad_id, 4)


@pytest.mark.parametrize("loss_type", dpo.LOSS_TYPES)
def test_batch_sums_equal_the_loss_of_its_real_pairs(chat_template, loss_type):
    encoded = _encoded(chat_template, 3)
    reference = (np.array([-1.0, -2.0, -3.0]), np.array([-4.0, -5.0, -6.0]))
    batch = pair_batches.pair_batch(encoded, 32, chat_template.pad_id, 4, reference=reference)
    rows = np.array([-0.5, -2.5, -2.0, 0.0, -4.5, -4.0, -7.0, 0.0], np.float32)
    if loss_type in dpo.REFERENCE_FREE:  # The reference pass is skipped: none in the batch.
        batch = {k: v for k, v in batch.items() if not k.startswith("reference_")}
        reference = (None, None)
    settings = {"beta": 0.3, "loss_type": loss_type}
    if loss_type not in dpo.UNSMOOTHED:
        settings["label_smoothing"] = 0.1
    sums = dpo.batch_sums(rows, batch, **settings)
    tokens = batch["target_weights"].sum(axis=1)
    loss, metrics = dpo.dpo_loss(
        rows[:3],
        rows[4:7],
        *reference,
        chosen_tokens=tokens[:3],
        rejected_tokens=tokens[4:7],
        **settings,
    )
    assert float(sums["pairs"]) == 3
    np.testing.assert_allclose(sums["loss"] / 3, loss, rtol=1e-6)
    for name, value in metrics.items():
        np.testing.assert_allclose(sums[name] / 3, value, rtol=1e-6, err_msg=name)


def test_reference_pass_gives_each_pair_its_two_values_in_order(chat_template):
    encoded = _encoded(chat_template, 5)
    calls = []

    def row_log_probs(batch):  # a stand-in model: minus the answer's token count
        calls.append(batch["token_ids"].shape)
        return -batch["target_weights"].sum(axis=1)

    chosen, rejected = pair_batches.reference_log_probs(
        encoded, row_log_probs, sequence_length=32, pad_id=chat_template.pad_id, pairs_per_batch=2
    )
    assert calls == [(4, 32)] * 3  # 5 pairs in batches of 2, the last with a filler
    np.testing.assert_array_equal(chosen, [-p.chosen.target_weights.sum() for p in encoded])
    np.testing.assert_array_equal(rejected, [-p.rejected.target_weights.sum() for p in encoded])
    assert chosen.dtype == np.float32
