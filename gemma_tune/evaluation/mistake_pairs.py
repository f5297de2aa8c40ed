"""Preference pairs from a tuned model's own mistakes: the reference answer preferred to the
answer the model gives (on-policy pairs, the rejected side drawn from the policy itself).

DPO learns most from pairs whose rejected answer the model would actually give: a pair whose
rejected answer the model already finds unlikely moves almost nothing (`docs/preference.md`).
For every supervised example the model answers greedily; where the answer does not match the
reference (`metrics.exact_match`, SQuAD's normalization), the pair is the reference over the
model's answer. With `samples`, prompts answered right are also sampled up to that many times
(`temperature`, nucleus `top_p`), and the first sampled answer that misses the reference
becomes the rejected one, so every prompt the model could still get wrong yields a pair. The
nucleus keeps the rejected answers plausible: sampled from the whole vocabulary, a small
model's answers often run on after the right answer into tokens from the vocabulary's tail.

With `trim_rejected` (the default) the rejected answer is cut after its first token that
differs from the reference answer's tokens (`divergence`): `15 minutes<unused58>slotBox...`
becomes `15 minutes<unused58>`, and `closed-toed shoes` (for `open-toed shoes`) its first
token. The tokens both answers share cancel in DPO's margin, so the margin then measures the
one choice where the model went wrong; whole, a long junk tail lets the margin grow by lowering
tokens the model only reaches after that choice, which changes nothing it would generate
(measured in docs/preference.md#the-demo). An answer that stopped early (a prefix of the
reference) is kept whole: its wrong token is the end of its turn.

Pairs are written in TRL's form (`data/preference_formats.py`): a single-turn example as
strings (`prompt`, `chosen`, `rejected`, and `system` when it has one), a longer conversation
as lists of messages; the passage of a context example is folded into the prompt's text the
way the chat template folds it, so the pair's prompt encodes to the same tokens the supervised
example's prompt does.
"""

from __future__ import annotations

import dataclasses
import json
import os

from gemma_tune.data import example as example_lib
from gemma_tune.evaluation import metrics

GREEDY, SAMPLED = "greedy", "sampled"


@dataclasses.dataclass
class Mistake:
    """One example the model got wrong: the example, the model's answer and how it was drawn
    (`GREEDY` or `SAMPLED`)."""

    example: example_lib.Example
    answer: str
    drawn: str
    trimmed: bool = False


def check_examples(examples: list[example_lib.Example]) -> None:
    """Refuses examples a preference pair cannot hold: images and tool calls (preference
    tuning reads neither) and documents (no prompt to answer).

    Raises:
      ValueError: naming the first such example's source and what it holds.
    """
    for item in examples:
        if item.is_document:
            raise ValueError(f"{item.source}: a document (a text row) has no prompt to answer")
        if item.images:
            raise ValueError(f"{item.source}: images: preference pairs carry no images")
        if item.tools or any(turn.tool_calls for turn in item.turns):
            raise ValueError(f"{item.source}: tools: preference pairs carry no tool calls")


def is_mistake(answer: str, reference: str) -> bool:
    """True when `answer` is a usable rejected answer: not empty and not the reference once
    normalized (an answer that differs only in case, punctuation or articles is right)."""
    return bool(answer.strip()) and metrics.exact_match(answer, reference) == 0.0


def greedy_mistakes(examples, answers: list[str]) -> tuple[dict[int, Mistake], list[int]]:
    """`(mistakes, right)`: a `Mistake` for each example whose greedy answer misses its
    reference, by the example's index, and the indices of those answered right (or with
    nothing: an empty answer is no answer to prefer against, so it is sampled again like a
    right one)."""
    mistakes, right = {}, []
    for index, (item, answer) in enumerate(zip(examples, answers, strict=True)):
        if is_mistake(answer, item.response):
            mistakes[index] = Mistake(item, answer, GREEDY)
        else:
            right.append(index)
    return mistakes, right


def divergence(answer_ids, reference_ids) -> int | None:
    """How many of the answer's tokens to keep: up to and including the first that differs
    from the reference's at the same position; None when every answer token matches (the
    answer stopped before the reference ended)."""
    for index, token in enumerate(answer_ids):
        if index >= len(reference_ids) or int(token) != int(reference_ids[index]):
            return index + 1
    return None


