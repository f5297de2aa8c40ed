"""Tool declarations, calls and results as Gemma 4's chat template writes them.

Our own Python rendering of the format of Gemma 4's chat template (the Jinja template Google
ships with the instruction-tuned Gemma 4 checkpoints, its current revision), for
`training.template`:

- the declarations close the system turn, one `<|tool>declaration:NAME{description:<|"|>...
  <|"|>,parameters:{properties:{...},required:[...],type:<|"|>OBJECT<|"|>}}<tool|>` each;
- a call is `<|tool_call>call:NAME{city:<|"|>Paris<|"|>,days:3}<tool_call|>`;
- a result is `<|tool_response>response:NAME{value:<|"|>20 C<|"|>}<tool_response|>` for a
  string (JSON text included), `response:NAME{temp:20,unit:<|"|>C<|"|>}` for a JSON object.

Values: strings between `<|"|>` marks, booleans `true` / `false`, numbers as Python writes
them, lists `[a,b]`, objects `{key:value}` with their keys bare (`<|"|>`-quoted inside an
enum or an array schema's extra keys, as the template does) and sorted case-insensitively (Jinja's
`dictsort`), null as `null`. A declared property's schema keeps
the template's subset: description, enum (strings), items (arrays), nullable, properties and
required (objects), type in capitals.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

STRING = '<|"|>'
START_OF_DECLARATION, END_OF_DECLARATION = "<|tool>", "<tool|>"
START_OF_CALL, END_OF_CALL = "<|tool_call>", "<tool_call|>"
START_OF_RESPONSE, END_OF_RESPONSE = "<|tool_response>", "<tool_response|>"
TOKENS = (
    START_OF_DECLARATION,
    END_OF_DECLARATION,
    START_OF_CALL,
    END_OF_CALL,
    START_OF_RESPONSE,
    END_OF_RESPONSE,
    STRING,
)
# The keys of a property's schema, never properties themselves.
_SCHEMA_KEYS = frozenset({"description", "type", "properties", "required", "nullable"})


def _sorted(mapping: Mapping) -> list:
    """`mapping`'s items by key, ignoring case (Jinja's `dictsort`; stable for ties)."""
    return sorted(mapping.items(), key=lambda item: str(item[0]).lower())


def value(argument, escape_keys: bool = True) -> str:
    """One value in the template's notation; `escape_keys` quotes object keys too."""
    if argument is None:
        return "null"
    if isinstance(argument, str):
        return f"{STRING}{argument}{STRING}"
    if isinstance(argument, bool):
        return "true" if argument else "false"
    if isinstance(argument, Mapping):
        parts = [
            (f"{STRING}{key}{STRING}" if escape_keys else str(key)) + ":" + value(item, escape_keys)
            for key, item in _sorted(argument)
        ]
        return "{" + ",".join(parts) + "}"
    if isinstance(argument, (list, tuple)):
        return "[" + ",".join(value(item, escape_keys) for item in argument) + "]"
    return str(argument)


def _quoted_list(items) -> str:
    return "[" + ",".join(f"{STRING}{item}{STRING}" for item in items) + "]"


def _get(schema, key: str):
    """`schema[key]`, None when absent or when `schema` is not an object."""
    return schema.get(key) if isinstance(schema, Mapping) else None


def _type(schema) -> str:
    """A schema's type in capitals ("" when it has none)."""
    kind = _get(schema, "type")
    return "" if kind is None else str(kind).upper()


def _array_items(items: Mapping) -> str:
    """An array schema's `items` as `items:{...}`."""
    parts = []
    for key, item in _sorted(items):
        if item is None:
            continue
        if key == "properties":
            inner = properties(item) if isinstance(item, Mapping) else ""
            parts.append(f"properties:{{{inner}}}")
        elif key == "required":
            parts.append(f"required:{_quoted_list(item)}")
        elif key == "type":
            upper = item.upper() if isinstance(item, str) else [str(kind).upper() for kind in item]
            parts.append(f"type:{value(upper)}")
        else:
            parts.append(f"{key}:{value(item)}")
    return "items:{" + ",".join(parts) + "}"


def _property(schema) -> str:
    """One property's schema, without its name and braces."""
    kind = _type(schema)
    parts = []
    if _get(schema, "description"):
        parts.append(f"description:{STRING}{schema['description']}{STRING}")
    if kind == "STRING" and _get(schema, "enum"):
        parts.append(f"enum:{value(schema['enum'])}")
    elif kind == "ARRAY" and isinstance(_get(schema, "items"), Mapping) and schema["items"]:
        parts.append(_array_items(schema["items"]))
    if _get(schema, "nullable"):
        parts.append("nullable:true")
    if kind == "OBJECT":
        inner = _get(schema, "properties")
        parts.append(
            f"properties:{{{properties(inner if isinstance(inner, Mapping) else schema)}}}"
        )
        if _get(schema, "required"):
            parts.append(f"required:{_quoted_list(schema['required'])}")
    parts.append(f"type:{STRING}{kind}{STRING}")
    return ",".join(parts)


def properties(schemas: Mapping) -> str:
    """A `properties` object's members, `name:{...}` each, by name (schema keys left out)."""
    return ",".join(
        f"{name}:{{{_property(schema)}}}"
        for name, schema in _sorted(schemas)
        if name not in _SCHEMA_KEYS
    )


def declaration(tool) -> str:
    """One `example.Tool` as `<|tool>declaration:NAME{...}<tool|>`."""
    text = f"declaration:{tool.name}{{description:{STRING}{tool.description}{STRING}"
    parameters = tool.parameters
    if parameters:
        text += ",parameters:{"
        if parameters.get("properties"):
            text += f"properties:{{{properties(parameters['properties'])}}},"
        if parameters.get("required"):
            text += f"required:{_quoted_list(parameters['required'])},"
        text += f"type:{STRING}{_type(parameters)}{STRING}}}"
    return f"{START_OF_DECLARATION}{text.strip()}}}{END_OF_DECLARATION}"


def declarations(tools: Sequence) -> str:
    """The declarations that close the system turn, in the row's order."""
    return "".join(declaration(tool) for tool in tools)


def _members(arguments: Mapping) -> str:
    """An object's members with bare keys, by key."""
    return ",".join(f"{key}:{value(item, escape_keys=False)}" for key, item in _sorted(arguments))


def calls(tool_calls: Sequence) -> str:
    """A model turn's `example.ToolCall`s, `<|tool_call>call:NAME{...}<tool_call|>` each."""
    return "".join(
        f"{START_OF_CALL}call:{call.name}{{{_members(call.arguments)}}}{END_OF_CALL}"
        for call in tool_calls
    )


def responses(tool_responses: Sequence) -> str:
    """The `example.ToolResponse`s answering a turn's calls, in the row's order."""
    texts = []
    for response in tool_responses:
        content = response.content
        if isinstance(content, Mapping):
            body = _members(content)
        else:
            body = f"value:{value(content, escape_keys=False)}"
        texts.append(f"{START_OF_RESPONSE}response:{response.name}{{{body}}}{END_OF_RESPONSE}")
    return "".join(texts)
