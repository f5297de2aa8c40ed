"""The conversation formats: OpenAI/TRL chat messages, ShareGPT and Vertex AI Gemini.

  openai_chat: {"messages": [{"role": "system"|"user"|"assistant", "content", "name"?,
                "weight"?: 0|1}]}  (OpenAI fine-tuning, TRL's conversational format)
  sharegpt:    {"conversations": [{"from": "system"|"human"|"gpt", "value"}], "system"?}
               (or role/content messages with user/assistant roles inside `conversations`)
  gemini:      {"systemInstruction"?: {"parts": [{"text"}]},
                "contents": [{"role": "user"|"model", "parts": [{"text"}, ...]}]}

A leading system message becomes `Example.system`. OpenAI's `"weight": 0` on an assistant
message keeps the turn in the conversation but out of the loss (`Turn.weight`). Tool calls,
tool messages and image parts are refused with `refused.TOOLS` / `refused.IMAGES` rather than
misread. `read_messages` is shared with TRL's conversational prompt/completion rows.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from gemma_tune.data import example, fields, refused

OPENAI_ROLES = {"system": "system", "user": example.USER, "assistant": example.MODEL}
SHAREGPT_ROLES = {"system": "system", "human": example.USER, "gpt": example.MODEL}
SHAREGPT_ROLES.update({"user": example.USER, "assistant": example.MODEL})
_OPENAI_KEYS = frozenset({"role", "content", "weight"})  # A `name` is warned about.


def content_text(message: Mapping, key: str, field: str, checker: fields.Checker) -> str | None:
    """Reads a message's content: a string, or a list of {"type": "text", "text"} parts
    (joined); None after recording a problem in `checker`."""
    content = message.get(key)
    if not isinstance(content, list):
        return checker.text(message, key, field)
    texts = []
    for index, part in enumerate(content):
        part_field = f"{field}[{index}]"
        kind = part.get("type") if isinstance(part, Mapping) else None
        if kind in refused.IMAGE_PART_TYPES:
            checker.add(f"{part_field}.type", refused.IMAGES)
            return None
        if kind != "text":
            checker.add(part_field, "only {'type': 'text', 'text': ...} parts are supported")
            return None
        text = checker.text(part, "text", f"{part_field}.text", required=False)
        if text is None:
            checker.add(f"{part_field}.text", "missing")
            return None
        texts.append(text)
    return checker.require("".join(texts), field)


def _weight(message: Mapping, field: str, role: str, checker: fields.Checker) -> float:
    """Reads OpenAI's optional per-message `weight` (0 or 1; assistant messages only)."""
    if message.get("weight") is None:  # Absent (Arrow tables fill absent keys with null).
        return 1.0
    value = message["weight"]
    if isinstance(value, bool) or value not in (0, 1):
        checker.add(f"{field}.weight", f"expected 0 or 1, got {value!r}")
        return 1.0
    if role != example.MODEL:
        checker.add(f"{field}.weight", "only assistant messages take a weight")
        return 1.0
    return float(value)


def read_messages(
    messages: Sequence[tuple[str, object]],
    checker: fields.Checker,
    *,
    roles: Mapping[str, str] = OPENAI_ROLES,
    role_key: str = "role",
    content_key: str = "content",
    used_keys: frozenset[str] = _OPENAI_KEYS,
    container: str = "messages",
    system: str | None = None,
    prompt_only: bool = False,
) -> tuple[str | None, tuple[example.Turn, ...] | None]:
    """Reads a list of chat messages into a system prompt and validated turns.

    Args:
      messages: `(field, message)` pairs, the field naming the message in errors
        (`messages[3]`, `completion[0]`).
      checker: collects the problems and the unused keys.
      roles: the format's role names -> "system", `example.USER` or `example.MODEL`.
      role_key: the key holding the role ("role", ShareGPT's "from").
      content_key: the key holding the text ("content", ShareGPT's "value").
      used_keys: the message keys the format reads; others are noted as unused, named by
        the field without its index (`messages[].metadata`).
      container: the field named when the whole conversation is wrong.
      system: a system prompt given outside the messages (ShareGPT's "system" key), if any.
      prompt_only: the messages are a preference pair's prompt, which ends with a user
        turn (`example.validate_prompt`) and trains nothing by itself.

    Returns:
      `(system, turns)`; turns is None when a problem was recorded.
    """
    turns, role_fields, text_fields = [], [], []
    roles_known = True
    for index, (field, message) in enumerate(messages):
        if not isinstance(message, Mapping):
            checker.add(field, f"expected an object, got {fields.type_name(message)}")
            roles_known = False
            continue
        checker.note_unused(message, used_keys | refused.TOOL_KEYS, fields.pattern(field))
        role = checker.text(message, role_key, f"{field}.{role_key}")
        tool_keys = sorted(key for key in refused.TOOL_KEYS if message.get(key))
        if role in refused.TOOL_ROLES or tool_keys:
            where = f"{field}.{tool_keys[0]}" if tool_keys else f"{field}.{role_key}"
            checker.add(where, refused.TOOLS)
            roles_known = False
            continue
        content = content_text(message, content_key, f"{field}.{content_key}", checker)
        if role is not None and role not in roles:
            names = ", ".join(repr(name) for name in roles)
            checker.add(f"{field}.{role_key}", f"unknown role {role!r}; expected one of {names}")
            role = None
        if role is None:
            roles_known = False
            continue
        role = roles[role]
        if role == "system":
            if index == 0 and system is None:
                system = content
            else:
                checker.add(f"{field}.{role_key}", "a system message is only allowed first")
                roles_known = False
            continue
        weight = _weight(message, field, role, checker)
        # A placeholder keeps the order checks going when only the text is bad.
        turns.append(example.Turn(role, content if content is not None else "?", weight))
        role_fields.append(f"{field}.{role_key}")
        text_fields.append(f"{field}.{content_key}")
    if not roles_known:
        return system, None
    validate = example.validate_prompt if prompt_only else example.validate_turns
    checked = fields.check_turns(turns, role_fields, text_fields, container, checker, validate)
    if (
        checked
        and not prompt_only
        and not any(turn.weight for turn in checked if turn.role == example.MODEL)
    ):
        checker.add(container, "every assistant message has weight 0: nothing to train on")
        return system, None
    return system, checked