def trim(mistake: Mistake, answer_ids, chat_template) -> Mistake:
    """`mistake` with its answer cut after its first wrong token (`divergence`), when the cut
    answer is still a mistake and shorter; else unchanged."""
    keep = divergence(answer_ids, chat_template.answer_ids(mistake.example.response))
    if keep is None or keep >= len(answer_ids):
        return mistake
    text = chat_template.decode(answer_ids[:keep])
    if not is_mistake(text, mistake.example.response):
        return mistake
    return dataclasses.replace(mistake, answer=text, trimmed=True)


def pair_row(mistake: Mistake) -> dict:
    """The TRL row preferring the example's reference answer to the model's answer."""
    from gemma_tune.training import template

    item = mistake.example
    prompt_turns = item.turns[:-1]
    first = template.first_user_text(item, fold_system=False)
    if len(prompt_turns) == 1:
        row = {"prompt": first, "chosen": item.response, "rejected": mistake.answer}
        return {"system": item.system, **row} if item.system else row
    messages = [{"role": "system", "content": item.system}] if item.system else []
    for index, turn in enumerate(prompt_turns):
        role = "user" if turn.role == example_lib.USER else "assistant"
        messages.append({"role": role, "content": first if index == 0 else turn.text})
    return {
        "prompt": messages,
        "chosen": [{"role": "assistant", "content": item.response}],
        "rejected": [{"role": "assistant", "content": mistake.answer}],
    }


def write_pairs(path: str, mistakes: list[Mistake]) -> None:
    """Writes one JSON row per mistake to `path`, through a temporary file renamed into place,
    so an interrupted run never leaves half a file."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    partial = f"{path}.partial"
    with open(partial, "w", encoding="utf-8") as handle:
        for mistake in mistakes:
            handle.write(json.dumps(pair_row(mistake), ensure_ascii=False) + "\n")
    os.replace(partial, path)


def find_mistakes(
    causal_lm,
    chat_template,
    examples: list[example_lib.Example],
    *,
    samples: int,
    temperature: float,
    top_p: float,
    max_new_tokens: int,
    batch_size: int,
    seed: int = 0,
    trim_rejected: bool = True,
) -> list[Mistake]:
    """The model's greedy answer to every example, a `Mistake` for each miss, and for the rest
    up to `samples` sampled rounds (each a new seed) until each has a sampled miss; the
    mistakes in the examples' order, each answer cut after its first wrong token with
    `trim_rejected` (`trim`)."""
    from gemma_tune.evaluation import generate

    prompts = [chat_template.encode_prompt(item) for item in examples]
    drawn_ids = {}  # example index -> the ids of its latest answer

    def answer(indices, **sampling):
        indices = list(indices)
        new_ids = generate.generate_ids(
            causal_lm,
            [prompts[index] for index in indices],
            max_new_tokens=max_new_tokens,
            stop_token_ids=chat_template.stop_token_ids,
            batch_size=batch_size,
            **sampling,
        )
        drawn_ids.update(zip(indices, new_ids, strict=True))
        return [chat_template.decode(ids) for ids in new_ids]

    print(f"Answering {len(examples)} prompts greedily ...", flush=True)
    greedy = answer(range(len(examples)))
    by_index, pending = greedy_mistakes(examples, greedy)
    for round_index in range(samples):
        if not pending:
            break
        print(
            f"Sampling round {round_index + 1} of {samples} for {len(pending)} prompts answered "
            f"right (temperature {temperature}, top_p {top_p}) ...",
            flush=True,
        )
        drawn = answer(pending, temperature=temperature, top_p=top_p, seed=seed + round_index + 1)
        still = []
        for index, text in zip(pending, drawn, strict=True):
            if is_mistake(text, examples[index].response):
                by_index[index] = Mistake(examples[index], text, SAMPLED)
            else:
                still.append(index)
        pending = still
    indices = sorted(by_index)
    if trim_rejected:
        return [trim(by_index[index], drawn_ids[index], chat_template) for index in indices]
    return [by_index[index] for index in indices]
