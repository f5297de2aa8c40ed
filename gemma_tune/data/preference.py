"""The record every preference source produces: a prompt and two answers, one preferred.

Preference tuning (DPO and its kin) learns from pairs: the same prompt answered twice, once
the way people prefer (`chosen`) and once not (`rejected`). A `PreferencePair` holds the
prompt as the supervised `Turn`s (alternating, starting and ending with a user turn) and the
two answers as the model turn that completes it; `chosen_example` / `rejected_example` give
the two conversations as ordinary `Example`s, so the chat template encodes them exactly as it
encodes supervised data. Readers: `preference_formats` (one row) and `preference_rows` (a
file).
"""

from __future__ import annotations

import dataclasses

from gemma_tune.data import example


@dataclasses.dataclass(frozen=True)
class PreferencePair:
    """A prompt and two answers to it, the first preferred.

    Attributes:
      prompt: the conversation before the answer: alternating turns, starting and ending with
        a user turn (`example.validate_prompt`).
      chosen: the preferred answer (the model turn that completes `prompt`).
      rejected: the other answer; never equal to `chosen`.
      system: an optional system prompt.
      source: where the row came from, "file:line", for messages.
    """

    prompt: tuple[example.Turn, ...]
    chosen: str
    rejected: str
    system: str | None = None
    source: str = ""

    def _with_answer(self, answer: str) -> example.Example:
        turns = (*self.prompt, example.Turn(example.MODEL, answer))
        return example.Example(turns=turns, system=self.system, source=self.source)

    @property
    def chosen_example(self) -> example.Example:
        """The prompt answered with `chosen`, as a supervised conversation."""
        return self._with_answer(self.chosen)

    @property
    def rejected_example(self) -> example.Example:
        """The prompt answered with `rejected`, as a supervised conversation."""
        return self._with_answer(self.rejected)


@dataclasses.dataclass
class PreferenceReadResult:
    """What the preference reader returns for one file.

    Attributes:
      pairs: the pairs, in file order.
      rows_read: every row seen (blank lines excluded).
      format: the preference format the file was read as.
      warnings: a problem per key no format reads (once per key, at its first line).
      dropped: rows skipped, by reason: a public dataset's bad rows, which its users cannot
        fix (a user's own file fails on them instead).
    """

    pairs: list[PreferencePair] = dataclasses.field(default_factory=list)
    rows_read: int = 0
    format: str = ""
    warnings: list[example.Problem] = dataclasses.field(default_factory=list)
    dropped: dict[str, int] = dataclasses.field(default_factory=dict)
