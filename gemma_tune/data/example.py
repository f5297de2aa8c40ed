"""The one record every data source produces, and the errors a bad row raises.

Every reader (Hugging Face, TFDS, JSONL in its many dialects, CSV) turns its rows into
`Example`s; nothing downstream knows which format a row came from. A row that cannot become an
`Example` raises `RowError` naming the field and the reason; the reader adds the file and line
and collects every problem of a file into one `DataError`, so users fix all of them at once.

A user turn may hold images (`Image`, in order among its text in `Turn.parts`). An `Image` is
a reference (a local path or the encoded bytes the row carried) checked when the row is read,
and decoded again only when its pixels are needed (`Image.pixels`), so thousands of images
cost their file names or compressed bytes in memory, not their pixels.

A conversation may use tools (OpenAI's `tools`, assistant `tool_calls` and `tool` messages):
the example keeps the declarations (`Tool`), each assistant message's calls (`ToolCall`) and
the tool messages answering them (`ToolResponse`, on the calling turn) as structure, not text;
only a model family with a tool format renders them (`training.template`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import numpy as np

USER = "user"
MODEL = "model"
ROLES = (USER, MODEL)


@dataclasses.dataclass(frozen=True)
class Image:
    """One image of a user turn: where it is, checked readable when its row was read.

    Attributes:
      source: the row holding it, "file:line".
      field: the field naming it in the row (`messages[0].content[1].image_url.url`).
      path: the local file holding it, or None when the row carries its bytes.
      data: the encoded bytes (PNG, JPEG, ...) a row carried (a `data:` URL, Gemini's
        `inlineData`, a Hugging Face `Image` feature), or None for a file.
      width: its width in pixels.
      height: its height in pixels.
      format: Pillow's name for its file format ("PNG", "JPEG", ...).
      mode: Pillow's mode of the stored pixels ("RGB", "RGBA", "L", "P", ...); `pixels`
        converts every supported mode to RGB.
    """

    source: str
    field: str
    path: str | None
    data: bytes | None
    width: int
    height: int
    format: str
    mode: str

    @property
    def where(self) -> str:
        """ "file:line:field", for messages."""
        return f"{self.source}:{self.field}"

    def pixels(self) -> np.ndarray:
        """The image decoded as RGB: a `(height, width, 3)` uint8 array (`images.decode`)."""
        from gemma_tune.data import images  # Pillow is only needed once pixels are.

        return images.decode(self)


@dataclasses.dataclass(frozen=True)
class Tool:
    """A function the model may call (OpenAI's `tools[i].function`).

    Attributes:
      name: the function's name.
      description: what it does ("" when the row gives none).
      parameters: its JSON Schema (`{"type": "object", "properties": ...}`), or None.
      field: where the row declares it (`tools[0]`), for messages.
    """

    name: str
    description: str
    parameters: Mapping | None
    field: str


@dataclasses.dataclass(frozen=True)
class ToolCall:
    """One call of an assistant message (OpenAI's `tool_calls[i]`).

    Attributes:
      name: the called function's name.
      arguments: its arguments, a JSON object (parsed when the row gives a JSON string).
      id: the call's id, which a tool message's `tool_call_id` names (None when absent).
      field: where the row has it (`messages[2].tool_calls[0]`).
    """

    name: str
    arguments: Mapping
    id: str | None
    field: str


@dataclasses.dataclass(frozen=True)
class ToolResponse:
    """A tool message answering a call (OpenAI's `{"role": "tool", "tool_call_id", ...}`).

    Attributes:
      name: the name of the function whose call it answers.
      content: the result: a string, or a JSON object as the row gives it.
      call_id: the `id` of the call it answers.
      field: where the row has it (`messages[3]`).
    """

    name: str
    content: str | Mapping
    call_id: str
    field: str


@dataclasses.dataclass(frozen=True)
class Turn:
    """One turn of a conversation.

    Attributes:
      role: "user" or "model".
      text: the turn's text (a turn with images: its text parts joined, possibly empty).
      weight: the loss weight of a model turn's tokens: 1 trains on the turn, 0 leaves it out of
        the loss (OpenAI's per-message `"weight": 0`) while keeping it in the conversation.
        User turns carry no loss whatever their weight.
      parts: a user turn with images: its text (`str`) and `Image` parts in order; empty for
        a text-only turn, whose content is `text`.
      tool_calls: a model turn's calls (its text is then empty); the model turn after it
        continues the same model turn once the tools have answered.
      tool_responses: the tool messages answering `tool_calls`, in the row's order (prompt,
        never loss).
    """

    role: str
    text: str
    weight: float = 1.0
    parts: tuple[str | Image, ...] = ()
    tool_calls: tuple[ToolCall, ...] = ()
    tool_responses: tuple[ToolResponse, ...] = ()

    @property
    def images(self) -> tuple[Image, ...]:
        """The turn's images, in order."""
        return tuple(part for part in self.parts if isinstance(part, Image))


@dataclasses.dataclass(frozen=True)
class Example:
    """A training or evaluation conversation in a format-independent shape.

    An example is either a conversation (`turns`) or a plain document (`text`, for language
    modelling: no chat template, every token carries loss); never both.

    Attributes:
      turns: alternating user/model turns, starting with user and ending with model; empty for
        a document.
      system: an optional system prompt (Gemma has no system role: the template folds it into
        the first user turn).
      context: an optional passage the prompt is about (Dolly's `context`, a retrieved
        passage); the template places it in the first user turn.
      source: where the row came from, "file:line" or "dataset[index]", for messages.
      text: the document of a language-modelling example (`{"text": ...}` rows), else None.
      tools: the functions the conversation declares (OpenAI's `tools`), in order.
    """

    turns: tuple[Turn, ...]
    system: str | None = None
    context: str | None = None
    source: str = ""
    text: str | None = None
    tools: tuple[Tool, ...] = ()

    @property
    def is_document(self) -> bool:
        """Whether this is a plain document (language modelling) rather than a conversation."""
        return self.text is not None

    @property
    def prompt(self) -> str:
        """The first user turn's text ("" for a document: it has no prompt)."""
        return "" if self.is_document else self.turns[0].text

    @property
    def response(self) -> str:
        """The last model turn's text (the reference answer in evaluation); a document's text."""
        return self.text if self.is_document else self.turns[-1].text

    @property
    def images(self) -> tuple[Image, ...]:
        """Every image of the conversation, in order (none for a text-only example)."""
        return tuple(image for turn in self.turns for image in turn.images)

    @property
    def tool_calls(self) -> tuple[ToolCall, ...]:
        """Every tool call of the conversation, in order."""
        return tuple(call for turn in self.turns for call in turn.tool_calls)

    @property
    def tool_field(self) -> str | None:
        """The first field that uses tools (`tools[0]`, a call's field), for messages; None
        for a conversation without tools."""
        if self.tools:
            return self.tools[0].field
        calls = self.tool_calls
        return calls[0].field if calls else None


class RowError(ValueError):
    """A row that cannot become an Example: `field` names what is wrong, `reason` says how."""

    def __init__(self, field: str, reason: str):
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


@dataclasses.dataclass(frozen=True)
class Problem:
    """One problem found in a data file, located precisely enough to fix it; `line` 0 means
    the whole source (a dataset's column, a setting), printed without a line."""

    path: str
    line: int
    field: str
    reason: str

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}" if self.line else self.path
        return f"{where}: {self.field}: {self.reason}"


class DataError(ValueError):
    """All the problems of a data source, raised together before any training starts."""

    def __init__(self, problems: list[Problem], max_shown: int = 50):
        self.problems = list(problems)
        shown = "\n".join(f"  {p}" for p in self.problems[:max_shown])
        more = len(self.problems) - max_shown
        tail = f"\n  ... and {more} more" if more > 0 else ""
        super().__init__(f"{len(self.problems)} problem(s) in the data:\n{shown}{tail}")


def validate_turns(turns: list[Turn]) -> tuple[Turn, ...]:
    """Checks that turns alternate user/model, start with user and end with model.

    Raises:
      RowError: naming the turn index (`turns[i]`) and what is wrong with it.
    """
    return _validate(turns, last_role=MODEL)


def validate_prompt(turns: list[Turn]) -> tuple[Turn, ...]:
    """Checks that turns alternate user/model, start with user and end with user: the prompt
    of a preference pair, which the chosen and rejected answers complete.

    Raises:
      RowError: naming the turn index (`turns[i]`) and what is wrong with it.
    """
    return _validate(turns, last_role=USER)


def _validate(turns: list[Turn], last_role: str) -> tuple[Turn, ...]:
    """Checks roles, texts and alternation, a first user turn and a last `last_role` turn."""
    if not turns:
        raise RowError("turns", "no turns")
    for index, turn in enumerate(turns):
        if turn.role not in ROLES:
            raise RowError(f"turns[{index}].role", f"unknown role {turn.role!r}")
        if not isinstance(turn.text, str):
            raise RowError(
                f"turns[{index}].text", f"expected a string, got {type(turn.text).__name__}"
            )
        if not turn.text.strip() and not turn.images and not turn.tool_calls:
            raise RowError(f"turns[{index}].text", "empty text")
        if turn.images and turn.role != USER:
            raise RowError(
                f"turns[{index}].text",
                "an image in a model (assistant) turn; only user turns can hold images",
            )
        # A model turn may follow a model turn that called tools: it answers their results.
        continues = turn.role == MODEL and index > 0 and turns[index - 1].tool_calls
        if index > 0 and turns[index - 1].role == turn.role and not continues:
            raise RowError(f"turns[{index}].role", f"two {turn.role} turns in a row")
    if turns[0].role != USER:
        raise RowError(
            "turns[0].role", f"the conversation starts with {turns[0].role!r}, not 'user'"
        )
    if turns[-1].role != last_role:
        raise RowError(
            f"turns[{len(turns) - 1}].role",
            f"the conversation does not end with a {last_role} turn",
        )
    return tuple(turns)
