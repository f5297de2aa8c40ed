"""Preference pairs encode to two rows sharing the prompt ids, weight on the answers alone,
truncated the same way."""

import numpy as np

from gemma_tune.data import example as ex
from gemma_tune.data import preference
from gemma_tune.training import pair_encoding


def _pair(prompt=("What color is the sky?",), chosen="blue", rejected="green, mostly"):
    roles = [ex.USER, ex.MODEL] * len(prompt)
    turns = tuple(ex.Turn(role, text) for role, text in zip(roles, prompt, strict=False))
    return preference.PreferencePair(turns, chosen, rejected, system="Be brief.", source="f:3")


def _weighted(encoded):
    return encoded.token_ids[encoded.target_weights > 0].tolist()


def test_both_rows_share_the_prompt_and_weight_only_their_answer(chat_template):
    rows = pair_encoding.encode_pair(chat_template, _pair(), 256)
    decode = chat_template._encoder.decode
    for row, answer in ((rows.chosen, "blue"), (rows.rejected, "green, mostly")):
        weighted = _weighted(row)
        assert weighted[-1] == chat_template.end_of_turn_id
        assert decode(weighted[:-1]) == answer
    start = int(np.argmax(rows.chosen.target_weights > 0))
    assert start == int(np.argmax(rows.rejected.target_weights > 0))
    np.testing.assert_array_equal(rows.chosen.token_ids[:start], rows.rejected.token_ids[:start])
    assert "Be brief." in decode(rows.chosen.token_ids[:start].tolist())
    assert rows.source == "f:3"


def test_earlier_model_turns_of_a_multi_turn_prompt_carry_no_weight(chat_template):
    pair = _pair(prompt=("hi", "hello there", "sky color?"))
    rows = pair_encoding.encode_pair(chat_template, pair, 256)
    assert chat_template._encoder.decode(_weighted(rows.chosen)[:-1]) == "blue"
    assert _weighted(rows.chosen).count(chat_template.end_of_turn_id) == 1


def test_truncation_cuts_both_rows_at_the_same_length(chat_template):
    pair = _pair(chosen="blue " * 40, rejected="green " * 30)
    full = pair_encoding.encode_pair(chat_template, pair, 512)
    start = int(np.argmax(full.chosen.target_weights > 0))
    rows = pair_encoding.encode_pair(chat_template, pair, start + 3)
    assert len(rows.chosen.token_ids) == len(rows.rejected.token_ids) == start + 4
    assert rows.chosen.target_weights.sum() == rows.rejected.target_weights.sum() == 4
    assert rows.chosen.truncated and rows.rejected.truncated


def test_pairs_whose_prompt_fills_the_length_are_dropped(chat_template):
    long_prompt = _pair(prompt=("word " * 200,))
    encoded, cut_away = pair_encoding.encode_pairs(chat_template, [_pair(), long_prompt], 64)
    assert (len(encoded), cut_away) == (1, 1)
