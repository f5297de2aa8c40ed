"""The one-exchange formats (a prompt and its answer) and plain text for language modelling.

  dolly:             {"instruction", "response", "context"?, "category"?}  (Dolly-15k)
  alpaca:            {"instruction", "input"?, "output", "system"?, "history"?}  (Stanford
                     Alpaca; LLaMA-Factory's `history` of earlier [prompt, response] pairs)
  vertex_legacy:     {"input_text", "output_text"}  (Vertex AI PaLM tuning)
  ai_studio:         {"text_input", "output"}  (Google AI Studio tuning)
  openai_completion: {"prompt", "completion"}: two strings (OpenAI's legacy format, TRL's
                     standard prompt-completion) or two lists of chat messages (TRL's
                     conversational prompt-completion)
  text:              {"text"}: a document, language modelling with loss on every token

A parser reads one row (a JSON object) into an Example with a `fields.Checker`, which
collects the keys it leaves unused; it raises `fields.RowErrors` with every problem of the
row, or `read_result.Skip` for a row a policy leaves out.
"""

from __future__ import annotations

from gemma_tune.data import chat_formats, dolly, example, fields


def parse_dolly(
    row: dict, source: str, keep_context: bool, checker: fields.Checker
) -> example.Example:
    """Maps a Dolly row; rows with a context follow the `dolly` module's policy."""
    instruction = checker.text(row, "instruction")
    response = checker.text(row, "response")
    context = checker.text(row, "context", required=False)
    checker.text(row, "category", required=False)
    checker.done()
    return dolly.to_example(
        instruction, response, context, keep_context=keep_context, source=source
    )


def parse_alpaca(
    row: dict, source: str, keep_context: bool, checker: fields.Checker
) -> example.Example:
    """Maps an Alpaca row: the user turn is the instruction, then the input when not blank."""
    del keep_context  # Alpaca's input is part of the task, always kept.
    instruction = checker.text(row, "instruction")
    task_input = checker.text(row, "input", required=False)
    output = checker.text(row, "output")
    system = checker.text(row, "system", required=False)
    history = _alpaca_history(row, checker)
    checker.done()
    prompt = instruction
    if task_input and task_input.strip():
        prompt = f"{instruction}\n\n{task_input}"
    turns = (*history, example.Turn(example.USER, prompt), example.Turn(example.MODEL, output))
    return example.Example(
        turns=turns, system=system if system and system.strip() else None, source=source
    )


def _alpaca_history(row: dict, checker: fields.Checker) -> list[example.Turn]:
    """The earlier exchanges of an Alpaca row (`history`: [[prompt, response], ...], as
    LLaMA-Factory writes them), as turns."""
    history = row.get("history")
    if history is None:
        return []
    if not isinstance(history, list):
        checker.add(
            "history",
            f"expected a list of [prompt, response] pairs, got {fields.type_name(history)}",
        )
        return []
    turns = []
    for index, pair in enumerate(history):
        if not (isinstance(pair, list) and len(pair) == 2):
            checker.add(f"history[{index}]", "expected a [prompt, response] pair")
            continue
        pair_row = {"prompt": pair[0], "response": pair[1]}
        prompt = checker.text(pair_row, "prompt", f"history[{index}][0]")
        response = checker.text(pair_row, "response", f"history[{index}][1]")
        turns += [example.Turn(example.USER, prompt), example.Turn(example.MODEL, response)]
    return turns


def pair_parser(input_key: str, output_key: str):
    """A parser for the formats that are one prompt string and one response string."""

    def parse(
        row: dict, source: str, keep_context: bool, checker: fields.Checker
    ) -> example.Example:
        del keep_context  # Only Dolly rows carry a context.
        prompt = checker.text(row, input_key)
        response = checker.text(row, output_key)
        checker.done()
        turns = (example.Turn(example.USER, prompt), example.Turn(example.MODEL, response))
        return example.Example(turns=turns, source=source)

    parse.__doc__ = f"Maps a {{{input_key!r}, {output_key!r}}} row to a single exchange."
    return parse


_parse_string_pair = pair_parser("prompt", "completion")


def parse_prompt_completion(
    row: dict, source: str, keep_context: bool, checker: fields.Checker
) -> example.Example:
    """Maps a prompt/completion row: two strings, or TRL's conversational form (the prompt's
    messages, then the completion's assistant messages)."""
    prompt, completion = row.get("prompt"), row.get("completion")
    if not isinstance(prompt, list) and not isinstance(completion, list):
        return _parse_string_pair(row, source, keep_context, checker)
    if not (isinstance(prompt, list) and isinstance(completion, list)):
        checker.add(
            "completion" if isinstance(prompt, list) else "prompt",
            "expected a list of messages, like the "
            + ("prompt" if isinstance(prompt, list) else "completion")
            + " (prompt and completion are both strings or both lists of messages)",
        )
        checker.done()
    prompt_messages = fields.list_field(row, "prompt", checker)
    completion_messages = fields.list_field(row, "completion", checker)
    system, turns = None, None
    if prompt_messages is not None and completion_messages is not None:
        completion_fields = [f"completion[{i}]" for i in range(len(completion_messages))]
        for field, message in zip(completion_fields, completion_messages, strict=True):
            if isinstance(message, dict) and message.get("role") not in ("assistant", None):
                checker.add(f"{field}.role", "completion messages must be 'assistant' messages")
        messages = [(f"prompt[{i}]", m) for i, m in enumerate(prompt_messages)]
        messages += list(zip(completion_fields, completion_messages, strict=True))
        system, turns = chat_formats.read_messages(messages, checker, container="completion")
    checker.done()
    return example.Example(turns=turns, system=system, source=source)


def parse_text(
    row: dict, source: str, keep_context: bool, checker: fields.Checker
) -> example.Example:
    """Maps a `{"text": ...}` row to a document (language modelling, loss on every token)."""
    del keep_context
    text = checker.text(row, "text")
    checker.done()
    return example.Example(turns=(), text=text, source=source)
