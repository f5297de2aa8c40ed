"""Encoding a run's examples: the examples cut away count in the length statistics, and the
error when none is left names the source the user gave."""

import pytest

from gemma_tune import config as config_lib
from gemma_tune.data import example, summary
from gemma_tune.training import encoding


def _pair(prompt, answer):
    return example.Example(turns=(example.Turn("user", prompt), example.Turn("model", answer)))


def _config(source, sequence_length=24):
    config = config_lib.base_config()
    config.sequence_length = sequence_length
    config.data.source = source
    return config


def test_examples_cut_away_still_count_in_the_token_lengths(chat_template):
    data_summary = summary.Summary()
    short, long = _pair("hi", "hello"), _pair("word " * 100, "hello")
    train, _, _ = encoding.encode_examples(
        _config("tiny"), chat_template, data_summary, [short, long], []
    )
    assert len(train) == 1
    assert data_summary.dropped == {"response cut away by sequence_length": 1}
    assert data_summary.token_lengths.count == 2 and data_summary.token_lengths.truncated == 1


@pytest.mark.parametrize("source, name", [("tiny", "tiny"), ("file", "mine.jsonl")])
def test_no_example_left_names_the_source(chat_template, source, name):
    config = _config(source, sequence_length=4)
    config.data.path = "mine.jsonl" if source == "file" else ""
    with pytest.raises(example.DataError) as raised:
        encoding.encode_examples(
            config, chat_template, summary.Summary(), [_pair("a " * 50, "b")], []
        )
    assert str(raised.value.problems[0]).startswith(f"{name}: sequence_length: no training")
