"""The preference row formats: how one row of each tool's layout becomes a `PreferencePair`.

  trl:               {"prompt", "chosen", "rejected", "system"?}: three strings (TRL's
                     standard form, a CSV with those columns), or the prompt as a list of
                     chat messages and each answer as a list of one assistant message (TRL's
                     conversational form)
  trl_implicit:      {"chosen", "rejected"}: two whole conversations (lists of messages)
                     sharing their prompt; each continues it with one assistant message
  openai_preference: {"input": {"messages"}, "preferred_output": [{assistant}],
                     "non_preferred_output": [{assistant}]}  (OpenAI preference fine-tuning)
  vertex_preference: {"system_instruction"?, "contents": [...], "completions": [{"score",
                     "completion": {"role": "model", "parts"}}, {...}]}  (Vertex AI Gemini
                     preference tuning: two completions, the higher score preferred)

A parser reads one row with a `fields.Checker`, which collects every problem (named by field:
`rejected`, `input.messages[2].role`, `completions[1].score`) and the keys left unused. A
prompt must end with a user turn; the two answers must differ.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping

from gemma_tune.data import chat_formats, example, fields, preference, refused

Parser = Callable[[dict, str, fields.Checker], preference.PreferencePair]
_ANSWER_KEYS = frozenset({"role", "content"})


@dataclasses.dataclass(frozen=True)
class Format:
    """One preference row format: its name (the forcing `format` value), the keys every row
    has, the other keys it reads, and `parse(row, source, checker) -> PreferencePair`."""

    name: str
    required: frozenset[str]
    optional: frozenset[str]
    parse: Parser

    @property
    def keys(self) -> frozenset[str]:
        """Every top-level key the format's parser reads."""
        return self.required | self.optional


def _answer(row: Mapping, key: str, checker: fields.Checker, offset: int = 0) -> str | None:
    """Reads `row[key]`, a list of exactly one assistant message, as the answer's text; the
    message is named `key[offset]` (its index in the row's whole list)."""
    messages = fields.list_field(row, key, checker)
    if messages is None:
        return None
    if len(messages) != 1:
        checker.add(key, f"{len(messages)} messages; expected one assistant message, the answer")
        return None
    field, message = f"{key}[{offset}]", messages[0]
    if not isinstance(message, Mapping):
        checker.add(field, f"expected an object, got {fields.type_name(message)}")
        return None
    checker.note_unused(message, _ANSWER_KEYS | refused.TOOL_KEYS | {"weight"}, f"{key}[]")
    role = checker.text(message, "role", f"{field}.role")
    tool_keys = sorted(name for name in refused.TOOL_KEYS if message.get(name))
    if role in refused.TOOL_ROLES or tool_keys:
        checker.add(f"{field}.{tool_keys[0]}" if tool_keys else f"{field}.role", refused.TOOLS)
        return None
    text = chat_formats.content_text(message, "content", f"{field}.content", checker)
    if role is not None and role != "assistant":
        checker.add(f"{field}.role", f"expected 'assistant' (the answer), got {role!r}")
        return None
    return text


def _prompt(messages: list, key: str, checker: fields.Checker):
    """Reads a list of chat messages at `key` as a prompt ending with a user turn."""
    indexed = [(f"{key}[{index}]", message) for index, message in enumerate(messages)]
    return chat_formats.read_messages(indexed, checker, container=key, prompt_only=True)


def _pair(checker, source, prompt, chosen, rejected, system, rejected_field):
    """The pair, after checking the answers differ; raises the row's problems if any."""
    if chosen is not None and rejected is not None and chosen.strip() == rejected.strip():
        checker.add(rejected_field, "identical to the preferred answer: nothing to prefer")
    checker.done()
    return preference.PreferencePair(prompt, chosen, rejected, system=system, source=source)


def parse_trl(row: dict, source: str, checker: fields.Checker) -> preference.PreferencePair:
    """Maps a TRL prompt/chosen/rejected row: three strings, or conversational lists."""
    system = checker.text(row, "system", required=False)
    system = system if system and system.strip() else None
    if not any(isinstance(row.get(key), list) for key in ("prompt", "chosen", "rejected")):
        prompt = checker.text(row, "prompt")
        chosen, rejected = checker.text(row, "chosen"), checker.text(row, "rejected")
        turns = (example.Turn(example.USER, prompt),) if prompt is not None else None
        return _pair(checker, source, turns, chosen, rejected, system, "rejected")
    for key in ("prompt", "chosen", "rejected"):
        if row.get(key) is not None and not isinstance(row[key], list):
            checker.add(
                key,
                f"expected a list of messages, got {fields.type_name(row[key])} (prompt, "
                "chosen and rejected are all strings or all lists of messages)",
            )
    checker.done()
    messages = fields.list_field(row, "prompt", checker)
    turns = None
    if messages is not None:
        message_system, turns = _prompt(messages, "prompt", checker)
        system = message_system or system
    chosen, rejected = _answer(row, "chosen", checker), _answer(row, "rejected", checker)
    return _pair(checker, source, turns, chosen, rejected, system, "rejected")


