"""The Dolly-15k row policy, shared by the JSONL reader and the Hugging Face source.

Google's Gemma LoRA tutorial trains on Dolly's rows *without* a context passage, to keep the
prompts simple: with `keep_context=False` a row whose context is not blank is skipped and
counted under `HAS_CONTEXT`; with `keep_context=True` the passage goes into `Example.context`,
where the prompt template places it.
"""

from __future__ import annotations

from gemma_tune.data import example, read_result

HAS_CONTEXT = "has context"


def to_example(
    instruction: str, response: str, context: str | None, *, keep_context: bool, source: str
) -> example.Example:
    """Maps one checked Dolly row to an Example.

    Args:
      instruction: the user's request (non-blank).
      response: the reference answer (non-blank).
      context: the optional passage; None or blank means no context.
      keep_context: keep rows with a context (True) or skip them (False).
      source: where the row came from, for messages.

    Raises:
      read_result.Skip: for a row with a context when `keep_context` is False.
    """
    has_context = context is not None and bool(context.strip())
    if has_context and not keep_context:
        raise read_result.Skip(HAS_CONTEXT)
    turns = (example.Turn(example.USER, instruction), example.Turn(example.MODEL, response))
    return example.Example(turns=turns, context=context if has_context else None, source=source)
