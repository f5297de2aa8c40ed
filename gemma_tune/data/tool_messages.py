"""OpenAI tool calling in chat rows: `tools`, assistant `tool_calls` and `tool` messages.

    {"tools": [{"type": "function", "function": {"name": "get_weather", "description": ...,
                "parameters": {"type": "object", "properties": {...}, "required": [...]}}}],
     "messages": [{"role": "user", "content": "Weather in Paris?"},
                  {"role": "assistant", "tool_calls": [{"id": "c1", "type": "function",
                   "function": {"name": "get_weather", "arguments": "{\\"city\\": \\"Paris\\"}"}}]},
                  {"role": "tool", "tool_call_id": "c1", "content": "20 C, sunny"},
                  {"role": "assistant", "content": "It is 20 C and sunny."}]}

They are read into structure (`example.Tool`, `ToolCall`, `ToolResponse`), not text: how a
model writes them is its family's chat template (`training.template`), and a model without a
tool format refuses them there. A tool message answers a call of the assistant message just
before it (its `tool_call_id` names the call's `id`) and is attached to that turn; the
assistant message after the tool messages continues the same model turn. Arguments given as
a JSON string are parsed (they must be a JSON object). What is checked here, each problem at
its field: the declarations' shape, a call's function name and arguments, a tool message's
`tool_call_id`, text beside a call (Gemma 4's chat template has no place for it), calls left
unanswered before the next user message, tool results not followed by an assistant message,
and calls of a function `tools` does not declare.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping

from gemma_tune.data import example, fields

_TOOL_KEYS = frozenset({"type", "function"})
_FUNCTION_KEYS = frozenset({"name", "description", "parameters"})
_CALL_KEYS = frozenset({"id", "type", "function"})
_CALL_FUNCTION_KEYS = frozenset({"name", "arguments"})
# Property names Gemma 4's chat template leaves out of a declaration (its schema's own keys).
_SCHEMA_KEYS = frozenset({"description", "type", "properties", "required", "nullable"})


def _json_value(value, field: str, checker: fields.Checker):
    """`value`, or the JSON it holds when it is a string (Hub datasets often store `tools`
    and arguments as JSON text); None after recording a problem."""
    if not isinstance(value, str):
        return value
    try:
        return json.loads(value)
    except json.JSONDecodeError as error:
        checker.add(field, f"invalid JSON: {error.msg} (column {error.colno})")
        return None


def _without_nulls(value):
    """`value` with null object members dropped, recursively: Arrow tables (Parquet,
    `datasets`) give every object all the keys any row has, null where absent."""
    if isinstance(value, Mapping):
        return {key: _without_nulls(item) for key, item in value.items() if item is not None}
    if isinstance(value, list):
        return [_without_nulls(item) for item in value]
    return value


def _check_properties(properties, field: str, checker: fields.Checker) -> None:
    """Refuses parameter names that Gemma 4's chat template would silently leave out."""
    if not isinstance(properties, Mapping):
        return
    for name, schema in properties.items():
        if name in _SCHEMA_KEYS:
            checker.add(
                f"{field}.{name}",
                f"a parameter named {name!r} is left out of the declaration by Gemma 4's chat "
                f"template (it skips {', '.join(sorted(_SCHEMA_KEYS))}); rename it",
            )
        elif isinstance(schema, Mapping):
            _check_properties(schema.get("properties"), f"{field}.{name}.properties", checker)
            items = schema.get("items")
            if isinstance(items, Mapping):
                inner = items.get("properties")
                _check_properties(inner, f"{field}.{name}.items.properties", checker)


