"""Data that supervised tuning must not read: named as what it is, never half-read.

Some files look close enough to a supported format that a lenient reader would train on them
wrongly: a KTO file (`prompt`, `completion`, `label`) read as prompt/completion trains on the
answers labelled bad; a preference file (`chosen`/`rejected`, OpenAI's `preferred_output`)
read as chat trains on the rejected answer or on neither; a Vertex AI preference row
(`contents`, `completions`) read as Gemini chat trains on the prompt alone. The preference
reader (`preference_rows`) reads those rows and refuses the rest. Tool calls are read from
OpenAI chat rows only (`tools`, `tool_calls`, `tool` messages: `tool_messages`); elsewhere
(ShareGPT, Gemini function parts, prompt/completion and preference rows, OpenAI's legacy
`functions` / `function_call`) they are refused. Images are read only from the supervised
chat rows of a local file (`image_parts`); an `images` column beside anything but
`messages`, a single `image` key, or image parts elsewhere (a Hub dataset, preference pairs)
are refused. These are refused with a message that says what the data is and what to do instead.
"""

from __future__ import annotations

from collections.abc import Mapping

PREFERENCE = (
    "preference data ({keys}) is not supported for supervised tuning: it needs a preference "
    "method such as DPO; to tune on the preferred answers, write them as prompt/completion or "
    "messages rows"
)
KTO = (
    "KTO data (prompt, completion, label) is not supported for supervised tuning: rows with "
    "label false are answers not to learn; keep the label true rows as prompt/completion "
    "without the label key"
)
IMAGES = (
    "images are not supported here: they are read only from the chat rows of a local file "
    "(OpenAI image_url parts, Gemini inlineData/fileData parts, TRL messages with "
    "{'type': 'image'} placeholders and an images column, a CSV image column), see "
    "docs/data_formats.md#images"
)
OTHER_MEDIA = (
    "{kind} parts are not supported; images are read from image_url parts and "
    "{{'type': 'image'}} placeholders"
)
TOOLS = (
    "tool calls are read from OpenAI chat rows only (messages with tool_calls and tool "
    "messages, a top-level tools list; docs/data_formats.md#tool-calls); write the row in that "
    "format, or leave out the tool messages to tune on the text turns"
)
LEGACY_FUNCTIONS = (
    "OpenAI's legacy functions / function_call format is not read; write tools, tool_calls "
    "and tool messages instead (docs/data_formats.md#tool-calls)"
)

_TRL_PREFERENCE = PREFERENCE.format(keys="chosen, rejected")
_OPENAI_PREFERENCE = PREFERENCE.format(keys="preferred_output, non_preferred_output")
_VERTEX_PREFERENCE = PREFERENCE.format(keys="contents, completions")
_PREFERENCE_KINDS = frozenset({_TRL_PREFERENCE, _OPENAI_PREFERENCE, _VERTEX_PREFERENCE})

# Row keys that mark a kind of data, and the message refusing it.
_ROW_KINDS: tuple[tuple[frozenset[str], str], ...] = (
    (frozenset({"prompt", "completion", "label"}), KTO),
    (frozenset({"chosen", "rejected"}), _TRL_PREFERENCE),
    (frozenset({"preferred_output", "non_preferred_output"}), _OPENAI_PREFERENCE),
    (frozenset({"contents", "completions"}), _VERTEX_PREFERENCE),
    (frozenset({"images"}), IMAGES),
    (frozenset({"image"}), IMAGES),
    (frozenset({"tools"}), TOOLS),
    (frozenset({"functions"}), LEGACY_FUNCTIONS),
)

TOOL_ROLES = frozenset({"tool", "function", "function_call", "observation", "ipython"})
TOOL_KEYS = frozenset({"tool_calls", "function_call", "tool_call_id"})
# The roles and keys of OpenAI's legacy function calling, refused even where tools are read.
LEGACY_TOOL_ROLES = TOOL_ROLES - {"tool"}
LEGACY_TOOL_KEYS = frozenset({"function_call"})
IMAGE_PART_TYPES = frozenset({"image_url", "image", "input_image", "input_audio", "file"})


def row_kind(
    row: Mapping, *, preference: bool = False, images: bool = False, tools: bool = False
) -> tuple[str, str] | None:
    """The refused kind of data `row` is, as `(field, message)`, or None when it is not one.

    The field names the key that gave the kind away (`label`, `chosen`, `tools`, ...). A
    null value counts as absent (Arrow tables fill absent keys with null). `preference`
    asks for the preference reader, which reads preference rows and refuses the rest;
    `images` for a local file's supervised reader, which reads an `images` column beside
    `messages` (TRL's format); `tools` for a supervised reader, which reads a `tools` list
    beside `messages` (OpenAI's format).
    """
    present = {key for key, value in row.items() if value is not None}
    for keys, message in _ROW_KINDS:
        if preference and message in _PREFERENCE_KINDS:
            continue
        if images and keys == {"images"} and "messages" in present:
            continue
        if tools and keys == {"tools"} and "messages" in present:
            continue
        if keys <= present:
            field = "label" if message is KTO else sorted(keys)[0]
            return field, message
    return None
