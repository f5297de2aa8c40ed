"""The deterministic train/validation split of one source's examples."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from gemma_tune.data import example


def split(
    examples: Sequence[example.Example], fraction: float, seed: int
) -> tuple[list[example.Example], list[example.Example]]:
    """Holds out `fraction` of the examples for validation, chosen at random but reproducibly.

    The indices are shuffled with `numpy.random.default_rng(seed)`, so the same seed always
    gives the same split. With a fraction above zero and at least two examples, at least one
    example goes to validation and at least one stays for training. Both parts keep the
    source order.

    Returns:
      (train, validation).

    Raises:
      ValueError: unless 0 <= fraction < 1.
    """
    if not 0 <= fraction < 1:
        raise ValueError(f"validation_fraction must be in [0, 1), got {fraction}")
    total = len(examples)
    if fraction == 0 or total < 2:
        return list(examples), []
    count = min(total - 1, max(1, round(total * fraction)))
    held_out = set(np.random.default_rng(seed).permutation(total)[:count].tolist())
    train = [item for index, item in enumerate(examples) if index not in held_out]
    validation = [item for index, item in enumerate(examples) if index in held_out]
    return train, validation
