"""Reads a JSON file holding one array of rows (`[{...}, {...}]`), the way Alpaca ships, or
a stream of JSON objects laid out freely (pretty-printed objects one after another).

The array is decoded element by element, so each row keeps the line it starts on and its
index: problems read `file.json:12: [3].output: missing`. Invalid JSON stops the read at the
first error (nothing after it can be located reliably), reported with its line and column.
"""

from __future__ import annotations

import json

from gemma_tune.data import example, rows

_WHITESPACE = " \t\n\r"


def is_array(data: bytes) -> bool:
    """Whether the JSON text starts with `[` (after an optional byte-order mark and spaces)."""
    return data.removeprefix(b"\xef\xbb\xbf").lstrip()[:1] == b"["


def parse_array(path: str, data: bytes) -> tuple[list[rows.Row], list[example.Problem]]:
    """Splits a JSON array into rows, each with its first line and its index.

    Returns:
      `(rows, problems)`; the problems name invalid UTF-8 or JSON by line.
    """
    try:
        text = data.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        return [], [example.Problem(path, line, "file", "invalid UTF-8")]
    decoder = json.JSONDecoder()
    found: list[rows.Row] = []
    position = _skip(text, 0) + 1  # Past the "[".
    line, counted = 1, 0

    def problem(at: int, reason: str) -> list[example.Problem]:
        at_line = text.count("\n", 0, at) + 1
        column = at - (text.rfind("\n", 0, at) + 1) + 1
        return [example.Problem(path, at_line, "file", f"invalid JSON: {reason} (column {column})")]

    position = _skip(text, position)
    if text[position : position + 1] == "]":
        return found, _trailing(text, position + 1, problem)
    while True:
        try:
            value, end = decoder.raw_decode(text, position)
        except json.JSONDecodeError as error:
            return found, problem(error.pos, error.msg)
        line += text.count("\n", counted, position)
        counted = position
        found.append(rows.Row(line, value, index=len(found)))
        position = _skip(text, end)
        separator = text[position : position + 1]
        if separator == "]":
            return found, _trailing(text, position + 1, problem)
        if separator != ",":
            return found, problem(position, "expected ',' or ']' after an array element")
        position = _skip(text, position + 1)


def parse_stream(path: str, data: bytes) -> list[rows.Row] | None:
    """Reads JSON values one after another, however they are laid out on lines (pretty-printed
    objects, several per line); None when the text is not such a stream."""
    try:
        text = data.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError:
        return None
    decoder = json.JSONDecoder()
    found: list[rows.Row] = []
    position, line, counted = _skip(text, 0), 1, 0
    while position < len(text):
        try:
            value, end = decoder.raw_decode(text, position)
        except json.JSONDecodeError:
            return None
        line += text.count("\n", counted, position)
        counted = position
        found.append(rows.Row(line, value))
        position = _skip(text, end)
    return found


def _skip(text: str, position: int) -> int:
    """The position of the next non-whitespace character."""
    while position < len(text) and text[position] in _WHITESPACE:
        position += 1
    return position


def _trailing(text: str, position: int, problem) -> list[example.Problem]:
    """A problem when anything but whitespace follows the array."""
    position = _skip(text, position)
    return problem(position, "text after the array") if position < len(text) else []
