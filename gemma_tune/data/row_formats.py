"""Every supported row format, and how a row's keys tell which one it is.

A format is the fine-tuning layout of a tool users already have data for (`chat_formats`,
`pair_formats`). A row *fits* a format when it has all the format's required keys; when it
fits several, the most specific wins (the one needing the most keys), and `text` only when no
other fits (an Alpaca or chat row that also carries a rendered `text` column is Alpaca or
chat, not language modelling). A row that fits none is told the
formats it is closest to and the keys each is missing.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping

from gemma_tune.data import chat_formats, example, fields, pair_formats

Parser = Callable[[dict, str, bool, fields.Checker], example.Example]
TEXT = "text"


@dataclasses.dataclass(frozen=True)
class Format:
    """One row format.

    Attributes:
      name: the `data.format` value that forces it.
      required: the keys every row of the format has.
      optional: the other top-level keys its parser reads.
      parse: `(row, source, keep_context, checker) -> Example`; the checker collects the
        problems and the nested keys left unused.
    """

    name: str
    required: frozenset[str]
    optional: frozenset[str]
    parse: Parser

    @property
    def keys(self) -> frozenset[str]:
        """Every top-level key the format's parser reads."""
        return self.required | self.optional


def _format(name: str, required: set[str], optional: set[str], parse: Parser) -> Format:
    return Format(name, frozenset(required), frozenset(optional), parse)


_ALL = (
    _format("openai_chat", {"messages"}, {"images", "tools"}, chat_formats.parse_openai_chat),
    _format("sharegpt", {"conversations"}, {"system"}, chat_formats.parse_sharegpt),
    _format("gemini", {"contents"}, {"systemInstruction"}, chat_formats.parse_gemini),
    _format(
        "openai_completion", {"prompt", "completion"}, set(), pair_formats.parse_prompt_completion
    ),
    _format(
        "dolly", {"instruction", "response"}, {"context", "category"}, pair_formats.parse_dolly
    ),
    _format(
        "alpaca",
        {"instruction", "output"},
        {"input", "system", "history"},
        pair_formats.parse_alpaca,
    ),
    _format(
        "vertex_legacy",
        {"input_text", "output_text"},
        set(),
        pair_formats.pair_parser("input_text", "output_text"),
    ),
    _format(
        "ai_studio",
        {"text_input", "output"},
        set(),
        pair_formats.pair_parser("text_input", "output"),
    ),
    _format(TEXT, {"text"}, set(), pair_formats.parse_text),
)
FORMATS: dict[str, Format] = {spec.name: spec for spec in _ALL}
NAMES = tuple(FORMATS)


def _specificity(spec: Format, row: Mapping) -> tuple[int, int]:
    """How well `row` fits `spec`: required keys, then all keys the format reads."""
    return len(spec.required), len(spec.keys & row.keys())


def fits(row: Mapping) -> list[str]:
    """The formats `row` fits best: one name, several when they tie, none when it fits none.

    `text` is the fallback: datasets often carry a rendered `text` column next to their
    `messages` or Alpaca columns, which are then the data.
    """
    candidates = [spec for spec in _ALL if spec.required <= row.keys()]
    if len(candidates) > 1:
        candidates = [spec for spec in candidates if spec.name != TEXT]
    if not candidates:
        return []
    best = max(_specificity(spec, row) for spec in candidates)
    return [spec.name for spec in candidates if _specificity(spec, row) == best]


def _is_rows(value: object) -> bool:
    """Whether `value` looks like rows nested in a wrapper object (`{"data": [{...}]}`)."""
    return isinstance(value, list) and bool(value) and isinstance(value[0], Mapping)


def closest(row: Mapping, limit: int = 3) -> str:
    """Why `row` fits no format: the formats sharing the most keys with it and what each
    lacks, or every format's required keys when it shares none."""
    keys = ", ".join(sorted(row)) or "none"
    nested = [key for key, value in row.items() if _is_rows(value)]
    if nested:
        return (
            f"the keys ({keys}) fit no supported format, and {nested[0]!r} holds a list of "
            "objects: give those rows alone, as a JSON array or JSONL"
        )
    shared = [spec for spec in _ALL if spec.keys & row.keys()]
    if not shared:
        needs = "; ".join(f"{spec.name}: {', '.join(sorted(spec.required))}" for spec in _ALL)
        return f"the keys ({keys}) fit no supported format (each needs: {needs})"
    shared.sort(key=lambda spec: -len(spec.keys & row.keys()))
    near = "; ".join(
        f"{spec.name} (missing {', '.join(sorted(spec.required - row.keys()))})"
        for spec in shared[:limit]
    )
    return f"the keys ({keys}) fit no supported format; closest: {near}"
