"""Batches from encoded examples in a few fixed shapes, so the compiled train step seldom
retraces.

Every batch is `[accumulation_steps, batch_size, L]`. With `train.length_bucket = b > 0`, L is
the batch's longest row rounded up to a multiple of b (at most `sequence_length`), so short
examples do not pay for padding up to the full length: one compiled step per bucket width
(`sequence_length / b` of them at most). With b = 0 every batch is `sequence_length` wide. A
short last batch is filled with empty rows whose targets weigh nothing, so no example is dropped.
A batch where some example has images also carries their pixels and placeholder positions
(`model.vision.batch_arrays`).
"""

from __future__ import annotations

import numpy as np

from gemma_tune.model import vision
from gemma_tune.training import template


def pack(
    encoded: list[template.Encoded], sequence_length: int, pad_id: int, rows: int
) -> dict[str, np.ndarray]:
    """Pads `encoded` examples into one `[rows, sequence_length]` batch of model inputs.

    Returns:
      A dict with `token_ids` and `padding_mask` (the model's inputs, positions 0..L-1),
      `target_ids` (the next token at each position) and `target_weights` (its loss weight;
      zero on padding, on prompt tokens unless trained on, and on filler rows); with packed
      rows (`packing`) also `segment_ids` of the inputs (0 on padding); when some example has
      images, also `images`, `vision_indices` and `vision_mask` (`model.vision`).
    """
    width = sequence_length + 1
    token_ids = np.full((rows, width), pad_id, np.int32)
    weights = np.zeros((rows, width), np.float32)
    mask = np.zeros((rows, width), bool)
    packed = any(item.segment_ids is not None for item in encoded)
    segments = np.zeros((rows, width), np.int32) if packed else None
    for row, item in enumerate(encoded):
        n = len(item.token_ids)
        token_ids[row, :n] = item.token_ids
        weights[row, :n] = item.target_weights
        mask[row, :n] = True
        if packed:
            segments[row, :n] = 1 if item.segment_ids is None else item.segment_ids
    batch = {
        "token_ids": token_ids[:, :-1],
        "padding_mask": mask[:, :-1],
        "target_ids": token_ids[:, 1:],
        "target_weights": weights[:, 1:],
    }
    if packed:
        batch["segment_ids"] = segments[:, :-1]
    batch.update(vision.batch_arrays([item.images for item in encoded], rows, sequence_length))
    return batch


def epoch_order(count: int, seed: int, epoch: int, shuffle: bool = True) -> np.ndarray:
    """The order examples are visited in one epoch: a permutation fixed by seed and epoch."""
    if not shuffle:
        return np.arange(count)
    return np.random.default_rng([seed, epoch]).permutation(count)


def steps_per_epoch(count: int, examples_per_step: int) -> int:
    """Optimizer steps needed to see every example once (the last step may be partly empty)."""
    return -(-count // examples_per_step)


def bucket_width(encoded: list[template.Encoded], sequence_length: int, length_bucket: int) -> int:
    """The input width for a batch of `encoded`: its longest row's inputs rounded up to a
    multiple of `length_bucket`, capped at `sequence_length` (0 buckets: `sequence_length`)."""
    if length_bucket <= 0 or not encoded:
        return sequence_length
    longest = max(len(item.token_ids) for item in encoded) - 1  # inputs are tokens[:-1]
    return min(sequence_length, max(length_bucket, -(-longest // length_bucket) * length_bucket))


def train_batch(
    encoded: list[template.Encoded],
    order: np.ndarray,
    step_in_epoch: int,
    batch_size: int,
    accumulation_steps: int,
    sequence_length: int,
    pad_id: int,
    length_bucket: int = 0,
) -> dict[str, np.ndarray]:
    """The `[accumulation_steps, batch_size, L]` batch for one optimizer step of an epoch (L:
    `bucket_width`)."""
    per_step = batch_size * accumulation_steps
    indices = order[step_in_epoch * per_step : (step_in_epoch + 1) * per_step]
    chosen = [encoded[i] for i in indices]
    width = bucket_width(chosen, sequence_length, length_bucket)
    flat = pack(chosen, width, pad_id, per_step)
    return {
        key: value.reshape((accumulation_steps, batch_size) + value.shape[1:])
        for key, value in flat.items()
    }


def max_targets_per_row(encoded: list[template.Encoded], multiple: int = 8) -> int:
    """The most loss-carrying tokens any one example has, rounded up to `multiple`.

    The train step computes LM-head logits only for this many positions per row, which is a
    large saving when responses are short next to prompts (question answering, summaries).
    """
    most = max(int((item.target_weights > 0).sum()) for item in encoded)
    return -(-most // multiple) * multiple
