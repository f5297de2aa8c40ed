"""Duplicate removal: repeated examples over-weight themselves and leak into validation.

"exact" removes examples identical in every turn, system prompt and context; "normalized"
also treats as equal examples that differ only in whitespace or letter case (the usual
copies in scraped or exported data); "none" keeps everything. Images count in either mode:
the same question about two different images is two examples (an image is matched by its
file path or, for bytes a row carried, by a digest of those bytes).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Hashable, Iterable, Sequence

from gemma_tune.data import example

MODES = ("exact", "normalized", "none")


def check_mode(mode: str) -> None:
    """Raises ValueError naming the valid modes if `mode` is not one of them."""
    if mode not in MODES:
        raise ValueError(f"unknown dedup mode {mode!r}; choose one of: {', '.join(MODES)}")


def _normalize(text: str | None) -> str | None:
    """Collapses whitespace runs to one space and casefolds."""
    return None if text is None else " ".join(text.split()).casefold()


def key(item: example.Example, mode: str) -> Hashable:
    """What two examples must share to be duplicates under `mode` ("exact" or "normalized")."""
    check_mode(mode)
    norm = _normalize if mode == "normalized" else (lambda text: text)
    turns = tuple(
        (
            turn.role,
            norm(turn.text),
            turn.weight,
            tuple(map(_image_key, turn.images)),
            _json([(call.name, call.arguments) for call in turn.tool_calls]),
            _json([(response.name, response.content) for response in turn.tool_responses]),
        )
        for turn in item.turns
    )
    tools = _json([(tool.name, tool.description, tool.parameters) for tool in item.tools])
    return (norm(item.system), norm(item.context), turns, norm(item.text), tools)


def _json(value) -> str:
    """Tool calls, results or declarations as canonical JSON text, so that rows asking the
    same question but calling or declaring different tools are not duplicates."""
    return json.dumps(value, sort_keys=True, ensure_ascii=False)


def _image_key(image: example.Image) -> str:
    """What identifies an image: its file, or a digest of the bytes the row carried."""
    if image.path is not None:
        return image.path
    return hashlib.sha256(image.data).hexdigest()


def deduplicate(
    examples: Sequence[example.Example], mode: str, seen: Iterable[Hashable] = ()
) -> tuple[list[example.Example], int]:
    """Keeps the first of each set of duplicates, in order.

    Args:
      examples: the examples.
      mode: one of `MODES`.
      seen: keys already taken (e.g. the training set's, when deduplicating validation).

    Returns:
      The kept examples and how many were removed.
    """
    check_mode(mode)
    if mode == "none":
        return list(examples), 0
    taken = set(seen)
    kept = []
    for item in examples:
        item_key = key(item, mode)
        if item_key not in taken:
            taken.add(item_key)
            kept.append(item)
    return kept, len(examples) - len(kept)
