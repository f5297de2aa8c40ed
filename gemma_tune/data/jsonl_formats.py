"""The JSONL dialects: how to recognize each one's rows, and how to map a row to an Example.

Each dialect is the fine-tuning file format of a tool users already have data for:

  dolly:             {"instruction", "response", "context"?, "category"?}  (Dolly-15k)
  gemini:            {"systemInstruction"?: {"parts": [{"text"}]},
                      "contents": [{"role": "user"|"model", "parts": [{"text"}, ...]}]}
  vertex_legacy:     {"input_text", "output_text"}  (Vertex AI PaLM tuning)
  ai_studio:         {"text_input", "output"}  (Google AI Studio tuning)
  openai_completion: {"prompt", "completion"}
  openai_chat:       {"messages": [{"role": "system"|"user"|"assistant", "content"}]}

A parser reads one row (a JSON object) and returns an Example, raising `fields.RowErrors` with
every problem of the row, or `read_result.Skip` for a row a policy leaves out.
"""

from __future__ import annotations

from collections.abc import Callable

from gemma_tune.data import dolly, example, fields

Parser = Callable[[dict, str, bool], example.Example]

# The keys that mark a row as belonging to a dialect; a row fits every dialect it shares a
# marker key with.
MARKERS: dict[str, frozenset[str]] = {
    "dolly": frozenset({"instruction", "response"}),
    "gemini": frozenset({"contents", "systemInstruction"}),
    "vertex_legacy": frozenset({"input_text", "output_text"}),
    "ai_studio": frozenset({"text_input", "output"}),
    "openai_completion": frozenset({"prompt", "completion"}),
    "openai_chat": frozenset({"messages"}),
}
FORMATS = tuple(MARKERS)


def formats_of(row: dict) -> list[str]:
    """The dialects whose marker keys `row` has, in `FORMATS` order."""
    return [name for name, markers in MARKERS.items() if markers & row.keys()]


def parse_dolly(row: dict, source: str, keep_context: bool) -> example.Example:
    """Maps a Dolly row; rows with a context follow the `dolly` module's policy."""
    checker = fields.Checker()
    instruction = checker.text(row, "instruction")
    response = checker.text(row, "response")
    context = checker.text(row, "context", required=False)
    checker.text(row, "category", required=False)
    checker.done()
    return dolly.to_example(
        instruction, response, context, keep_context=keep_context, source=source
    )


def _pair_parser(input_key: str, output_key: str) -> Parser:
    """A parser for the dialects that are one prompt string and one response string."""

    def parse(row: dict, source: str, keep_context: bool) -> example.Example:
        del keep_context  # Only Dolly rows carry a context.
        checker = fields.Checker()
        prompt = checker.text(row, input_key)
        response = checker.text(row, output_key)
        checker.done()
        turns = (example.Turn(example.USER, prompt), example.Turn(example.MODEL, response))
        return example.Example(turns=turns, source=source)

    parse.__doc__ = f"Maps a {{{input_key!r}, {output_key!r}}} row to a single exchange."
    return parse


def _gemini_parts(holder: dict, field: str, checker: fields.Checker) -> str | None:
    """Concatenates the text parts of a Gemini `parts` list (at `field`), checking each part."""
    parts = holder.get("parts")
    if "parts" not in holder:
        checker.add(field, "missing")
        return None
    if not isinstance(parts, list):
        checker.add(field, f"expected a list of parts, got {fields.type_name(parts)}")
        return None
    if not parts:
        checker.add(field, "no parts")
        return None
    texts = []
    for index, part in enumerate(parts):
        part_field = f"{field}[{index}]"
        if not isinstance(part, dict):
            checker.add(part_field, f"expected an object, got {fields.type_name(part)}")
            continue
        if "text" not in part:
            checker.add(f"{part_field}.text", "missing (only text parts are supported)")
            continue
        text = checker.text(part, "text", f"{part_field}.text", required=False)
        if text is None:
            checker.add(f"{part_field}.text", "is null")
            continue
        texts.append(text)
    if len(texts) != len(parts):
        return None
    return checker.require("".join(texts), field)


def _list_field(row: dict, key: str, checker: fields.Checker) -> list | None:
    """Reads the non-empty list `row[key]`, recording a problem if it is not one."""
    if key not in row or row[key] is None:
        checker.add(key, "missing" if key not in row else "is null")
        return None
    value = row[key]
    if not isinstance(value, list):
        checker.add(key, f"expected a list, got {fields.type_name(value)}")
        return None
    if not value:
        checker.add(key, "empty")
        return None
    return value


