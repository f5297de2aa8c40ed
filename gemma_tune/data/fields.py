"""Field checks shared by the row mappers, collecting every problem of a row at once.

`example.RowError` names one problem; a row can have several (a missing instruction *and* an
empty response), and users should see them all in one pass. `Checker` gathers them and
`RowErrors` carries them to the reader, which adds the file and line.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping, Sequence

from gemma_tune.data import example

_INDEX = re.compile(r"\[\d+\]")


class RowErrors(ValueError):
    """Every problem found in one row."""

    def __init__(self, errors: Sequence[example.RowError]):
        super().__init__("; ".join(str(error) for error in errors))
        self.errors = list(errors)


def pattern(field: str) -> str:
    """A field path without its indices (`messages[3].content` -> `messages[].content`), the
    name under which a file's reader reports something once for all rows and messages."""
    return _INDEX.sub("[]", field)


def list_field(row: Mapping, key: str, checker: Checker) -> list | None:
    """Reads the non-empty list `row[key]`, recording a problem if it is not one."""
    if key not in row or row[key] is None:
        checker.add(key, "missing" if key not in row else "is null")
        return None
    value = row[key]
    if not isinstance(value, list):
        checker.add(key, f"expected a list, got {type_name(value)}")
        return None
    if not value:
        checker.add(key, "empty")
        return None
    return value


def type_name(value: object) -> str:
    """The JSON-ish name of a value's type, for messages ("null", "list", "int", ...)."""
    if value is None:
        return "null"
    return {dict: "object", list: "list", str: "string"}.get(type(value), type(value).__name__)


class Checker:
    """Collects the problems of one row while its fields are read, and the keys it ignores.

    Attributes:
      errors: the problems found so far.
      unused: the nested keys the row has but the reader does not use, as patterns without
        indices (`messages[].metadata`), so a file's reader can warn once per key.
      folder: the folder of the local data file the row is from, where the row's relative
        image paths are resolved; None for rows that are not a local file's (a Hub
        dataset), whose images are refused (`image_parts`).
    """

    def __init__(self, folder: str | None = None) -> None:
        self.errors: list[example.RowError] = []
        self.unused: list[str] = []
        self.folder = folder

    def add(self, field: str, reason: str) -> None:
        """Records one problem with `field`."""
        self.errors.append(example.RowError(field, reason))

    def note_unused(self, holder: Mapping, used: Collection[str], pattern: str) -> None:
        """Records the keys of `holder` not in `used` as unused, named `{pattern}.{key}`; a
        null value counts as absent (Arrow tables, Parquet and `datasets`, fill absent keys
        with null)."""
        for key, value in holder.items():
            if key not in used and value is not None:
                self.unused.append(f"{pattern}.{key}" if pattern else key)

    def text(
        self, row: Mapping, key: str, field: str | None = None, *, required: bool = True
    ) -> str | None:
        """Reads the string `row[key]`, recording a problem if it is unusable.

        Args:
          row: the mapping holding the field.
          key: the key to read.
          field: the field path for messages (default: `key`).
          required: whether a missing, null or blank value is a problem. Optional fields that
            are missing or null read as None; blank optional strings are returned as they are.

        Returns:
          The string, or None when it is missing or unusable.
        """
        field = field or key
        if key not in row or row[key] is None:
            if required:
                self.add(field, "missing" if key not in row else "is null")
            return None
        value = row[key]
        if not isinstance(value, str):
            self.add(field, f"expected a string, got {type_name(value)}")
            return None
        if required and not value.strip():
            self.add(field, "empty")
            return None
        return value

    def require(self, value: str | None, field: str) -> str | None:
        """Records "empty" for a blank `value` already read (e.g. joined parts)."""
        if value is not None and not value.strip():
            self.add(field, "empty")
            return None
        return value

    def done(self) -> None:
        """Raises RowErrors if any problem was recorded."""
        if self.errors:
            raise RowErrors(self.errors)


_TURN_FIELD = re.compile(r"^turns\[(\d+)\]\.(role|text)$")


def check_turns(
    turns: list[example.Turn],
    role_fields: Sequence[str],
    text_fields: Sequence[str],
    container: str,
    checker: Checker,
    validate=example.validate_turns,
) -> tuple[example.Turn, ...] | None:
    """Validates turn order with `validate` (`example.validate_turns`, or
    `example.validate_prompt` for a preference prompt), naming fields the way the row does.

    `validate_turns` names `turns[i].role`; a reader wants `contents[2].role` or
    `messages[3].content`, so the i-th turn's fields are mapped through `role_fields` and
    `text_fields` (and a bare "turns" to `container`).

    Returns:
      The validated turns, or None after recording the problem in `checker`.
    """
    try:
        return validate(turns)
    except example.RowError as error:
        match = _TURN_FIELD.match(error.field)
        if match:
            index = int(match.group(1))
            fields = role_fields if match.group(2) == "role" else text_fields
            field = fields[index]
        else:
            field = container
        checker.add(field, error.reason)
        return None