def read_tools(row: Mapping, checker: fields.Checker) -> tuple[example.Tool, ...]:
    """Reads a row's `tools` (a list of `{"type": "function", "function": {...}}`, or that
    list as JSON text); `()` when absent, after recording any problem in `checker`."""
    value = _json_value(row.get("tools"), "tools", checker)
    if value is None:
        return ()
    if not isinstance(value, list):
        checker.add("tools", f"expected a list of tools, got {fields.type_name(value)}")
        return ()
    tools = []
    for index, tool in enumerate(value):
        field = f"tools[{index}]"
        if not isinstance(tool, Mapping):
            checker.add(field, f"expected an object, got {fields.type_name(tool)}")
            continue
        checker.note_unused(tool, _TOOL_KEYS, "tools[]")
        if tool.get("type") not in (None, "function"):
            checker.add(f"{field}.type", f"expected 'function', got {tool['type']!r}")
            continue
        function = tool.get("function")
        if not isinstance(function, Mapping):
            checker.add(f"{field}.function", "missing" if function is None else "not an object")
            continue
        checker.note_unused(function, _FUNCTION_KEYS, "tools[].function")
        name = checker.text(function, "name", f"{field}.function.name")
        description = checker.text(
            function, "description", f"{field}.function.description", required=False
        )
        parameters = _without_nulls(function.get("parameters"))
        if parameters is not None and not isinstance(parameters, Mapping):
            checker.add(f"{field}.function.parameters", "expected a JSON Schema object")
            continue
        if parameters and not parameters.get("type"):
            checker.add(
                f"{field}.function.parameters.type", 'missing (a JSON Schema: "type": "object")'
            )
            continue
        if parameters:
            _check_properties(
                parameters.get("properties"), f"{field}.function.parameters.properties", checker
            )
        if name is not None:
            tools.append(example.Tool(name, description or "", parameters or None, field))
    return tuple(tools)


def read_calls(
    message: Mapping, field: str, checker: fields.Checker
) -> tuple[example.ToolCall, ...]:
    """Reads an assistant message's `tool_calls` (at `field`); the calls read, after
    recording any problem in `checker`."""
    value = message.get("tool_calls")
    if not isinstance(value, list):
        checker.add(f"{field}.tool_calls", f"expected a list, got {fields.type_name(value)}")
        return ()
    calls = []
    for index, call in enumerate(value):
        call_field = f"{field}.tool_calls[{index}]"
        if not isinstance(call, Mapping):
            checker.add(call_field, f"expected an object, got {fields.type_name(call)}")
            continue
        checker.note_unused(call, _CALL_KEYS, fields.pattern(call_field))
        if call.get("type") not in (None, "function"):
            checker.add(f"{call_field}.type", f"expected 'function', got {call['type']!r}")
            continue
        function = call.get("function")
        if not isinstance(function, Mapping):
            checker.add(
                f"{call_field}.function",
                "missing: a call needs a function name" if function is None else "not an object",
            )
            continue
        checker.note_unused(function, _CALL_FUNCTION_KEYS, fields.pattern(f"{call_field}.function"))
        name = checker.text(function, "name", f"{call_field}.function.name")
        arguments_field = f"{call_field}.function.arguments"
        arguments = function.get("arguments")
        arguments = {} if arguments is None else arguments
        arguments = _json_value(arguments, arguments_field, checker)
        if arguments is not None and not isinstance(arguments, Mapping):
            checker.add(
                arguments_field, f"expected a JSON object, got {fields.type_name(arguments)}"
            )
            continue
        call_id = call.get("id")
        if call_id is not None and not isinstance(call_id, str):
            checker.add(f"{call_field}.id", f"expected a string, got {fields.type_name(call_id)}")
            continue
        if name is not None and arguments is not None:
            calls.append(example.ToolCall(name, arguments, call_id, call_field))
    return tuple(calls)


def read_call_turn(
    message: Mapping,
    field: str,
    role: str | None,
    weight: float,
    checker: fields.Checker,
    turns: list[example.Turn],
) -> bool:
    """Reads an assistant message (at `field`) with `tool_calls` into a model turn of loss
    weight `weight` appended to `turns`; False after recording a problem."""
    if role != "assistant":
        checker.add(f"{field}.tool_calls", "only assistant messages make tool calls")
        return False
    calls = read_calls(message, field, checker)
    content = message.get("content")
    if content is not None and (not isinstance(content, str) or content.strip()):
        checker.add(
            f"{field}.content",
            "text beside tool_calls: Gemma 4's chat template writes no text before a call "
            "(it would put it after the tool results); leave content empty or null",
        )
        return False
    if len(calls) != len(message["tool_calls"]):
        return False
    turns.append(example.Turn(example.MODEL, "", weight, tool_calls=calls))
    return True


