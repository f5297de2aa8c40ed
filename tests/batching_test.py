"""Batches have fixed shapes (one, or one per length bucket); filler rows carry no weight;
epochs are seeded permutations."""

import numpy as np

from gemma_tune.training import batching, template


def _encoded(n):
    ids = np.arange(2, 2 + n, dtype=np.int32)
    return template.Encoded(ids, np.ones(n, np.float32), n)


def test_pack_shifts_targets_and_masks_padding():
    batch = batching.pack([_encoded(4)], sequence_length=5, pad_id=0, rows=1)
    np.testing.assert_array_equal(batch["token_ids"][0], [2, 3, 4, 5, 0])
    np.testing.assert_array_equal(batch["target_ids"][0], [3, 4, 5, 0, 0])
    np.testing.assert_array_equal(batch["padding_mask"][0], [1, 1, 1, 1, 0])
    np.testing.assert_array_equal(batch["target_weights"][0], [1, 1, 1, 0, 0])


def test_last_partial_step_is_filled_with_weightless_rows():
    encoded = [_encoded(3) for _ in range(3)]
    order = batching.epoch_order(3, seed=0, epoch=0)
    batch = batching.train_batch(encoded, order, 1, 2, 1, sequence_length=4, pad_id=0)
    assert batch["token_ids"].shape == (1, 2, 4)
    assert batch["target_weights"][0, 1].sum() == 0
    assert batch["target_weights"][0, 0].sum() > 0


def test_epoch_order_is_seeded():
    a = batching.epoch_order(50, seed=1, epoch=0)
    assert sorted(a.tolist()) == list(range(50))
    np.testing.assert_array_equal(a, batching.epoch_order(50, seed=1, epoch=0))
    assert not np.array_equal(a, batching.epoch_order(50, seed=1, epoch=1))
    assert not np.array_equal(a, batching.epoch_order(50, seed=2, epoch=0))


def test_length_buckets_pad_to_the_longest_row_rounded_up():
    rows = [_encoded(n) for n in (10, 30, 5, 7)]
    assert batching.bucket_width(rows[:1], 64, 16) == 16  # 9 inputs -> 16
    assert batching.bucket_width(rows[:2], 64, 16) == 32  # 29 inputs -> 32
    assert batching.bucket_width(rows[2:], 64, 16) == 16
    assert batching.bucket_width(rows, 20, 16) == 20  # capped at sequence_length
    assert batching.bucket_width(rows, 64, 0) == 64  # buckets off
    order = np.arange(4)
    batch = batching.train_batch(rows, order, 1, 2, 1, 64, 0, length_bucket=16)
    assert batch["token_ids"].shape == (1, 2, 16)
    assert batch["target_weights"].sum() == 4 + 6  # every target of rows 2 and 3 kept