def parse_gemini(row: dict, source: str, keep_context: bool) -> example.Example:
    """Maps a Vertex AI Gemini SFT row: optional system instruction, then user/model contents."""
    del keep_context
    checker = fields.Checker()
    system = None
    instruction = row.get("systemInstruction")
    if instruction is not None:
        if not isinstance(instruction, dict):
            checker.add(
                "systemInstruction", f"expected an object, got {fields.type_name(instruction)}"
            )
        else:
            checker.text(instruction, "role", "systemInstruction.role", required=False)
            system = _gemini_parts(instruction, "systemInstruction.parts", checker)
    contents = _list_field(row, "contents", checker)
    turns, role_fields, text_fields = [], [], []
    roles_known = contents is not None
    for index, content in enumerate(contents or []):
        field = f"contents[{index}]"
        if not isinstance(content, dict):
            checker.add(field, f"expected an object, got {fields.type_name(content)}")
            roles_known = False
            continue
        role = checker.text(content, "role", f"{field}.role")
        if role is not None and role not in example.ROLES:
            checker.add(f"{field}.role", f"unknown role {role!r}; expected 'user' or 'model'")
            role = None
        text = _gemini_parts(content, f"{field}.parts", checker)
        if role is None:
            roles_known = False
            continue
        # A placeholder keeps the order checks going when only the text is bad.
        turns.append(example.Turn(role, text if text is not None else "?"))
        role_fields.append(f"{field}.role")
        text_fields.append(f"{field}.parts")
    checked = None
    if roles_known:
        checked = fields.check_turns(turns, role_fields, text_fields, "contents", checker)
    checker.done()
    return example.Example(turns=checked, system=system, source=source)


_CHAT_ROLES = {"user": example.USER, "assistant": example.MODEL}


def _chat_content(message: dict, field: str, checker: fields.Checker) -> str | None:
    """Reads an OpenAI message's content: a string, or a list of {"type": "text"} parts."""
    content = message.get("content")
    if isinstance(content, list):
        texts = []
        for index, part in enumerate(content):
            part_field = f"{field}[{index}]"
            if not isinstance(part, dict) or part.get("type") != "text":
                checker.add(part_field, "only {'type': 'text', 'text': ...} parts are supported")
                return None
            text = checker.text(part, "text", f"{part_field}.text", required=False)
            if text is None:
                checker.add(f"{part_field}.text", "missing")
                return None
            texts.append(text)
        return checker.require("".join(texts), field)
    return checker.text(message, "content", field)


def parse_openai_chat(row: dict, source: str, keep_context: bool) -> example.Example:
    """Maps an OpenAI chat row; a leading system message becomes `Example.system`."""
    del keep_context
    checker = fields.Checker()
    messages = _list_field(row, "messages", checker)
    system = None
    turns, role_fields, text_fields = [], [], []
    roles_known = messages is not None
    for index, message in enumerate(messages or []):
        field = f"messages[{index}]"
        if not isinstance(message, dict):
            checker.add(field, f"expected an object, got {fields.type_name(message)}")
            roles_known = False
            continue
        role = checker.text(message, "role", f"{field}.role")
        content = _chat_content(message, f"{field}.content", checker)
        if role == "system":
            if index == 0:
                system = content
            else:
                checker.add(f"{field}.role", "a system message is only allowed first")
                roles_known = False
            continue
        if role is not None and role not in _CHAT_ROLES:
            checker.add(
                f"{field}.role", f"unknown role {role!r}; expected 'system', 'user' or 'assistant'"
            )
            role = None
        if role is None:
            roles_known = False
            continue
        turns.append(example.Turn(_CHAT_ROLES[role], content if content is not None else "?"))
        role_fields.append(f"{field}.role")
        text_fields.append(f"{field}.content")
    checked = None
    if roles_known:
        checked = fields.check_turns(turns, role_fields, text_fields, "messages", checker)
    checker.done()
    return example.Example(turns=checked, system=system, source=source)


PARSERS: dict[str, Parser] = {
    "dolly": parse_dolly,
    "gemini": parse_gemini,
    "vertex_legacy": _pair_parser("input_text", "output_text"),
    "ai_studio": _pair_parser("text_input", "output"),
    "openai_completion": _pair_parser("prompt", "completion"),
    "openai_chat": parse_openai_chat,
}
