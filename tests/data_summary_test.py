"""Tests for dedup, max_examples, the deterministic split and the Summary."""

import json

import pytest

from gemma_tune.data import example, read_result, summary


def make(prompt, response="ok", system=None, context=None):
    turns = (example.Turn("user", prompt), example.Turn("model", response))
    return example.Example(turns=turns, system=system, context=context, source=prompt)


def test_exact_dedup_keeps_the_first_and_counts():
    items = [make("a"), make("b"), make("a"), make("a", system="s"), make("A ")]
    train, validation, result = summary.prepare(items, dedup="exact")
    assert [e.source for e in train] == ["a", "b", "a", "A "]
    assert train[2].system == "s"
    assert validation == []
    assert result.duplicates_removed == 1


def test_normalized_dedup_ignores_case_and_whitespace_but_not_context():
    items = [
        make("Hello  world", "Fine."),
        make("hello world\n", "fine."),
        make("hello world", "fine.", context="passage"),
        make("hello world", "fine.", context=" PASSAGE "),
    ]
    train, _, result = summary.prepare(items, dedup="normalized")
    assert [(e.prompt, e.context) for e in train] == [
        ("Hello  world", None),
        ("hello world", "passage"),
    ]
    assert result.duplicates_removed == 2
    kept, _, none = summary.prepare(items, dedup="none")
    assert len(kept) == 4 and none.duplicates_removed == 0


def test_unknown_dedup_mode():
    with pytest.raises(ValueError, match="exact, normalized, none"):
        summary.prepare([make("a")], dedup="fuzzy")


def test_max_examples_takes_the_first_n_after_dedup():
    items = [make(str(i % 7)) for i in range(20)]
    train, _, result = summary.prepare(items, max_examples=5)
    assert [e.prompt for e in train] == ["0", "1", "2", "3", "4"]
    assert result.duplicates_removed == 13
    assert result.over_max_examples == 2


def test_split_is_deterministic_per_seed():
    items = [make(str(i)) for i in range(100)]
    train, validation, result = summary.prepare(items, validation_fraction=0.1, seed=3)
    again_train, again_validation, _ = summary.prepare(items, validation_fraction=0.1, seed=3)
    _, other_validation, _ = summary.prepare(items, validation_fraction=0.1, seed=4)
    assert len(validation) == 10 and len(train) == 90
    assert [e.prompt for e in validation] == [e.prompt for e in again_validation]
    assert [e.prompt for e in train] == [e.prompt for e in again_train]
    assert [e.prompt for e in validation] != [e.prompt for e in other_validation]
    assert not {e.prompt for e in train} & {e.prompt for e in validation}
    assert (result.train_count, result.validation_count) == (90, 10)
    assert result.validation_from == "split"


def test_split_keeps_at_least_one_on_each_side():
    two = [make("a"), make("b")]
    train, validation, _ = summary.prepare(two, validation_fraction=0.01)
    assert (len(train), len(validation)) == (1, 1)
    train, validation, _ = summary.prepare(two, validation_fraction=0.9)
    assert (len(train), len(validation)) == (1, 1)
    train, validation, _ = summary.prepare([make("a")], validation_fraction=0.5)
    assert (len(train), len(validation)) == (1, 0)
    with pytest.raises(ValueError, match="validation_fraction"):
        summary.prepare(two, validation_fraction=1.0)


def test_separate_validation_is_not_split_and_drops_training_duplicates():
    train_read = read_result.ReadResult([make("a"), make("b")], {"has context": 2}, rows_read=4)
    validation_read = read_result.ReadResult(
        [make("b"), make("c"), make("c")], {"has context": 1}, rows_read=4
    )
    train, validation, result = summary.prepare(
        train_read, validation_fraction=0.5, validation_examples=validation_read
    )
    assert [e.prompt for e in train] == ["a", "b"]
    assert [e.prompt for e in validation] == ["c"]
    assert result.duplicates_removed == 2
    assert result.rows_read == 8
    assert result.dropped == {"has context": 3}
    assert result.validation_from == "file"


def test_summary_token_lengths_dict_and_text():
    read = read_result.ReadResult([make(str(i)) for i in range(4)], {"has context": 3}, 7)
    _, _, result = summary.prepare(read, validation_fraction=0.25, seed=0)
    result.add_token_lengths(list(range(1, 21)), sequence_length=16)
    as_dict = json.loads(json.dumps(result.to_dict()))
    assert as_dict["token_lengths"] == {
        "count": 20,
        "p50": 10,
        "p95": 19,
        "max": 20,
        "sequence_length": 16,
        "truncated": 4,
    }
    assert as_dict["rows_read"] == 7 and as_dict["dropped"] == {"has context": 3}
    text = result.format()
    assert "rows read: 7" in text
    assert "dropped: 3 (has context: 3)" in text
    assert "train examples: 3" in text
    assert "validation examples: 1 (split)" in text
    assert "4 of 20 longer than sequence_length 16" in text
