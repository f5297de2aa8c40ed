"""Packed pair batches (`train.packing` with DPO): rows of whole pairs, each answer its own
segment; on a tiny Gemma the per-pair log-probabilities, the loss, the metrics and the gradient
equal those of unpacked pair batches, and the step-0 validation taken from the reference scores
equals its recomputation."""

import types

import jax
import keras
import numpy as np
import pytest
from export_helpers import tuned_model

from gemma_tune.data import example as ex
from gemma_tune.data import preference
from gemma_tune.training import (
    batching,
    dpo,
    objectives,
    pair_batches,
    pair_encoding,
    pair_packing,
    template,
    trainer,
)

LENGTH = 64


def _pairs(count):
    """Pairs of varied lengths: prompts of 1 to 6 words, answers of 1 to 4 words."""
    words = "red green blue sky tree river stone cloud bird lamp".split()
    return [
        preference.PreferencePair(
            (ex.Turn(ex.USER, " ".join(words[: 1 + i % 6])),),
            " ".join(words[i % 3 : i % 3 + 1 + i % 4]),
            words[(i + 5) % 10],
        )
        for i in range(count)
    ]


def _encoded(chat_template, count):
    encoded, cut_away = pair_encoding.encode_pairs(chat_template, _pairs(count), LENGTH)
    assert cut_away == 0
    return encoded


def test_rows_hold_whole_pairs_each_side_its_own_segment(chat_template):
    encoded = _encoded(chat_template, 11)
    rows = pair_packing.pack_pairs(encoded, LENGTH)
    width = pair_packing.row_width(LENGTH)
    assert len(rows) < len(encoded) and max(len(row.pair_ids) for row in rows) >= 2
    assert sorted(i for row in rows for i in row.pair_ids) == list(range(11))
    for row in rows:
        assert len(row.encoded.token_ids) <= width + 1
        sides = [side for i in row.pair_ids for side in (encoded[i].chosen, encoded[i].rejected)]
        np.testing.assert_array_equal(
            row.encoded.token_ids, np.concatenate([side.token_ids for side in sides])
        )
        for number, side in enumerate(sides, 1):
            in_segment = row.encoded.segment_ids == number
            np.testing.assert_array_equal(row.encoded.token_ids[in_segment], side.token_ids)
            assert row.answer_tokens[number - 1] == side.target_weights.sum() > 0

    segments = pair_packing.segments_per_row(rows)
    reference = (-np.arange(11.0), -100 - np.arange(11.0))
    batch = pair_packing.packed_batch(rows[:2], width, chat_template.pad_id, 3, segments, reference)
    slots = segments // 2
    assert batch["token_ids"].shape == batch["segment_ids"].shape == (3, width)
    assert batch["segment_tokens"].shape == (3, segments)
    assert batch["pair_weights"].shape == (3 * slots,)
    for r, row in enumerate(rows[:2]):
        for j, pair_id in enumerate(row.pair_ids):
            slot = r * slots + j
            assert batch["pair_ids"][slot] == pair_id and batch["pair_weights"][slot] == 1
            assert batch["reference_chosen"][slot] == -pair_id
            assert batch["reference_rejected"][slot] == -100 - pair_id
        assert batch["pair_weights"][r * slots + len(row.pair_ids) : (r + 1) * slots].sum() == 0
    assert batch["pair_weights"][2 * slots :].sum() == 0  # the filler row
    chosen_tokens, rejected_tokens = pair_batches.pair_tokens(batch)
    for slot in np.flatnonzero(batch["pair_weights"]):
        pair = encoded[batch["pair_ids"][slot]]
        assert chosen_tokens[slot] == pair.chosen.target_weights.sum()
        assert rejected_tokens[slot] == pair.rejected.target_weights.sum()
    with pytest.raises(ValueError, match="4 packed rows do not fit a batch of 3"):
        pair_packing.packed_batch(rows[:4], width, chat_template.pad_id, 3, segments)


def test_a_row_longer_than_the_encoding_is_refused(chat_template):
    encoded = _encoded(chat_template, 2)
    with pytest.raises(ValueError, match=r"pair 0 has a row of \d+ ids, more than"):
        pair_packing.pack_pairs(encoded, 4)


@pytest.mark.parametrize("loss_type", ["sigmoid", "ipo", "simpo"])
def test_batch_sums_pair_each_chosen_with_its_rejected_in_either_layout(chat_template, loss_type):
    """The same answers' log-probabilities laid out per row and per packed segment give the
    same loss, metrics and gradient with respect to each answer's log-probability."""
    encoded = _encoded(chat_template, 7)
    rng = np.random.default_rng(3)
    logps = (-rng.uniform(1, 20, 7), -rng.uniform(1, 20, 7))  # per pair: chosen, rejected
    reference = (logps[0] + rng.normal(0, 1, 7), logps[1] + rng.normal(0, 1, 7))
    pad_id = chat_template.pad_id
    unpacked = pair_batches.pair_batch(encoded, LENGTH, pad_id, 8, reference)
    row_values = np.zeros(16, np.float32)
    row_values[:7], row_values[8:15] = logps
    rows = pair_packing.pack_pairs(encoded, LENGTH)
    segments = pair_packing.segments_per_row(rows)
    width = pair_packing.row_width(LENGTH)
    packed = pair_packing.packed_batch(rows, width, pad_id, len(rows), segments, reference)
    segment_values = np.zeros((len(rows), segments), np.float32)
    for r, row in enumerate(rows):
        for j, pair_id in enumerate(row.pair_ids):
            segment_values[r, 2 * j : 2 * j + 2] = logps[0][pair_id], logps[1][pair_id]
    settings = {"beta": 0.4, "loss_type": loss_type}

    def loss_sum(values, batch):
        return dpo.batch_sums(values, batch, **settings)["loss"]

    unpacked_sums = dpo.batch_sums(row_values, unpacked, **settings)
    packed_sums = dpo.batch_sums(segment_values, packed, **settings)
    assert float(packed_sums["pairs"]) == float(unpacked_sums["pairs"]) == 7
    for name, value in unpacked_sums.items():
        np.testing.assert_allclose(packed_sums[name], value, rtol=1e-6, err_msg=name)
    row_grad = np.asarray(jax.grad(loss_sum)(row_values, unpacked))
    segment_grad = np.asarray(jax.grad(loss_sum)(segment_values, packed))
    for r, row in enumerate(rows):
        for j, pair_id in enumerate(row.pair_ids):
            np.testing.assert_allclose(
                segment_grad[r, 2 * j : 2 * j + 2],
                row_grad[[pair_id, 8 + pair_id]],
                rtol=1e-5,
            )
    assert np.abs(row_grad).max() > 0


