"""One entry of the demo fact table: an answer span in a handbook section, asked several ways."""

from __future__ import annotations

from typing import NamedTuple


class Fact(NamedTuple):
    """A short answer that appears verbatim in one handbook section, with its question wordings.

    Attributes:
      section: the handbook section number (`## N. Title`) whose text contains `answer`.
      answer: the answer span, 1-4 words, as the rows' "response".
      questions: 4-6 wordings of the question; `make_demo_data.check` enforces the range.
    """

    section: int
    answer: str
    questions: tuple[str, ...]