def read_response(
    message: Mapping, field: str, turns: list[example.Turn], checker: fields.Checker
) -> bool:
    """Reads a `tool` message (at `field`) and attaches it to the last of `turns`, the
    assistant message whose call its `tool_call_id` names; False after recording a problem."""
    checker.note_unused(message, {"role", "content", "tool_call_id"}, fields.pattern(field))
    call_id = checker.text(message, "tool_call_id", f"{field}.tool_call_id")
    content = message.get("content")
    if isinstance(content, list):  # Text parts, as OpenAI allows.
        texts = [part.get("text") for part in content if isinstance(part, Mapping)]
        if len(texts) != len(content) or not all(isinstance(text, str) for text in texts):
            checker.add(
                f"{field}.content", "only {'type': 'text', 'text': ...} parts are supported"
            )
            return False
        content = "".join(texts)
    if content is None:
        checker.add(f"{field}.content", "missing" if "content" not in message else "is null")
        return False
    if not isinstance(content, (str, Mapping)):
        checker.add(
            f"{field}.content", f"expected a string or an object, got {fields.type_name(content)}"
        )
        return False
    if call_id is None:
        return False
    calls = turns[-1].tool_calls if turns else ()
    called = {call.id: call.name for call in calls if call.id is not None}
    if call_id not in called:
        known = f" (its calls: {', '.join(map(repr, called))})" if called else ""
        checker.add(
            f"{field}.tool_call_id",
            f"{call_id!r} matches no call of the assistant message just before the tool "
            f"messages{known}",
        )
        return False
    response = example.ToolResponse(called[call_id], content, call_id, field)
    turns[-1] = dataclasses.replace(
        turns[-1], tool_responses=turns[-1].tool_responses + (response,)
    )
    return True


def check_conversation(
    turns: list[example.Turn], tools: tuple[example.Tool, ...], checker: fields.Checker
) -> None:
    """Checks what tool calling needs of the whole conversation: a turn with calls is
    answered (every call, by id) unless it ends the conversation, the answers are followed by
    an assistant message, and every call names a declared function when `tools` is given."""
    declared = {tool.name for tool in tools}
    for index, turn in enumerate(turns):
        if not turn.tool_calls:
            continue
        last = index == len(turns) - 1
        answered = {response.call_id for response in turn.tool_responses}
        for call in turn.tool_calls:
            if declared and call.name not in declared:
                checker.add(
                    f"{call.field}.function.name",
                    f"calls {call.name!r}, which tools does not declare "
                    f"(declared: {', '.join(sorted(declared))})",
                )
            if not last and call.id not in answered:
                checker.add(
                    call.field,
                    "no tool message answers this call (a tool message with its id as "
                    "tool_call_id must follow the assistant message)",
                )
        if turn.tool_responses and (last or turns[index + 1].role != example.MODEL):
            checker.add(
                turn.tool_responses[-1].field,
                "the tool results must be followed by an assistant message (the model's "
                "answer to them)",
            )


def summary_lines(examples) -> list[str]:
    """What tool calling `examples` hold, as lines for the data check: rows that use tools,
    calls, tool results and the rows declaring tools; no lines when none uses any."""
    using = [item for item in examples if item.tool_field is not None]
    if not using:
        return []
    calls = sum(len(item.tool_calls) for item in using)
    results = sum(len(turn.tool_responses) for item in using for turn in item.turns)
    declaring = sum(1 for item in using if item.tools)
    return [
        f"rows using tools: {len(using)} of {len(examples)} ({calls} calls, {results} tool "
        f"results; {declaring} rows declare tools)"
    ]
