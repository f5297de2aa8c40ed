"""Tests for the Hugging Face and TFDS sources, with in-memory rows instead of downloads."""

import numpy as np
import pytest

from gemma_tune.data import dolly, hf, squad, tfds_source


def test_hf_dolly_rows_through_a_datasets_dataset():
    datasets = pytest.importorskip("datasets")
    rows = datasets.Dataset.from_list(
        [
            {"instruction": "Name a fruit.", "context": "", "response": "Apple.", "category": "qa"},
            {"instruction": "Summarize.", "context": "Text.", "response": "T.", "category": "s"},
            {"instruction": "Empty answer.", "context": "", "response": " ", "category": "qa"},
        ]
    )
    result = hf.load_hf("databricks/databricks-dolly-15k", rows=rows)
    (item,) = result.examples
    assert (item.prompt, item.response, item.context) == ("Name a fruit.", "Apple.", None)
    assert item.source == "databricks/databricks-dolly-15k[0]"
    assert result.rows_read == 3
    assert result.dropped == {dolly.HAS_CONTEXT: 1, "invalid row (response: empty)": 1}


def test_hf_dolly_keep_context():
    rows = [{"instruction": "Summarize.", "context": "Text.", "response": "T."}]
    (item,) = hf.load_hf("dolly", keep_context=True, rows=rows).examples
    assert item.context == "Text."
    assert item.source == "dolly[0]"


def test_hf_squad_rows():
    datasets = pytest.importorskip("datasets")
    rows = datasets.Dataset.from_list(
        [
            {
                "id": "1",
                "title": "T",
                "question": "Who?",
                "context": "Ada wrote it.",
                "answers": {"text": ["Ada", "Ada Lovelace"], "answer_start": [0, 0]},
            },
            {
                "id": "2",
                "title": "T",
                "question": "Why?",
                "context": "No one knows.",
                "answers": {"text": [], "answer_start": []},
            },
        ]
    )
    result = hf.load_hf("rajpurkar/squad_v2", split="validation", rows=rows)
    (item,) = result.examples
    assert (item.prompt, item.context, item.response) == ("Who?", "Ada wrote it.", "Ada")
    assert result.dropped == {squad.NO_ANSWER: 1}


def test_hf_unknown_columns_name_the_supported_layouts():
    with pytest.raises(ValueError, match="SQuAD.*openai_chat") as raised:
        hf.load_hf("some/dataset", rows=[{"question": "a", "label": 1}])
    assert "the columns (label, question) fit no supported format" in str(raised.value)


def wiki_row(source, target):
    return {
        "gem_id": np.bytes_(b"x"),
        "source": np.bytes_(source.encode("utf-8")),
        "target": np.bytes_(target.encode("utf-8")),
    }


def test_tfds_wiki_lingua_decodes_bytes_and_uses_the_instruction():
    rows = [wiki_row("Café text.", "Short."), wiki_row("Another.", "")]
    result = tfds_source.load_tfds("gem/wiki_lingua_english_en", rows=rows)
    (item,) = result.examples
    assert item.prompt == "Summarize the following text:\n\nCafé text."
    assert item.response == "Short."
    assert item.source == "gem/wiki_lingua_english_en[0]"
    assert result.dropped == {"invalid row (target: empty)": 1}


def test_tfds_wiki_lingua_custom_instruction():
    rows = [wiki_row("Body.", "Gist.")]
    (plain,) = tfds_source.load_tfds(
        "gem/wiki_lingua_english_en:1.1.0", instruction="TL;DR:", rows=rows
    ).examples
    assert plain.prompt == "TL;DR:\n\nBody."
    (placed,) = tfds_source.load_tfds(
        "gem/wiki_lingua_english_en", instruction="Text: {source}\nSummary?", rows=rows
    ).examples
    assert placed.prompt == "Text: Body.\nSummary?"


def test_tfds_squad_nested_and_flat_answers():
    nested = {
        "question": b"Who?",
        "context": np.array(b"Ada wrote it."),
        "answers": {
            "text": np.array([b"Ada", b"Lovelace"], dtype=object),
            "answer_start": np.array([0, 4]),
        },
    }
    flat = {"question": b"What?", "context": b"It.", "answers/text": np.array([b"It"])}
    unanswerable = {"question": b"Why?", "context": b"C.", "answers/text": np.array([], "S")}
    result = tfds_source.load_tfds("squad/v2.0", rows=[nested, flat, unanswerable])
    assert [(e.prompt, e.context, e.response) for e in result.examples] == [
        ("Who?", "Ada wrote it.", "Ada"),
        ("What?", "It.", "It"),
    ]
    assert result.examples[1].source == "squad/v2.0[1]"
    assert result.dropped == {squad.NO_ANSWER: 1}


def test_tfds_invalid_utf8_is_dropped_with_its_field():
    rows = [{"question": b"\xff", "context": b"C.", "answers/text": [b"A"]}]
    result = tfds_source.load_tfds("squad", rows=rows)
    assert result.examples == []
    assert result.dropped == {"invalid row (question: invalid UTF-8)": 1}


def test_tfds_unknown_dataset_lists_the_supported_ones():
    with pytest.raises(ValueError, match="gem/wiki_lingua_english_en, squad"):
        tfds_source.load_tfds("cnn_dailymail", rows=[])


def test_tfds_squad_rejects_an_instruction():
    with pytest.raises(ValueError, match="no instruction"):
        tfds_source.load_tfds("squad", instruction="Answer:", rows=[])


def test_hf_columns_not_read_are_warned_about_once():
    rows = [
        {"id": "1", "title": "T", "question": "Q?", "context": "C.", "answers": {"text": ["A"]}}
    ]
    result = hf.load_hf("rajpurkar/squad", rows=rows)
    assert [str(w) for w in result.warnings] == [
        "rajpurkar/squad: id: column not used; ignored",
        "rajpurkar/squad: title: column not used; ignored",
    ]
