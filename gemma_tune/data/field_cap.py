"""Rows with a text field longer than `data.max_field_chars` are left out before tokenizing,
and reported.

    read = field_cap.drop_long(read, max_chars=1_000_000)
    read.dropped    # {"field over data.max_field_chars": 1}
    read.warnings   # [Problem("train.jsonl", 7, "turn 2 (model)", "52,428,800 characters, ...")]

A field of millions of characters (a whole book pasted into one answer, a base64 blob, a
broken export) is far past any sequence length, and tokenizing it would take memory in
proportion to its size. Such a row is not cut short silently: it is counted under
`REASON` in the data summary (`rows read`, `dropped: ...`), and a warning names its file, line,
field and length. Every source goes through this (files, Hugging Face, TFDS), from
`summary.prepare`, before duplicates are looked for. The template still cuts a kept text to what
the sequence length can use before tokenizing (`training/template.py`), so memory stays bounded
below the cap too.
"""

from __future__ import annotations

import json

from gemma_tune.data import example, read_result

REASON = "field over data.max_field_chars"

# Rows named one by one in the warnings; the rest are counted in one more warning.
MAX_NAMED = 10


def longest_field(item: example.Example) -> tuple[str, int]:
    """`(name, length)` of the example's longest text: "text" (a document), "system",
    "context", "turn N (role)" or a tool result's field (`messages[3]`, as JSON when it is an
    object), and its length in characters."""
    candidates = [("text", item.text), ("system", item.system), ("context", item.context)]
    candidates += [
        (f"turn {index} ({turn.role})", turn.text) for index, turn in enumerate(item.turns, 1)
    ]
    candidates += [
        (
            response.field,
            response.content if isinstance(response.content, str) else json.dumps(response.content),
        )
        for turn in item.turns
        for response in turn.tool_responses
    ]
    return max(((name, len(text or "")) for name, text in candidates), key=lambda kv: kv[1])


def _location(source: str) -> tuple[str, int]:
    """`(path, line)` of an example's `source` ("file:line", or "dataset[index]" with line 0)."""
    path, _, line = source.rpartition(":")
    if path and line.isdigit():
        return path, int(line)
    return source or "data", 0


def drop_long(read: read_result.ReadResult, max_chars: int) -> read_result.ReadResult:
    """Leaves out the examples with a field longer than `max_chars` characters (0: no cap),
    counting each under `REASON` and naming the first `MAX_NAMED` in `read.warnings`.

    Args:
      read: a reader's result; changed in place and returned.
      max_chars: the longest text a field may hold, in characters; 0 keeps everything.

    Raises:
      ValueError: a negative `max_chars`.
    """
    if max_chars < 0:
        raise ValueError(f"data.max_field_chars must be >= 0 (0: no cap), got {max_chars}")
    if not max_chars:
        return read
    kept = []
    over = 0
    for item in read.examples:
        name, length = longest_field(item)
        if length <= max_chars:
            kept.append(item)
            continue
        over += 1
        read.drop(REASON)
        if over <= MAX_NAMED:
            path, line = _location(item.source)
            reason = (
                f"{length:,} characters, over data.max_field_chars={max_chars:,}; row left out "
                "(raise data.max_field_chars to keep it)"
            )
            read.warnings.append(example.Problem(path, line, name, reason))
    if over > MAX_NAMED:
        read.warnings.append(
            example.Problem(
                "data", 0, "max_field_chars", f"{over - MAX_NAMED} more rows over the cap left out"
            )
        )
    read.examples = kept
    return read
