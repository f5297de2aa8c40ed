"""The stage after reading: deduplicate, cap, split, and summarize what happened to the data.

`prepare` turns what the readers returned into the training and validation sets, and a
`Summary` that accounts for every row: read, skipped by reason, removed as a duplicate, cut by
`max_examples`, or kept. A later stage with a tokenizer adds the token lengths.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from gemma_tune.data import duplicates, example, field_cap, lengths, read_result, split


@dataclasses.dataclass(frozen=True)
class TokenLengths:
    """Token lengths of the training examples, and how many exceed the sequence length."""

    count: int
    p50: int
    p95: int
    max: int
    sequence_length: int
    truncated: int


@dataclasses.dataclass
class Summary:
    """What happened to the data between the source and training.

    Attributes:
      rows_read: rows seen by the readers (training and validation sources together).
      dropped: rows the readers skipped, by reason (e.g. {"has context": 10}).
      duplicates_removed: examples removed as duplicates (including validation examples
        that duplicate training ones).
      over_max_examples: examples cut because of `max_examples`.
      train_count: the size of the training set.
      validation_count: the size of the validation set.
      validation_from: "split" (held out of the training source), "file", or "none".
      token_lengths: filled in by `add_token_lengths`, or None.
      warnings: what the readers warned about ("file:line: key: not used ..."), training
        and validation sources together.
      unit: what the counts count: "examples", or "pairs" for preference data.
    """

    rows_read: int = 0
    dropped: dict[str, int] = dataclasses.field(default_factory=dict)
    duplicates_removed: int = 0
    over_max_examples: int = 0
    train_count: int = 0
    validation_count: int = 0
    validation_from: str = "none"
    token_lengths: TokenLengths | None = None
    warnings: list[str] = dataclasses.field(default_factory=list)
    unit: str = "examples"

    def add_token_lengths(self, token_lengths: Sequence[int], sequence_length: int) -> None:
        """Records the token lengths of the examples and how many `sequence_length` truncates.

        Args:
          token_lengths: one length per example, as the model's tokenizer and template count.
          sequence_length: the training sequence length; longer examples are truncated.
        """
        stats = lengths.LengthStats.of(token_lengths)
        self.token_lengths = TokenLengths(
            count=stats.count,
            p50=stats.p50,
            p95=stats.p95,
            max=stats.max,
            sequence_length=sequence_length,
            truncated=sum(1 for length in token_lengths if length > sequence_length),
        )

    def to_dict(self) -> dict:
        """The summary as plain JSON-serializable values."""
        return dataclasses.asdict(self)

    def format(self) -> str:
        """The summary as human-readable lines."""
        dropped = sum(self.dropped.values())
        reasons = ", ".join(f"{reason}: {n}" for reason, n in sorted(self.dropped.items()))
        lines = [
            f"rows read: {self.rows_read}",
            f"dropped: {dropped}" + (f" ({reasons})" if reasons else ""),
            f"duplicates removed: {self.duplicates_removed}",
        ]
        if self.over_max_examples:
            lines.append(f"over max_examples: {self.over_max_examples}")
        lines.append(f"train {self.unit}: {self.train_count}")
        lines.append(f"validation {self.unit}: {self.validation_count} ({self.validation_from})")
        if self.token_lengths is not None:
            tokens = self.token_lengths
            lines.append(
                f"token lengths: p50 {tokens.p50}, p95 {tokens.p95}, max {tokens.max}; "
                f"{tokens.truncated} of {tokens.count} longer than "
                f"sequence_length {tokens.sequence_length} (truncated)"
            )
        lines.extend(f"warning: {warning}" for warning in self.warnings)
        return "\n".join(lines)


def _as_read(
    examples: read_result.ReadResult | Sequence[example.Example],
) -> read_result.ReadResult:
    """Accepts a reader's result or a plain list of examples."""
    if isinstance(examples, read_result.ReadResult):
        return examples
    return read_result.ReadResult(examples=list(examples), rows_read=len(examples))


def prepare(
    examples: read_result.ReadResult | Sequence[example.Example],
    *,
    dedup: str = "exact",
    validation_fraction: float = 0.0,
    seed: int = 0,
    max_examples: int = 0,
    validation_examples: read_result.ReadResult | Sequence[example.Example] | None = None,
    max_field_chars: int = 0,
) -> tuple[list[example.Example], list[example.Example], Summary]:
    """Deduplicates, caps and splits the examples read, accounting for every row.

    The order is: leave out rows with a field over `max_field_chars` (`field_cap`), remove
    duplicates (keeping the first), keep the first `max_examples` (as the
    reference run takes "the first 1000"), then hold out `validation_fraction` for validation
    with a split fixed by `seed`. With `validation_examples` (a separate validation source) no
    split is made and `validation_fraction` is ignored; the validation examples are
    deduplicated too, including against the training set, so validation never repeats
    training data.

    Args:
      examples: the training source's reader result (or a list of examples).
      dedup: "exact", "normalized" or "none" (see the `duplicates` module).
      validation_fraction: the fraction to hold out, in [0, 1).
      seed: the split's random seed.
      max_examples: keep only the first this many examples (0 = all).
      validation_examples: a separate validation source's result, or None to split.
      max_field_chars: leave out (and report) rows with a longer text field (0 = no cap).

    Returns:
      (train, validation, summary).

    Raises:
      ValueError: for an unknown dedup mode, a negative `max_examples` or a fraction outside
        [0, 1).
    """
    duplicates.check_mode(dedup)
    if max_examples < 0:
        raise ValueError(f"max_examples must be >= 0 (0 = all), got {max_examples}")
    train_read = field_cap.drop_long(_as_read(examples), max_field_chars)
    result = Summary(
        rows_read=train_read.rows_read,
        dropped=dict(train_read.dropped),
        warnings=[str(warning) for warning in train_read.warnings],
    )
    train, result.duplicates_removed = duplicates.deduplicate(train_read.examples, dedup)
    if max_examples and len(train) > max_examples:
        result.over_max_examples = len(train) - max_examples
        train = train[:max_examples]
    if validation_examples is None:
        train, validation = split.split(train, validation_fraction, seed)
        result.validation_from = "split" if validation else "none"
    else:
        validation_read = field_cap.drop_long(_as_read(validation_examples), max_field_chars)
        result.rows_read += validation_read.rows_read
        result.warnings += [str(warning) for warning in validation_read.warnings]
        for reason, count in validation_read.dropped.items():
            result.dropped[reason] = result.dropped.get(reason, 0) + count
        seen = () if dedup == "none" else (duplicates.key(item, dedup) for item in train)
        validation, removed = duplicates.deduplicate(validation_read.examples, dedup, seen)
        result.duplicates_removed += removed
        result.validation_from = "file"
    result.train_count = len(train)
    result.validation_count = len(validation)
    return train, validation, result