def _trainer(loaded, objective, data):
    return trainer.Trainer(
        loaded.causal_lm,
        keras.optimizers.SGD(learning_rate=1.0),
        max_targets_per_row=batching.max_targets_per_row(objective.rows(data)),
        objective=objective,
    )


def _one_step(objective, tuners, layouts, reference, pad_id):
    """Each layout's metrics and weight update after one SGD step (learning rate 1: minus the
    gradient per pair) over all the pairs, with `reference`."""
    metrics, updates = [], []
    for data, tuner in zip(layouts, tuners, strict=True):
        data.reference_chosen, data.reference_rejected = reference
        before = [np.asarray(value) for value in tuner.trainable]
        settings = types.SimpleNamespace(batch_size=len(data), grad_accum_steps=1, length_bucket=8)
        batch = objective.train_batch(data, np.arange(len(data)), 0, settings, LENGTH, pad_id)
        metrics.append(tuner.train_step(batch))
        updates.append([np.asarray(a) - b for a, b in zip(tuner.trainable, before, strict=True)])
    return metrics, updates


@pytest.mark.slow  # 106 s on 2 CPU cores shared with other jobs: eight tiny-model programs
def test_packed_batches_give_the_unpacked_log_probs_loss_and_gradient():
    loaded = tuned_model("gemma3")
    chat_template = template.ChatTemplate(loaded.tokenizer)
    pad_id = chat_template.pad_id
    encoded = _encoded(chat_template, 10)
    rng = np.random.default_rng(0)
    for loss_type in ("sigmoid", "ipo"):
        objective = objectives.Preference(0.5, loss_type, 0.0, 0.5)
        layouts = (
            objectives.ScoredPairs(encoded),
            objectives.ScoredPairs(encoded, packed=pair_packing.pack_pairs(encoded, LENGTH)),
        )
        assert len(layouts[1]) < len(layouts[0])
        tuners = [_trainer(loaded, objective, data) for data in layouts]
        if loss_type == "sigmoid":
            scores = _reference_and_step_zero(objective, tuners, layouts, pad_id, len(encoded))
        # References that differ from the policy, so that the rewards are not zero.
        reference = [scores[side] + rng.normal(0, 1.0, len(encoded)) for side in (0, 1)]
        metrics, updates = _one_step(objective, tuners, layouts, reference, pad_id)
        assert metrics[0]["pairs"] == metrics[1]["pairs"] == len(encoded)
        for name, value in metrics[0].items():
            np.testing.assert_allclose(metrics[1][name], value, rtol=1e-4, atol=1e-5, err_msg=name)
        assert metrics[0]["rewards/margins"] != pytest.approx(0, abs=1e-3)
        for unpacked_update, packed_update in zip(*updates, strict=True):
            scale = np.abs(unpacked_update).max()
            assert scale > 0
            np.testing.assert_allclose(packed_update, unpacked_update, atol=1e-4 * scale)


def _reference_and_step_zero(objective, tuners, layouts, pad_id, count):
    """The reference pass by pair id in both layouts (equal), and the step-0 validation from
    its scores (equal to the validation recomputed); returns the unpacked scores."""
    scores = [
        pair_batches.scatter_by_pair(
            objective.eval_batches(data, 4, LENGTH, pad_id), tuner.pair_log_probs, count
        )
        for data, tuner in zip(layouts, tuners, strict=True)
    ]
    for side in (0, 1):
        np.testing.assert_allclose(scores[1][side], scores[0][side], rtol=1e-5, atol=1e-4)
    assert np.all(scores[0][0] < 0) and not np.allclose(scores[0][0], scores[0][1])
    for data, tuner, (chosen, rejected) in zip(layouts, tuners, scores, strict=True):
        data.reference_chosen, data.reference_rejected = chosen, rejected
        recomputed = tuner.evaluate(objective.eval_batches(data, 4, LENGTH, pad_id, limit=2))
        known = objective.reference_validation(data, 4, LENGTH, pad_id, limit=2)
        assert known.keys() == recomputed.keys()
        for name, value in recomputed.items():
            np.testing.assert_allclose(known[name], value, atol=1e-5, err_msg=name)
        assert known["rewards/margins"] == 0 and known["pairs"] == recomputed["pairs"] > 4
    return scores[0]