def _indexed(items: list, key: str) -> list[tuple[str, object]]:
    """`items` as `(f"{key}[i]", item)` pairs for `read_messages`."""
    return [(f"{key}[{index}]", item) for index, item in enumerate(items)]


def parse_openai_chat(
    row: dict, source: str, keep_context: bool, checker: fields.Checker
) -> example.Example:
    """Maps an OpenAI (or TRL conversational) chat row."""
    del keep_context
    messages = fields.list_field(row, "messages", checker)
    system, turns = None, None
    if messages is not None:
        system, turns = read_messages(_indexed(messages, "messages"), checker)
    checker.done()
    return example.Example(turns=turns, system=system, source=source)


def parse_sharegpt(
    row: dict, source: str, keep_context: bool, checker: fields.Checker
) -> example.Example:
    """Maps a ShareGPT row (`conversations` of `from`/`value`; roles system, human, gpt)."""
    del keep_context
    system = checker.text(row, "system", required=False)
    conversations = fields.list_field(row, "conversations", checker)
    turns = None
    if conversations is not None:
        first = conversations[0] if isinstance(conversations[0], Mapping) else {}
        # Some ShareGPT exports use OpenAI's role/content keys inside `conversations`.
        keys = ("role", "content") if "role" in first and "from" not in first else ("from", "value")
        system, turns = read_messages(
            _indexed(conversations, "conversations"),
            checker,
            roles=SHAREGPT_ROLES,
            role_key=keys[0],
            content_key=keys[1],
            used_keys=frozenset(keys) | {"weight"},
            container="conversations",
            system=system if system and system.strip() else None,
        )
    checker.done()
    return example.Example(turns=turns, system=system, source=source)


def gemini_parts(holder: dict, field: str, checker: fields.Checker) -> str | None:
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
        if "functionCall" in part or "functionResponse" in part:
            checker.add(part_field, refused.TOOLS)
            continue
        if "inlineData" in part or "fileData" in part:
            checker.add(part_field, refused.IMAGES)
            continue
        if "text" not in part:
            checker.add(f"{part_field}.text", "missing (only text parts are supported)")
            continue
        checker.note_unused(part, {"text"}, fields.pattern(part_field))
        text = checker.text(part, "text", f"{part_field}.text", required=False)
        if text is None:
            checker.add(f"{part_field}.text", "is null")
            continue
        texts.append(text)
    if len(texts) != len(parts):
        return None
    return checker.require("".join(texts), field)


def gemini_system(row: dict, key: str, checker: fields.Checker) -> str | None:
    """Reads a Gemini system instruction (`{"role"?, "parts": [{"text"}]}`) at `row[key]`."""
    instruction = row.get(key)
    if instruction is None:
        return None
    if not isinstance(instruction, dict):
        checker.add(key, f"expected an object, got {fields.type_name(instruction)}")
        return None
    checker.text(instruction, "role", f"{key}.role", required=False)
    checker.note_unused(instruction, {"role", "parts"}, key)
    return gemini_parts(instruction, f"{key}.parts", checker)


def gemini_contents(
    row: dict, checker: fields.Checker, *, prompt_only: bool = False
) -> tuple[example.Turn, ...] | None:
    """Reads a Gemini `contents` list of user/model turns; `prompt_only` for a preference
    prompt, which ends with a user turn. None after recording a problem in `checker`."""
    contents = fields.list_field(row, "contents", checker)
    turns, role_fields, text_fields = [], [], []
    roles_known = contents is not None
    for index, content in enumerate(contents or []):
        field = f"contents[{index}]"
        if not isinstance(content, dict):
            checker.add(field, f"expected an object, got {fields.type_name(content)}")
            roles_known = False
            continue
        checker.note_unused(content, {"role", "parts"}, "contents[]")
        role = checker.text(content, "role", f"{field}.role")
        if role is not None and role not in example.ROLES:
            checker.add(f"{field}.role", f"unknown role {role!r}; expected 'user' or 'model'")
            role = None
        text = gemini_parts(content, f"{field}.parts", checker)
        if role is None:
            roles_known = False
            continue
        turns.append(example.Turn(role, text if text is not None else "?"))
        role_fields.append(f"{field}.role")
        text_fields.append(f"{field}.parts")
    if not roles_known:
        return None
    validate = example.validate_prompt if prompt_only else example.validate_turns
    return fields.check_turns(turns, role_fields, text_fields, "contents", checker, validate)


def parse_gemini(
    row: dict, source: str, keep_context: bool, checker: fields.Checker
) -> example.Example:
    """Maps a Vertex AI Gemini SFT row: optional system instruction, then user/model contents."""
    del keep_context
    system = gemini_system(row, "systemInstruction", checker)
    checked = gemini_contents(row, checker)
    checker.done()
    return example.Example(turns=checked, system=system, source=source)
