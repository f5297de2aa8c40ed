"""Encoded preference pairs -> fixed-shape batches: the chosen rows, then the rejected rows.

A batch of `pairs_per_batch` pairs is `2 * pairs_per_batch` rows, the chosen answers in the
first half and the rejected answers in the second, in the same pair order (TRL's layout), so
one forward pass gives both sides and `split_rows` halves the per-row log-probabilities. A
short last batch is filled with empty pairs whose `pair_weights` are 0 (their rows carry no
weight), so every batch compiles to the same shapes and no pair is dropped. Each pair's
reference log-probabilities (`dpo`: computed once before training) travel with it.

Packed batches (`pair_packing`, `train.packing`) hold several pairs per row instead; `pair_values`
and `pair_tokens` read either layout, so the objective and `dpo.batch_sums` need not know which.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from gemma_tune.training import batching, pair_encoding


def pair_batch(
    pairs: Sequence[pair_encoding.EncodedPair],
    sequence_length: int,
    pad_id: int,
    pairs_per_batch: int,
    reference: tuple[np.ndarray, np.ndarray] | None = None,
    pair_ids=None,
) -> dict[str, np.ndarray]:
    """Pads `pairs` into one batch of `2 * pairs_per_batch` rows.

    Args:
      pairs: at most `pairs_per_batch` encoded pairs.
      sequence_length: the rows' input length (`batching.pack`).
      pad_id: the tokenizer's padding id.
      pairs_per_batch: the batch's pair count, filler pairs included.
      reference: the pairs' reference log-probabilities `(chosen, rejected)`, each `[len(pairs)]`,
        or None (the reference pass itself).
      pair_ids: the pairs' indices in their set, for the reference pass (default: 0, 1, ...).

    Returns:
      `batching.pack`'s `token_ids`, `padding_mask`, `target_ids`, `target_weights` for the
      `2 * pairs_per_batch` rows; `pair_weights` `[pairs_per_batch]` (1 for a pair, 0 for a
      filler); `pair_ids` `[pairs_per_batch]` (0 for fillers); with `reference`,
      `reference_chosen` and `reference_rejected` `[pairs_per_batch]` (0 for fillers).

    Raises:
      ValueError: for more pairs than `pairs_per_batch`.
    """
    if len(pairs) > pairs_per_batch:
        raise ValueError(f"{len(pairs)} pairs do not fit a batch of {pairs_per_batch}")
    halves = [
        batching.pack(
            [getattr(pair, side) for pair in pairs], sequence_length, pad_id, pairs_per_batch
        )
        for side in ("chosen", "rejected")
    ]
    batch = {name: np.concatenate([halves[0][name], halves[1][name]]) for name in halves[0]}
    batch["pair_weights"] = (np.arange(pairs_per_batch) < len(pairs)).astype(np.float32)
    batch["pair_ids"] = np.zeros(pairs_per_batch, np.int32)
    batch["pair_ids"][: len(pairs)] = np.arange(len(pairs)) if pair_ids is None else pair_ids
    if reference is not None:
        for name, values in zip(("reference_chosen", "reference_rejected"), reference, strict=True):
            padded = np.zeros(pairs_per_batch, np.float32)
            padded[: len(pairs)] = values
            batch[name] = padded
    return batch


def split_rows(row_values):
    """`[2n]` per-row values -> `(chosen [n], rejected [n])`, the halves of a pair batch."""
    half = row_values.shape[0] // 2
    return row_values[:half], row_values[half:]


def pair_values(answer_values, batch):
    """`(chosen [P], rejected [P])` per pair slot of a batch from its per-answer values: the
    `[2P]` per-row values of a `pair_batch` (`split_rows`), or the `[R, S]` per-segment values
    of a packed batch (`pair_packing`: each row's pairs side by side, chosen first). NumPy or
    traced."""
    if "segment_ids" not in batch:
        return split_rows(answer_values)
    flat = answer_values.reshape(-1)
    return flat[0::2], flat[1::2]


def pair_tokens(batch):
    """`(chosen [P], rejected [P])` answer token counts per pair slot, for either layout."""
    if "segment_ids" not in batch:
        return split_rows(batch["target_weights"].sum(axis=-1))
    return pair_values(batch["segment_tokens"], batch)


def scatter_by_pair(batches, pair_log_probs, count: int) -> tuple[np.ndarray, np.ndarray]:
    """The reference pass over a set's batches, in any layout: each batch's `(chosen,
    rejected)` per pair slot (`pair_log_probs(batch)`) put in place by its `pair_ids`.

    Returns:
      `(chosen, rejected)`, float32 `[count]` each, indexed by pair id.

    Raises:
      ValueError: when the batches do not cover every pair exactly once.
    """
    chosen, rejected = np.zeros(count, np.float32), np.zeros(count, np.float32)
    seen = np.zeros(count, np.int32)
    for batch in batches:
        values = [np.asarray(side, np.float32) for side in pair_log_probs(batch)]
        real = np.asarray(batch["pair_weights"]) > 0
        ids = np.asarray(batch["pair_ids"])[real]
        chosen[ids], rejected[ids] = values[0][real], values[1][real]
        np.add.at(seen, ids, 1)
    if not (seen == 1).all():
        raise ValueError(f"the batches hold {int(seen.sum())} pairs, not each of {count} once")
    return chosen, rejected


def reference_log_probs(
    pairs: Sequence[pair_encoding.EncodedPair],
    row_log_probs: Callable[[dict[str, np.ndarray]], np.ndarray],
    *,
    sequence_length: int,
    pad_id: int,
    pairs_per_batch: int,
) -> tuple[np.ndarray, np.ndarray]:
    """The reference pass: every pair's answer log-probabilities under the model as it is
    before DPO training (`dpo`'s reference design), computed once, in order.

    Args:
      pairs: the encoded pairs (training and validation alike).
      row_log_probs: `batch -> [2 * pairs_per_batch]` per-row answer log-probabilities of a
        `pair_batch` (the step's forward without dropout, then `loss.head_row_log_probs`).
      sequence_length / pad_id / pairs_per_batch: as `pair_batch`, the same as training's.

    Returns:
      `(chosen, rejected)`, float32 `[len(pairs)]` each: the `reference` of `pair_batch`.
    """
    chosen, rejected = [], []
    for start in range(0, len(pairs), pairs_per_batch):
        batch_pairs = pairs[start : start + pairs_per_batch]
        batch = pair_batch(batch_pairs, sequence_length, pad_id, pairs_per_batch)
        chosen_rows, rejected_rows = split_rows(np.asarray(row_log_probs(batch), np.float32))
        chosen.append(chosen_rows[: len(batch_pairs)])
        rejected.append(rejected_rows[: len(batch_pairs)])
    empty = np.zeros(0, np.float32)
    return (
        np.concatenate(chosen) if chosen else empty,
        np.concatenate(rejected) if rejected else empty,
    )
