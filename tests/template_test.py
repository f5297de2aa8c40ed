"""The chat template puts loss only on model turns, with one BOS and Gemma's turn markers."""

import numpy as np
import pytest

from gemma_tune.data import example as ex
from gemma_tune.training import template


def _conversation(*texts, system=None, context=None):
    roles = [ex.USER, ex.MODEL] * len(texts)
    turns = tuple(ex.Turn(role, text) for role, text in zip(roles, texts, strict=False))
    return ex.Example(turns=turns, system=system, context=context)


def _weighted_text(chat_template, encoded):
    ids = [int(i) for i, w in zip(encoded.token_ids, encoded.target_weights, strict=True) if w > 0]
    return ids


def test_only_model_turn_and_its_end_marker_carry_loss(chat_template):
    encoded = chat_template.encode(_conversation("What color is the sky?", "blue"), 256)
    weighted = _weighted_text(chat_template, encoded)
    assert weighted[-1] == chat_template.end_of_turn_id
    assert chat_template._encoder.decode(weighted[:-1]) == "blue"
    assert encoded.target_weights[0] == 0  # BOS


def test_exactly_one_bos_and_turn_markers(chat_template):
    encoded = chat_template.encode(_conversation("hi", "hello"), 256)
    ids = encoded.token_ids.tolist()
    assert ids[0] == chat_template.bos_id
    assert ids.count(chat_template.bos_id) == 1
    assert ids.count(chat_template.start_of_turn_id) == 2
    assert ids.count(chat_template.end_of_turn_id) == 2


def test_full_text_matches_gemma_format(chat_template):
    example = _conversation("What color is the sky?", "blue", system="Be brief.", context="sky")
    encoded = chat_template.encode(example, 256)
    text = chat_template._encoder.decode(encoded.token_ids.tolist()[1:])
    assert text == (
        "<start_of_turn>user\nBe brief.\n\nContext:\nsky\n\nWhat color is the sky?<end_of_turn>\n"
        "<start_of_turn>model\nblue<end_of_turn>\n"
    )


def test_multi_turn_trains_every_model_turn(chat_template):
    encoded = chat_template.encode(_conversation("a", "red", "b", "green"), 256)
    weighted = _weighted_text(chat_template, encoded)
    assert weighted.count(chat_template.end_of_turn_id) == 2
    assert "red" in chat_template._encoder.decode(weighted)
    assert "green" in chat_template._encoder.decode(weighted)


def test_train_on_prompt_weights_everything_but_bos(tokenizer):
    chat_template = template.ChatTemplate(tokenizer, train_on_prompt=True)
    encoded = chat_template.encode(_conversation("hi", "hello"), 256)
    assert encoded.target_weights[0] == 0
    assert np.all(encoded.target_weights[1:] == 1)


def test_truncation_keeps_sequence_length_plus_one(chat_template):
    encoded = chat_template.encode(_conversation("Repeat after me: " * 20, "ok"), 16)
    assert len(encoded.token_ids) == 17
    assert encoded.truncated
    assert encoded.target_weights.sum() == 0  # the response was cut away entirely


def test_prompt_for_generation_ends_at_model_turn(chat_template):
    example = _conversation("hi", "hello")
    prompt = chat_template.encode_prompt(example)
    full = chat_template.encode(example, 256).token_ids
    # The prompt is exactly the training prefix before the answer's first token.
    np.testing.assert_array_equal(full[: len(prompt)], prompt)
    assert chat_template.prompt_text(example).endswith("<start_of_turn>model\n")


@pytest.mark.parametrize("stop", ["end_of_turn_id", "eos_id"])
def test_decode_stops_at_stop_tokens(chat_template, stop):
    ids = chat_template._encoder.encode("blue") + [getattr(chat_template, stop)] + [300, 301]
    assert chat_template.decode(ids) == "blue"


def test_a_huge_text_is_cut_before_tokenizing_without_changing_the_ids_kept(
    chat_template, monkeypatch
):
    huge = "the cat likes red apples and green pears. " * 20_000  # 860 KB
    example = _conversation(huge, "ok")
    lengths = []
    encode = chat_template._encoder.encode
    monkeypatch.setattr(
        chat_template._encoder, "encode", lambda text: lengths.append(len(text)) or encode(text)
    )
    capped = chat_template.encode(example, 32)
    assert max(lengths) == (33 + template._SLACK_TOKENS) * template.MAX_CHARS_PER_TOKEN
    monkeypatch.setattr(template, "MAX_CHARS_PER_TOKEN", 10**9)
    whole = chat_template.encode(example, 32)
    np.testing.assert_array_equal(capped.token_ids, whole.token_ids)
    np.testing.assert_array_equal(capped.target_weights, whole.target_weights)
    assert capped.truncated and 33 < capped.full_length < whole.full_length
