"""Length statistics of the examples: percentiles, and a plain-text view of a conversation.

The token lengths only a tokenizer can measure are added to the summary by the stage that has
one; without a tokenizer (the `check` command) the character and word lengths of
`plain_text` still show whether the data is of the expected size.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

from gemma_tune.data import example


@dataclasses.dataclass(frozen=True)
class LengthStats:
    """The distribution of some lengths: how many, median, 95th percentile and longest."""

    count: int
    p50: int
    p95: int
    max: int

    @classmethod
    def of(cls, lengths: Sequence[int]) -> LengthStats:
        """The stats of `lengths` (nearest-rank percentiles; all zero when empty)."""
        ordered = sorted(lengths)
        if not ordered:
            return cls(count=0, p50=0, p95=0, max=0)
        return cls(
            count=len(ordered),
            p50=percentile(ordered, 50),
            p95=percentile(ordered, 95),
            max=ordered[-1],
        )

    def format(self) -> str:
        """e.g. "p50 120, p95 480, max 1024"."""
        return f"p50 {self.p50}, p95 {self.p95}, max {self.max}"


def percentile(ordered: Sequence[int], q: float) -> int:
    """The nearest-rank `q`-th percentile of the sorted, non-empty `ordered`."""
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def plain_text(item: example.Example) -> str:
    """The whole conversation as text (system, context, then each turn), one part a line; a
    document's text."""
    if item.is_document:
        return item.text
    parts = [part for part in (item.system, item.context) if part]
    parts.extend(turn.text for turn in item.turns)
    return "\n".join(parts)
