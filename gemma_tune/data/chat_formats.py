"""The conversation formats: OpenAI/TRL chat messages, ShareGPT and Vertex AI Gemini.

  openai_chat: {"messages": [{"role": "system"|"user"|"assistant", "content", "name"?,
                "weight"?: 0|1}]}  (OpenAI fine-tuning, TRL's conversational format)
  sharegpt:    {"conversations": [{"from": "system"|"human"|"gpt", "value"}], "system"?}
               (or role/content messages with user/assistant roles inside `conversations`)
  gemini:      {"systemInstruction"?: {"parts": [{"text"}]},
                "contents": [{"role": "user"|"model", "parts": [{"text"}, ...]}]}

A leading system message becomes `Example.system`. OpenAI's `"weight": 0` on an assistant
message keeps the turn in the conversation but out of the loss (`Turn.weight`). OpenAI chat
rows may use tools (`tools`, `tool_calls`, `tool` messages: `tool_messages`); in the other
formats tool calls are refused with `refused.TOOLS` rather than misread. Rows of a local file
may hold images in user turns (`image_parts`: OpenAI `image_url` parts, TRL `{"type": "image"}`
placeholders with an `images` column, Gemini `inlineData` / `fileData` parts); elsewhere (a Hub
dataset, preference pairs, TRL prompt/completion rows) image parts are refused with
`refused.IMAGES`. `read_messages` is shared with TRL's conversational prompt/completion rows.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from gemma_tune.data import example, fields, image_parts, refused, tool_messages

OPENAI_ROLES = {"system": "system", "user": example.USER, "assistant": example.MODEL}
SHAREGPT_ROLES = {"system": "system", "human": example.USER, "gpt": example.MODEL}
SHAREGPT_ROLES.update({"user": example.USER, "assistant": example.MODEL})
_OPENAI_KEYS = frozenset({"role", "content", "weight"})  # A `name` is warned about.


def content_text(message: Mapping, key: str, field: str, checker: fields.Checker) -> str | None:
    """Reads a message's content: a string, or a list of {"type": "text", "text"} parts
    (joined); None after recording a problem in `checker` (image parts are refused)."""
    return content_parts(message, key, field, checker)[0]


def _image_part(
    part: Mapping, kind: str, field: str, images: image_parts.RowImages
) -> example.Image | None:
    """Reads an `image_url` part or a TRL `{"type": "image"}` placeholder."""
    if kind == "image":
        images.checker.note_unused(part, {"type", "image"}, fields.pattern(field))
        return images.placeholder(part, field)
    images.checker.note_unused(part, {"type", "image_url"}, fields.pattern(field))
    holder = part.get("image_url")
    if isinstance(holder, Mapping):
        images.checker.note_unused(holder, {"url"}, fields.pattern(f"{field}.image_url"))
        return images.url(holder.get("url"), f"{field}.image_url.url")
    return images.url(holder, f"{field}.image_url")


def content_parts(
    message: Mapping,
    key: str,
    field: str,
    checker: fields.Checker,
    images: image_parts.RowImages | None = None,
) -> tuple[str | None, tuple[str | example.Image, ...]]:
    """Reads a message's content: a string, or a list of {"type": "text", "text"} parts and,
    with `images` (a local file's row), image parts (`image_url`, TRL's `{"type": "image"}`).

    Returns:
      `(text, parts)`: the text parts joined (None after recording a problem in `checker`;
      it may be empty when the content has an image), and, when the content has an image,
      its text and image parts in order (else `()`).
    """
    content = message.get(key)
    if not isinstance(content, list):
        return checker.text(message, key, field), ()
    texts, parts, readable = [], [], True
    for index, part in enumerate(content):
        part_field = f"{field}[{index}]"
        kind = part.get("type") if isinstance(part, Mapping) else None
        if images is not None and kind in ("image_url", "image"):
            image = _image_part(part, kind, part_field, images)
            readable = readable and image is not None
            parts.append(image)
            continue
        if kind in refused.IMAGE_PART_TYPES:
            reason = refused.IMAGES if images is None else refused.OTHER_MEDIA.format(kind=kind)
            checker.add(f"{part_field}.type", reason)
            return None, ()
        if kind != "text":
            checker.add(part_field, "only {'type': 'text', 'text': ...} parts are supported")
            return None, ()
        text = checker.text(part, "text", f"{part_field}.text", required=False)
        if text is None:
            checker.add(f"{part_field}.text", "missing")
            return None, ()
        texts.append(text)
        parts.append(text)
    if not readable:
        return None, ()
    if not any(isinstance(part, example.Image) for part in parts):
        return checker.require("".join(texts), field), ()
    return "".join(texts), tuple(parts)


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
    images: image_parts.RowImages | None = None,
    tools: tuple[example.Tool, ...] | None = None,
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
      images: reads the image parts of a local file's row; None refuses them.
      tools: the row's tool declarations, to read OpenAI tool calls and tool messages
        (`tool_messages`); None refuses them (`refused.TOOLS`).

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
        role = checker.text(message, role_key, f"{field}.{role_key}")
        if tools is not None and role == "tool":
            roles_known = (
                tool_messages.read_response(message, field, turns, checker) and roles_known
            )
            continue
        checker.note_unused(message, used_keys | refused.TOOL_KEYS, fields.pattern(field))
        refused_keys = refused.TOOL_KEYS if tools is None else refused.LEGACY_TOOL_KEYS
        refused_roles = refused.TOOL_ROLES if tools is None else refused.LEGACY_TOOL_ROLES
        tool_keys = sorted(key for key in refused_keys if message.get(key))
        if role in refused_roles or tool_keys:
            where = f"{field}.{tool_keys[0]}" if tool_keys else f"{field}.{role_key}"
            checker.add(where, refused.TOOLS if tools is None else refused.LEGACY_FUNCTIONS)
            roles_known = False
            continue
        if tools is not None and message.get("tool_call_id") is not None:
            checker.add(f"{field}.tool_call_id", "only tool messages answer a call")
            roles_known = False
            continue
        if tools is not None and message.get("tool_calls"):
            weight = _weight(message, field, example.MODEL, checker)
            if not tool_messages.read_call_turn(message, field, role, weight, checker, turns):
                roles_known = False
                continue
            role_fields.append(f"{field}.{role_key}")
            text_fields.append(f"{field}.{content_key}")
            continue
        content_field = f"{field}.{content_key}"
        content, parts = content_parts(message, content_key, content_field, checker, images)
        if role is not None and role not in roles:
            names = ", ".join(repr(name) for name in roles)
            checker.add(f"{field}.{role_key}", f"unknown role {role!r}; expected one of {names}")
            role = None
        if role is None:
            roles_known = False
            continue
        role = roles[role]
        if role == "system" and parts:
            checker.add(content_field, "an image in a system message; only user turns hold images")
            roles_known = False
            continue
        if role == "system":
            if index == 0 and system is None:
                system = content
            else:
                checker.add(f"{field}.{role_key}", "a system message is only allowed first")
                roles_known = False
            continue
        weight = _weight(message, field, role, checker)
        # A placeholder keeps the order checks going when only the text is bad.
        turns.append(example.Turn(role, content if content is not None else "?", weight, parts))
        role_fields.append(f"{field}.{role_key}")
        text_fields.append(f"{field}.{content_key}")
    if not roles_known:
        return system, None
    validate = example.validate_prompt if prompt_only else example.validate_turns
    checked = fields.check_turns(turns, role_fields, text_fields, container, checker, validate)
    if checked and tools is not None:
        tool_messages.check_conversation(turns, tools, checker)
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
    images = image_parts.RowImages.for_row(row, source, checker)
    tools = tool_messages.read_tools(row, checker)
    system, turns = None, None
    if messages is not None:
        system, turns = read_messages(
            _indexed(messages, "messages"), checker, images=images, tools=tools
        )
        if images is not None:
            images.finish()
    checker.done()
    return example.Example(turns=turns, system=system, source=source, tools=tools)


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
    """Concatenates the text parts of a Gemini `parts` list (at `field`), checking each part
    (image parts are refused)."""
    return gemini_content_parts(holder, field, checker)[0]


def gemini_content_parts(
    holder: dict,
    field: str,
    checker: fields.Checker,
    images: image_parts.RowImages | None = None,
) -> tuple[str | None, tuple[str | example.Image, ...]]:
    """Reads a Gemini `parts` list (at `field`): text parts and, with `images` (a local
    file's row), `inlineData` / `fileData` image parts.

    Returns:
      `(text, parts)` as `content_parts` does.
    """
    parts = holder.get("parts")
    if "parts" not in holder:
        checker.add(field, "missing")
        return None, ()
    if not isinstance(parts, list):
        checker.add(field, f"expected a list of parts, got {fields.type_name(parts)}")
        return None, ()
    if not parts:
        checker.add(field, "no parts")
        return None, ()
    texts, read = [], []
    for index, part in enumerate(parts):
        part_field = f"{field}[{index}]"
        if not isinstance(part, dict):
            checker.add(part_field, f"expected an object, got {fields.type_name(part)}")
            continue
        if "functionCall" in part or "functionResponse" in part:
            checker.add(part_field, refused.TOOLS)
            continue
        if images is not None and ("inlineData" in part or "fileData" in part):
            key = "inlineData" if "inlineData" in part else "fileData"
            checker.note_unused(part, {key}, fields.pattern(part_field))
            read_image = images.inline_data if key == "inlineData" else images.file_data
            image = read_image(part[key], f"{part_field}.{key}")
            if image is not None:
                read.append(image)
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
        read.append(text)
    if len(read) != len(parts):
        return None, ()
    if not any(isinstance(part, example.Image) for part in read):
        return checker.require("".join(texts), field), ()
    return "".join(texts), tuple(read)


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
    row: dict,
    checker: fields.Checker,
    *,
    prompt_only: bool = False,
    images: image_parts.RowImages | None = None,
) -> tuple[example.Turn, ...] | None:
    """Reads a Gemini `contents` list of user/model turns; `prompt_only` for a preference
    prompt, which ends with a user turn; `images` reads the image parts of a local file's
    row (None refuses them). None after recording a problem in `checker`."""
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
        text, parts = gemini_content_parts(content, f"{field}.parts", checker, images)
        if role is None:
            roles_known = False
            continue
        turns.append(example.Turn(role, text if text is not None else "?", parts=parts))
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
    images = image_parts.RowImages.for_row(row, source, checker)
    checked = gemini_contents(row, checker, images=images)
    checker.done()
    return example.Example(turns=checked, system=system, source=source)
