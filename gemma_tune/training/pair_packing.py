"""Packed pair batches (`train.packing` with `train.objective=dpo`): several preference pairs
share a row, each answer's sequence its own segment.

A packed row holds whole pairs: pair j of a row is segments `2j + 1` (prompt + chosen) and
`2j + 2` (prompt + rejected), so a pair never straddles rows and any grouping of rows into
batches keeps both sides of every pair together. A row has room for
`2 * (sequence_length + 1)` token ids, the two rows of one unpacked pair at full length, so any
pair fits and a batch of `train.batch_size` packed rows costs what `train.batch_size` unpacked
pairs cost while holding as many pairs as fit (`ROW_FACTOR`). Rows are filled first-fit,
longest pair first, so they are fixed by the data alone and a resumed run sees the same rows.

Inside a row each segment attends only to itself and (Gemma 4) restarts its positions, as the
supervised packer's rows do (`packing`, the trainer's `segment_ids`); each segment's first
target (its BOS, after the previous segment's last token) has weight 0, so
`loss.head_row_log_probs(..., segment_ids, segments_per_row)` gives each answer's
log-probability apart. `pair_batches.pair_values` then reads chosen and rejected per pair:
segment `2j` and `2j + 1` (from 0) of row r are pair slot `r * segments_per_row / 2 + j`.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from gemma_tune.training import batching, pair_encoding, template

# A packed row's input width is ROW_FACTOR * (sequence_length + 1) - 1: room for one pair's two
# rows at full length.
ROW_FACTOR = 2


@dataclasses.dataclass(frozen=True)
class PackedRow:
    """One row of whole pairs.

    Attributes:
      encoded: the row's ids and target weights, `segment_ids` numbering its answers' sequences
        from 1 (each pair's chosen, then its rejected).
      pair_ids: the index of each pair it holds in its set (training or validation), in row
        order: the key of the reference log-probabilities.
      answer_tokens: `[2 * len(pair_ids)]` each segment's weighted target count (the answer's
        tokens, which `ipo` and `simpo` divide by).
    """

    encoded: template.Encoded
    pair_ids: tuple[int, ...]
    answer_tokens: np.ndarray


def row_width(sequence_length: int) -> int:
    """The input width of a packed pair row for rows cut to `sequence_length + 1` ids."""
    return ROW_FACTOR * (sequence_length + 1) - 1


def pack_pairs(pairs: list[pair_encoding.EncodedPair], sequence_length: int) -> list[PackedRow]:
    """Packs whole pairs into as few rows as first-fit decreasing finds.

    Args:
      pairs: encoded pairs, each side at most `sequence_length + 1` ids (`encode_pair`).
      sequence_length: the length the pairs were encoded for.

    Returns:
      The rows, ordered by the longest pair they hold (ties by pair index).

    Raises:
      ValueError: for a side longer than `sequence_length + 1` ids (not encoded for it).
    """
    capacity = row_width(sequence_length) + 1
    sizes = []
    for index, pair in enumerate(pairs):
        longest = max(len(pair.chosen.token_ids), len(pair.rejected.token_ids))
        if longest > sequence_length + 1:
            raise ValueError(
                f"pair {index} has a row of {longest} ids, more than sequence_length + 1 = "
                f"{sequence_length + 1}"
            )
        sizes.append(len(pair.chosen.token_ids) + len(pair.rejected.token_ids))
    members: list[list[int]] = []
    room: list[int] = []
    for index in sorted(range(len(pairs)), key=lambda i: (-sizes[i], i)):
        row = next((r for r, free in enumerate(room) if free >= sizes[index]), None)
        if row is None:
            members.append([])
            room.append(capacity)
            row = len(members) - 1
        members[row].append(index)
        room[row] -= sizes[index]
    return [_join(pairs, indices) for indices in members]


def _join(pairs: list[pair_encoding.EncodedPair], indices: list[int]) -> PackedRow:
    sides = [side for i in indices for side in (pairs[i].chosen, pairs[i].rejected)]
    return PackedRow(
        encoded=template.Encoded(
            token_ids=np.concatenate([side.token_ids for side in sides]).astype(np.int32),
            target_weights=np.concatenate([side.target_weights for side in sides]).astype(
                np.float32
            ),
            full_length=sum(side.full_length for side in sides),
            segment_ids=np.concatenate(
                [np.full(len(side.token_ids), n, np.int32) for n, side in enumerate(sides, 1)]
            ),
        ),
        pair_ids=tuple(indices),
        # A sequence's first weight is its BOS's, never a target within the sequence.
        answer_tokens=np.array([side.target_weights[1:].sum() for side in sides], np.float32),
    )


def segments_per_row(rows: list[PackedRow]) -> int:
    """The most segments any row holds (twice its pairs): the static width of the per-segment
    log-probabilities (`loss.head_row_log_probs`)."""
    return max((2 * len(row.pair_ids) for row in rows), default=2)


def packed_batch(
    rows: list[PackedRow],
    width: int,
    pad_id: int,
    rows_per_batch: int,
    segments: int,
    reference: tuple[np.ndarray, np.ndarray] | None = None,
) -> dict[str, np.ndarray]:
    """One batch of `rows_per_batch` packed rows.

    Args:
      rows: at most `rows_per_batch` packed rows.
      width: the batch's input width (at most `row_width`; `batching.bucket_width`).
      pad_id: the tokenizer's padding id.
      rows_per_batch: the batch's row count, filler rows included.
      segments: `segments_per_row` of the rows' whole set (the same for every batch of it).
      reference: every pair's reference log-probabilities `(chosen, rejected)` of the set,
        indexed by pair id, or None (the reference pass itself, a reference-free loss).

    Returns:
      `batching.pack`'s arrays with `segment_ids` (`[rows_per_batch, width]`);
      `segment_tokens` `[rows_per_batch, segments]` each answer's token count; per pair slot
      (`[rows_per_batch * segments / 2]`, slot `r * segments / 2 + j` the j-th pair of row
      r): `pair_weights` (1 for a pair, 0 for an empty slot), `pair_ids` (0 in empty slots),
      and with `reference`, `reference_chosen` and `reference_rejected` (0 in empty slots).

    Raises:
      ValueError: for more rows than `rows_per_batch`, or a row with more than `segments`.
    """
    if len(rows) > rows_per_batch:
        raise ValueError(f"{len(rows)} packed rows do not fit a batch of {rows_per_batch}")
    batch = batching.pack([row.encoded for row in rows], width, pad_id, rows_per_batch)
    if "segment_ids" not in batch:  # No row: an all-filler batch.
        batch["segment_ids"] = np.zeros_like(batch["token_ids"])
    per_row = segments // 2
    batch["segment_tokens"] = np.zeros((rows_per_batch, segments), np.float32)
    pair_ids = np.zeros((rows_per_batch, per_row), np.int32)
    pair_weights = np.zeros((rows_per_batch, per_row), np.float32)
    for r, row in enumerate(rows):
        if 2 * len(row.pair_ids) > segments:
            raise ValueError(f"a row of {2 * len(row.pair_ids)} segments, more than {segments}")
        batch["segment_tokens"][r, : len(row.answer_tokens)] = row.answer_tokens
        pair_ids[r, : len(row.pair_ids)] = row.pair_ids
        pair_weights[r, : len(row.pair_ids)] = 1.0
    batch["pair_ids"] = pair_ids.reshape(-1)
    batch["pair_weights"] = pair_weights.reshape(-1)
    if reference is not None:
        for name, values in zip(("reference_chosen", "reference_rejected"), reference, strict=True):
            batch[name] = np.asarray(values, np.float32)[batch["pair_ids"]] * batch["pair_weights"]
    return batch