def parse_trl_implicit(
    row: dict, source: str, checker: fields.Checker
) -> preference.PreferencePair:
    """Maps a TRL implicit-prompt row: `chosen` and `rejected` are whole conversations whose
    shared leading messages are the prompt; after it, each has its one answer."""
    strings = [key for key in ("chosen", "rejected") if isinstance(row.get(key), str)]
    if strings:
        checker.add(
            strings[0],
            "a string without a prompt: add a prompt (key or CSV column), or give chosen and "
            "rejected as whole conversations (lists of messages) that share the prompt",
        )
    checker.done()
    chosen_messages = fields.list_field(row, "chosen", checker)
    rejected_messages = fields.list_field(row, "rejected", checker)
    checker.done()
    shared = 0
    for chosen_message, rejected_message in zip(chosen_messages, rejected_messages, strict=False):
        if chosen_message != rejected_message:
            break
        shared += 1
    if shared == len(chosen_messages) == len(rejected_messages):
        checker.add("rejected", "identical to chosen: nothing to prefer")
        checker.done()
    if shared == 0:
        checker.add(
            "rejected",
            "shares no leading message with chosen: the implicit-prompt form needs both "
            "conversations to start with the same prompt (or give a prompt key)",
        )
        checker.done()
    for key, messages in (("chosen", chosen_messages), ("rejected", rejected_messages)):
        if len(messages) - shared != 1:
            checker.add(
                f"{key}[{shared}]" if len(messages) > shared else key,
                f"after the prompt it shares with the other side ({shared} messages), "
                f"{len(messages) - shared} messages follow; expected one assistant message",
            )
    checker.done()
    system, turns = _prompt(chosen_messages[:shared], "chosen", checker)
    answers = {"chosen": chosen_messages[shared:], "rejected": rejected_messages[shared:]}
    chosen = _answer(answers, "chosen", checker, offset=shared)
    rejected = _answer(answers, "rejected", checker, offset=shared)
    return _pair(checker, source, turns, chosen, rejected, system, "rejected")


def parse_openai(row: dict, source: str, checker: fields.Checker) -> preference.PreferencePair:
    """Maps an OpenAI preference fine-tuning row (`input.messages` and one assistant message
    in each of `preferred_output` and `non_preferred_output`)."""
    request = row.get("input")
    turns, system = None, None
    if not isinstance(request, Mapping):
        checker.add("input", f"expected an object with messages, got {fields.type_name(request)}")
    elif request.get("tools") or request.get("functions"):
        checker.add("input.tools", refused.TOOLS)
    else:
        checker.note_unused(request, {"messages", "tools", "parallel_tool_calls"}, "input")
        messages = fields.list_field(request, "messages", checker)
        if messages is not None:
            system, turns = _prompt(messages, "input.messages", checker)
    chosen = _answer(row, "preferred_output", checker)
    rejected = _answer(row, "non_preferred_output", checker)
    return _pair(checker, source, turns, chosen, rejected, system, "non_preferred_output")


def _completion(item: object, field: str, checker: fields.Checker):
    """One Vertex completion `{"score", "completion": {"role"?, "parts"}}` -> (score, text)."""
    if not isinstance(item, Mapping):
        checker.add(field, f"expected an object, got {fields.type_name(item)}")
        return None, None
    checker.note_unused(item, {"score", "completion"}, "completions[]")
    score = item.get("score")
    if isinstance(score, bool) or not isinstance(score, int | float):
        checker.add(f"{field}.score", f"expected a number, got {fields.type_name(score)}")
        score = None
    completion = item.get("completion")
    if not isinstance(completion, Mapping):
        checker.add(
            f"{field}.completion", f"expected an object, got {fields.type_name(completion)}"
        )
        return score, None
    checker.note_unused(completion, {"role", "parts"}, "completions[].completion")
    role = checker.text(completion, "role", f"{field}.completion.role", required=False)
    if role is not None and role != example.MODEL:
        checker.add(f"{field}.completion.role", f"expected 'model', got {role!r}")
    text = chat_formats.gemini_parts(completion, f"{field}.completion.parts", checker)
    return score, text


def parse_vertex(row: dict, source: str, checker: fields.Checker) -> preference.PreferencePair:
    """Maps a Vertex AI Gemini preference row: the higher-scored of two completions is
    preferred."""
    key = "systemInstruction" if "systemInstruction" in row else "system_instruction"
    system = chat_formats.gemini_system(row, key, checker)
    turns = chat_formats.gemini_contents(row, checker, prompt_only=True)
    completions = fields.list_field(row, "completions", checker)
    chosen = rejected = None
    if completions is not None and len(completions) != 2:
        checker.add(
            "completions", f"{len(completions)} completions; expected two, one scored higher"
        )
    elif completions is not None:
        (first_score, first), (second_score, second) = (
            _completion(item, f"completions[{index}]", checker)
            for index, item in enumerate(completions)
        )
        if first_score is not None and first_score == second_score:
            checker.add("completions[1].score", "equal to completions[0].score: nothing to prefer")
        elif first_score is not None and second_score is not None:
            chosen, rejected = (first, second) if first_score > second_score else (second, first)
    return _pair(checker, source, turns, chosen, rejected, system, "completions")


def _format(name: str, required: set[str], optional: set[str], parse: Parser) -> Format:
    return Format(name, frozenset(required), frozenset(optional), parse)


_ALL = (
    _format("trl", {"prompt", "chosen", "rejected"}, {"system"}, parse_trl),
    _format("trl_implicit", {"chosen", "rejected"}, set(), parse_trl_implicit),
    _format(
        "openai_preference",
        {"input", "preferred_output", "non_preferred_output"},
        set(),
        parse_openai,
    ),
    _format(
        "vertex_preference",
        {"contents", "completions"},
        {"system_instruction", "systemInstruction"},
        parse_vertex,
    ),
)
FORMATS: dict[str, Format] = {spec.name: spec for spec in _ALL}
NAMES = tuple(FORMATS)


def fits(row: Mapping) -> list[str]:
    """The formats `row` fits best (most required keys present; a null value counts as
    absent): one name, or none."""
    present = {key for key, value in row.items() if value is not None}
    candidates = [spec for spec in _ALL if spec.required <= present]
    if not candidates:
        return []
    best = max(len(spec.required) for spec in candidates)
    return [spec.name for spec in candidates if len(spec.required) == best]
