"""Base vs tuned generations on the same prompts, written side by side to `samples.md`."""

from __future__ import annotations

from gemma_tune.data import example as example_lib
from gemma_tune.evaluation import generate
from gemma_tune.training import template


def generate_texts(
    causal_lm,
    chat_template: template.ChatTemplate,
    examples: list[example_lib.Example],
    max_new_tokens: int,
    batch_size: int = 8,
    decode_dtype: str = "float32",
    **sampling,
) -> list[str]:
    """Answers of `causal_lm` to each example's prompt (its reference answer left out; its
    images, on a vision model, seen), decoded with `decode_dtype` weight matrices: greedy, or
    sampled with `sampling` (`temperature`, `top_p`, `seed`: `generate.generate_ids`)."""
    prompts = [chat_template.encode_prompt(example) for example in examples]
    images = [chat_template.prompt_images(example) for example in examples]
    new_ids = generate.generate_ids(
        causal_lm,
        prompts,
        max_new_tokens=max_new_tokens,
        stop_token_ids=chat_template.stop_token_ids,
        batch_size=batch_size,
        images=images if any(images) else None,
        decode_dtype=decode_dtype,
        **sampling,
    )
    return [chat_template.decode(ids) for ids in new_ids]


def _quote(text: str) -> str:
    text = text.strip() or "(empty)"
    return "\n".join(f"> {line}" if line else ">" for line in text.splitlines())


def to_markdown(
    title: str,
    examples: list[example_lib.Example],
    base_answers: list[str],
    tuned_answers: list[str],
) -> str:
    """A readable side-by-side report: prompt, reference, base answer, tuned answer."""
    lines = [f"# {title}", ""]
    for index, (example, base, tuned) in enumerate(
        zip(examples, base_answers, tuned_answers, strict=True)
    ):
        lines += [f"## Example {index + 1} ({example.source})", ""]
        if example.system:
            lines += ["**System**", "", _quote(example.system), ""]
        if example.context:
            lines += ["**Context**", "", _quote(example.context), ""]
        lines += ["**Prompt**", "", _quote(example.prompt), ""]
        lines += ["**Reference**", "", _quote(example.response), ""]
        lines += ["| base | tuned |", "| --- | --- |"]
        lines += [f"| {_cell(base)} | {_cell(tuned)} |", ""]
    return "\n".join(lines)


def _cell(text: str) -> str:
    text = text.strip() or "(empty)"
    return text.replace("|", "\\|").replace("\n", "<br>")
