"""Packing: several short examples share one training row, each attending only to itself.

With `train.packing = true`, the encoded training examples are combined into rows of at most
`sequence_length` inputs (first-fit, longest first, so the result is fixed by the data alone and
a resumed run sees the same rows). Each row carries `segment_ids` (1, 2, ... per example);
while the train step runs, every decoder block's attention mask is narrowed to tokens of the
same segment. Gemma's rotary embeddings make attention depend only on the distance between
tokens, so inside its segment an example is computed as if it were alone even where positions run
on across the row (Gemma 1-3 count positions themselves); a family whose backbone takes position
ids (Gemma 4) gets positions that restart at 0 with every example (`positions`), as it would see
them alone. An example's first target (its BOS, which follows the previous example's last
token) has weight 0, so no loss crosses a boundary.
"""

from __future__ import annotations

import contextlib

import numpy as np

from gemma_tune.model import keras_compat
from gemma_tune.training import template


def combine(encoded: list[template.Encoded], sequence_length: int) -> list[template.Encoded]:
    """Packs examples into as few rows as first-fit decreasing finds.

    A row holds `sequence_length + 1` tokens (its inputs are tokens[:-1], its targets
    tokens[1:]), as an unpacked example does.

    Returns:
      The rows, each an `Encoded` whose `segment_ids` number its examples from 1, ordered by
      the longest example they hold (ties by input order).

    Raises:
      ValueError: for examples with images, which packing does not place.
    """
    with_images = sum(1 for item in encoded if item.images)
    if with_images:
        raise ValueError(
            f"train.packing does not apply to image rows ({with_images} examples have images): "
            "set train.packing=false (train.length_bucket trims padding instead)"
        )
    capacity = sequence_length + 1
    order = sorted(range(len(encoded)), key=lambda i: (-len(encoded[i].token_ids), i))
    rows: list[list[int]] = []
    room: list[int] = []
    for index in order:
        size = len(encoded[index].token_ids)
        if size > capacity:
            raise ValueError(f"example {index} has {size} tokens, more than {capacity}")
        row = next((r for r, free in enumerate(room) if free >= size), None)
        if row is None:
            rows.append([])
            room.append(capacity)
            row = len(rows) - 1
        rows[row].append(index)
        room[row] -= size
    return [_join([encoded[i] for i in members]) for members in rows]


def _join(items: list[template.Encoded]) -> template.Encoded:
    return template.Encoded(
        token_ids=np.concatenate([item.token_ids for item in items]).astype(np.int32),
        target_weights=np.concatenate([item.target_weights for item in items]).astype(np.float32),
        full_length=sum(item.full_length for item in items),
        segment_ids=np.concatenate(
            [np.full(len(item.token_ids), n, np.int32) for n, item in enumerate(items, 1)]
        ),
    )


def fill(rows: list[template.Encoded], sequence_length: int) -> float:
    """The fraction of the rows' token slots that hold tokens (1.0: no padding)."""
    return sum(len(row.token_ids) for row in rows) / (len(rows) * (sequence_length + 1))


@contextlib.contextmanager
def segment_attention(backbone, segment_ids):
    """While active, each decoder block of `backbone` attends only within a segment.

    Wraps every block's attention-mask computation (causal and padding, as KerasHub builds
    it) with `same segment`. A no-op when `segment_ids` is None.

    Args:
      backbone: a KerasHub Gemma or Gemma3 backbone.
      segment_ids: `[batch, length]` ints matching the inputs, or None.
    """
    if segment_ids is None:
        yield
        return
    from keras import ops

    same = ops.expand_dims(segment_ids, 2) == ops.expand_dims(segment_ids, 1)

    def within_segments(mask):
        return ops.cast(ops.logical_and(mask, same), mask.dtype)

    with keras_compat.narrowed_attention_masks(backbone.transformer_layers, within_segments):
        yield


def positions(segment_ids):
    """Position ids that restart at 0 with every segment, or None for unpacked rows (None).

    Args:
      segment_ids: `[batch, length]` ints (segments numbered from 1 in order, 0 on trailing
        padding), NumPy or traced.

    Returns:
      `[batch, length]` int32 positions: the distance from the first token of the token's own
      segment.
    """
    if segment_ids is None:
        return None
    import jax
    import jax.numpy as jnp

    segment_ids = jnp.asarray(segment_ids)
    index = jnp.broadcast_to(jnp.arange(segment_ids.shape[-1], dtype=jnp.int32), segment_ids.shape)
    first = jnp.concatenate(
        [jnp.ones_like(segment_ids[:, :1], bool), segment_ids[:, 1:] != segment_ids[:, :-1]], axis=1
    )
    start = jax.lax.cummax(jnp.where(first, index, 0), axis=1)
    return index - start
