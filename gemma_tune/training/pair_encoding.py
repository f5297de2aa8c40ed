"""Preference pairs -> two encoded rows each: the prompt answered with `chosen`, and with
`rejected`, through the family's chat template, with loss weight on the answer alone.

DPO compares the log-probability of the two answers given the same prompt, so the prompt's
tokens (an earlier model turn of a multi-turn prompt included) carry weight 0 and only the
final answer and its closing end-of-turn marker carry weight 1. Both rows are cut to the
same `sequence_length + 1` ids from the start, as supervised rows are: the prompt is the same
ids in both, so both keep the same prompt and their answers start at the same position. A
pair whose prompt alone fills the sequence length has no answer token left on either side and
is dropped (counted by `encode_pairs`).
"""

from __future__ import annotations

import dataclasses

from gemma_tune.data import example as example_lib
from gemma_tune.data import preference
from gemma_tune.training import template


@dataclasses.dataclass(frozen=True)
class EncodedPair:
    """The two rows of one preference pair.

    Attributes:
      chosen: the prompt and the preferred answer; weight on the answer's tokens only.
      rejected: the prompt and the other answer, encoded the same way.
      source: the pair's "file:line", for messages.
    """

    chosen: template.Encoded
    rejected: template.Encoded
    source: str = ""


def _answer_only(conversation: example_lib.Example) -> example_lib.Example:
    """`conversation` with every model turn but the last at weight 0 (they are prompt)."""
    *prompt, answer = conversation.turns
    prompt = [dataclasses.replace(turn, weight=0.0) for turn in prompt]
    return dataclasses.replace(conversation, turns=(*prompt, answer))


def encode_pair(
    chat_template: template.ChatTemplate,
    pair: preference.PreferencePair,
    sequence_length: int,
) -> EncodedPair:
    """Encodes both sides of `pair`, each truncated to `sequence_length + 1` ids.

    Raises:
      ValueError: for a template that trains on the prompt (`train_on_prompt`): preference
        log-probabilities are of the answers alone.
    """
    if chat_template.train_on_prompt:
        raise ValueError("preference pairs are encoded with train_on_prompt=False")
    chosen = chat_template.encode(_answer_only(pair.chosen_example), sequence_length)
    rejected = chat_template.encode(_answer_only(pair.rejected_example), sequence_length)
    return EncodedPair(chosen, rejected, pair.source)


def encode_pairs(
    chat_template: template.ChatTemplate,
    pairs: list[preference.PreferencePair],
    sequence_length: int,
) -> tuple[list[EncodedPair], int]:
    """Encodes every pair, dropping those whose prompt leaves no answer token on a side.

    Returns:
      `(encoded, cut_away)`: the kept pairs' rows in order, and how many were dropped.
    """
    encoded, cut_away = [], 0
    for pair in pairs:
        rows = encode_pair(chat_template, pair, sequence_length)
        if rows.chosen.target_weights.sum() == 0 or rows.rejected.target_weights.sum() == 0:
            cut_away += 1
            continue
        encoded.append(rows)
    return encoded, cut_away
