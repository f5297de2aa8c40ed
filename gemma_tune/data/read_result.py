"""What a reader returns: the examples it made, plus the rows it deliberately left out.

Readers keep two kinds of bad rows apart. A row the user must fix (a typo in their own file)
is a `Problem` and fails the whole read; a row a policy leaves out (a Dolly row with a context
when contexts are not kept, an unanswerable SQuAD question) is skipped and counted by reason,
so the run summary can say how much data was left out and why.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable

from gemma_tune.data import example, fields


@dataclasses.dataclass
class ReadResult:
    """The output of one reader.

    Attributes:
      examples: the examples made, in source order.
      dropped: the number of rows skipped, by reason (e.g. {"has context": 3}).
      rows_read: every row seen, kept or not (blank lines excluded).
      warnings: things the user should know that do not stop the read, e.g. a key the
        reader does not use (one per key and file, at the first line that has it).
    """

    examples: list[example.Example] = dataclasses.field(default_factory=list)
    dropped: dict[str, int] = dataclasses.field(default_factory=dict)
    rows_read: int = 0
    warnings: list[example.Problem] = dataclasses.field(default_factory=list)

    def drop(self, reason: str) -> None:
        """Counts one row skipped for `reason`."""
        self.dropped[reason] = self.dropped.get(reason, 0) + 1


class Skip(Exception):
    """Raised by a row mapper for a row a policy leaves out; `reason` is the count's key."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def from_public_rows(
    rows: Iterable, name: str, make: Callable[[object, str], example.Example]
) -> ReadResult:
    """Maps the rows of a public dataset (Hugging Face, TFDS) with `make(row, source)`.

    Users cannot fix a public dataset, so a malformed row is skipped and counted under
    "invalid row (...)" rather than failing the read, as a bad row in a user's file would.
    """
    result = ReadResult()
    for index, row in enumerate(rows):
        result.rows_read += 1
        try:
            result.examples.append(make(row, f"{name}[{index}]"))
        except Skip as skip:
            result.drop(skip.reason)
        except fields.RowErrors as errors:
            result.drop(f"invalid row ({errors.errors[0]})")
    return result
