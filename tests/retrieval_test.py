"""Tests for corpus loading, BM25 retrieval and attaching retrieved passages as context."""

import dataclasses
import json

import pytest

from gemma_tune import bundled
from gemma_tune.data import example, jsonl
from gemma_tune.evaluation import corpus, retrieval


def write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def qa(question, answer="yes", context=None, source=""):
    turns = (example.Turn(example.USER, question), example.Turn(example.MODEL, answer))
    return example.Example(turns=turns, context=context, source=source)


LONG_SECTION = " ".join(f"word{i}" for i in range(45))

GUIDE_MD = f"""Intro line before any heading.

# Guide

## Tools

The bandsaw cuts curves.
It lives in the woodshop.

```
## not a heading inside a fence
```

### Long Part

{LONG_SECTION}

## Empty

## Last
Closing words.
"""


def make_folder(tmp_path):
    write(tmp_path / "b_guide.md", GUIDE_MD)
    write(tmp_path / "a_notes.txt", "one two three\nfour\n\nfive six seven\n\n\neight nine\n")
    write(tmp_path / "sub" / "c.md", "## Deep\nNested file text.\n")
    write(tmp_path / ".hidden.md", "## Hidden\nnever read\n")
    write(tmp_path / "table.csv", "a,b\n1,2\n")
    return tmp_path


def test_folder_corpus_splits_markdown_at_headings_and_packs_text(tmp_path):
    passages = corpus.load_corpus(make_folder(tmp_path), passage_words=20, overlap_words=2)
    summary = [(p.id, p.source, p.title) for p in passages]
    assert summary == [
        ("a_notes.txt:1", "a_notes.txt:1", ""),
        ("b_guide.md:1", "b_guide.md:1", ""),
        ("b_guide.md:5", "b_guide.md#Tools", "Tools"),
        ("b_guide.md:14/1", "b_guide.md#Long Part", "Long Part"),
        ("b_guide.md:14/2", "b_guide.md#Long Part", "Long Part"),
        ("b_guide.md:14/3", "b_guide.md#Long Part", "Long Part"),
        ("b_guide.md:20", "b_guide.md#Last", "Last"),
        ("sub/c.md:1", "sub/c.md#Deep", "Deep"),
    ]
    texts = [p.text for p in passages]
    assert texts[0] == "one two three\nfour\n\nfive six seven\n\neight nine"
    assert texts[1] == "Intro line before any heading."
    assert texts[2].startswith("The bandsaw cuts curves.\nIt lives in the woodshop.")
    assert "## not a heading inside a fence" in texts[2]
    assert texts[6] == "Closing words."


def test_long_sections_become_overlapping_windows(tmp_path):
    passages = corpus.load_corpus(make_folder(tmp_path), passage_words=20, overlap_words=2)
    windows = [p.text.split() for p in passages if p.title == "Long Part"]
    assert [len(w) for w in windows] == [20, 20, 9]
    assert windows[0][-2:] == windows[1][:2] and windows[1][-2:] == windows[2][:2]
    covered = {word for window in windows for word in window}
    assert covered == set(LONG_SECTION.split())


def test_folder_corpus_is_deterministic(tmp_path):
    folder = make_folder(tmp_path)
    assert corpus.load_corpus(folder) == corpus.load_corpus(folder)


def test_text_packing_respects_the_word_limit(tmp_path):
    path = write(tmp_path / "t.txt", "a b c\n\nd e f g\n\nh i j k l\n")
    passages = corpus.load_corpus(path, passage_words=8, overlap_words=0)
    assert [(p.id, p.text) for p in passages] == [
        ("t.txt:1", "a b c\n\nd e f g"),
        ("t.txt:5", "h i j k l"),
    ]


def test_single_markdown_file(tmp_path):
    path = write(tmp_path / "one.md", "## A\nalpha\n## B\nbeta\n")
    assert [(p.title, p.text) for p in corpus.load_corpus(path)] == [("A", "alpha"), ("B", "beta")]


def test_bad_paths_and_empty_corpora_fail_clearly(tmp_path):
    with pytest.raises(FileNotFoundError, match="no corpus"):
        corpus.load_corpus(tmp_path / "missing")
    with pytest.raises(ValueError, match="unsupported"):
        corpus.load_corpus(write(tmp_path / "x.csv", "a\n"))
    write(tmp_path / "empty" / "blank.md", "## Only a heading\n\n")
    with pytest.raises(ValueError, match="empty"):
        corpus.load_corpus(tmp_path / "empty")
    with pytest.raises(ValueError, match="passage_words"):
        corpus.load_corpus(tmp_path / "empty", passage_words=5, overlap_words=5)


def test_bad_utf8_names_the_line(tmp_path):
    path = tmp_path / "bad.md"
    path.write_bytes(b"## Fine\nok\n\xff broken\n")
    with pytest.raises(example.DataError) as raised:
        corpus.load_corpus(path)
    assert [(p.line, p.field) for p in raised.value.problems] == [(3, "text")]


def test_jsonl_corpus_reads_ids_titles_and_text(tmp_path):
    rows = [
        {"text": " Saws cut wood. ", "title": "Saws", "id": "saw"},
        {"text": "Glue sticks."},
        {"text": "Numbers work as ids.", "id": 7, "extra": "ignored"},
    ]
    path = write(tmp_path / "c.jsonl", "\n".join(json.dumps(r) for r in rows) + "\n\n")
    assert corpus.load_corpus(path) == [
        corpus.Passage("saw", "c.jsonl:1", "Saws", "Saws cut wood."),
        corpus.Passage("c.jsonl:2", "c.jsonl:2", "", "Glue sticks."),
        corpus.Passage("7", "c.jsonl:3", "", "Numbers work as ids."),
    ]


def test_jsonl_corpus_reports_every_bad_row(tmp_path):
    lines = [
        json.dumps({"text": "fine", "id": "a"}),
        "{not json",
        json.dumps(["a list"]),
        json.dumps({"title": "no text"}),
        json.dumps({"text": "   "}),
        json.dumps({"text": 42}),
        json.dumps({"text": "dup", "id": "a"}),
        json.dumps({"text": "bad id", "id": [1]}),
        json.dumps({"text": "bad title", "title": 3}),
        json.dumps({"text": 1, "id": "a"}),
    ]
    path = write(tmp_path / "bad.jsonl", "\n".join(lines) + "\n")
    with pytest.raises(example.DataError) as raised:
        corpus.load_corpus(path)
    assert [(p.line, p.field) for p in raised.value.problems] == [
        (2, "line"),
        (3, "row"),
        (4, "text"),
        (5, "text"),
        (6, "text"),
        (7, "id"),
        (8, "id"),
        (9, "title"),
        (10, "text"),
        (10, "id"),
    ]
    message = str(raised.value)
    assert f"{path}:4: text: missing" in message
    assert f"{path}:7: id: duplicate id 'a', first used on line 1" in message


WORKSHOP = [
    corpus.Passage("1", "w.md#Saws", "Saws", "The bandsaw and the table saw cut wood."),
    corpus.Passage("2", "w.md#Kitchen", "Kitchen", "The kettle and the fridge are upstairs."),
    corpus.Passage("3", "w.md#Fobs", "Fobs", "A lost fob costs eight dollars to replace."),
    corpus.Passage("4", "w.md#Welding", "Welding", "Welding needs a steward in the metal shop."),
]


def test_search_ranks_the_relevant_passage_first():
    retriever = retrieval.Retriever(WORKSHOP)
    results = retriever.search("Is the kettle next to the fridge or the saw?", k=3)
    assert [p.id for p, _ in results] == ["2", "1"]
    assert results[0][1] > results[1][1] > 0
    assert [p.id for p, _ in retriever.search("Who must be there when I am welding?", 2)] == ["4"]


def test_search_leaves_out_passages_without_shared_words():
    retriever = retrieval.Retriever(WORKSHOP)
    assert retriever.search("zebra xylophone", k=3) == []
    assert len(retriever.search("the saw and the fob", k=10)) == 2
    assert retriever.search_many(["kettle", "bandsaw"], 1) == [
        retriever.search("kettle", 1),
        retriever.search("bandsaw", 1),
    ]
    with pytest.raises(ValueError, match="k must be"):
        retriever.search("kettle", 0)
    with pytest.raises(ValueError, match="empty corpus"):
        retrieval.Retriever([])


def test_a_stemmer_matches_word_forms():
    passages = [
        corpus.Passage("fob", "", "", "A lost fob is replaced at the desk."),
        corpus.Passage("kettle", "", "", "Kettles boil water."),
    ]
    assert retrieval.Retriever(passages, stemmer=None).search("fobs", 2) == []
    custom = retrieval.Retriever(passages, stemmer=lambda word: word.removesuffix("s"))
    assert [p.id for p, _ in custom.search("fobs", 2)] == ["fob"]
    assert [p.id for p, _ in custom.search("kettle", 2)] == ["kettle"]
    default = retrieval.Retriever(passages)  # Snowball English
    assert [p.id for p, _ in default.search("replacing fobs", 2)] == ["fob"]
    assert [p.id for p, _ in default.search("boiling kettle", 2)] == ["kettle"]


def handbook_questions():
    """rag_validation examples, and closed_validation ones given the gold section of rag_*."""

    def read(name):
        return jsonl.read_jsonl(bundled.path(name), keep_context=True).examples

    rag_all = read("rag_train.jsonl") + read("rag_validation.jsonl")
    gold = {e.prompt: e.context for e in rag_all}
    closed = [
        dataclasses.replace(e, context=gold[e.prompt]) for e in read("closed_validation.jsonl")
    ]
    return read("rag_validation.jsonl"), closed


@pytest.fixture(scope="module")
def handbook_retriever():
    return retrieval.Retriever(corpus.load_corpus(bundled.path("handbook.md")))


def test_hit_rate_on_the_bundled_handbook(handbook_retriever):
    rag_validation, closed_validation = handbook_questions()
    assert len(rag_validation) == 71 and len(closed_validation) == 79
    # Measured with the default Snowball stemmer: rag_validation hit@1 0.887, hit@3 0.958;
    # closed_validation hit@1 0.924, hit@3 0.987. Without stemming: 0.803, 0.915, 0.861, 0.962.
    assert retrieval.hit_rate(rag_validation, handbook_retriever, k=1) >= 0.86
    assert retrieval.hit_rate(rag_validation, handbook_retriever, k=3) >= 0.94
    assert retrieval.hit_rate(closed_validation, handbook_retriever, k=1) >= 0.90
    assert retrieval.hit_rate(closed_validation, handbook_retriever, k=3) >= 0.97
    unstemmed = retrieval.Retriever(handbook_retriever.passages, stemmer=None)
    assert retrieval.hit_rate(rag_validation, unstemmed, k=1) < retrieval.hit_rate(
        rag_validation, handbook_retriever, k=1
    )
    with pytest.raises(ValueError, match="no gold context"):
        retrieval.hit_rate(
            [qa("What time does it open?", source="q.jsonl:3")], handbook_retriever, 1
        )


def test_one_retrieved_section_reads_like_the_gold_context(handbook_retriever):
    rag_validation, _ = handbook_questions()
    attached = retrieval.attach_context(rag_validation, handbook_retriever, top_k=1)
    same = sum(a.context == e.context for a, e in zip(attached, rag_validation, strict=True))
    assert same / len(rag_validation) == retrieval.hit_rate(rag_validation, handbook_retriever, 1)


def test_attach_context_replaces_context_with_ranked_passages(chat_template):
    retriever = retrieval.Retriever(WORKSHOP)
    examples = [
        qa("Where is the kettle or the saw?", "upstairs", context="old context", source="q:1"),
        qa("zebra?", "no idea"),
    ]
    attached = retrieval.attach_context(examples, retriever, top_k=2)
    ranked = [p for p, _ in retriever.search(examples[0].prompt, 2)]
    assert {p.id for p in ranked} == {"1", "2"}
    assert attached[0].context == retrieval.format_passages(ranked)
    assert attached[0].context.startswith(f"## {ranked[0].title}\n\n{ranked[0].text}\n\n## ")
    assert attached[0].turns == examples[0].turns and attached[0].source == "q:1"
    assert attached[1].context is None
    assert examples[0].context == "old context"

    prompt = chat_template.prompt_text(attached[0])
    assert f"Context:\n{attached[0].context}\n\nWhere is the kettle or the saw?" in prompt
    encoded = chat_template.encode(attached[0], sequence_length=512)
    assert not encoded.truncated
    assert len(encoded.token_ids) > len(chat_template.encode(examples[1], 512).token_ids)
    answer_ids = encoded.token_ids[encoded.target_weights > 0].tolist()
    assert chat_template.decode(answer_ids) == "upstairs"


def test_format_passages_keeps_titles_and_order():
    untitled = corpus.Passage("x", "x.txt:1", "", "Plain text.")
    text = retrieval.format_passages([WORKSHOP[2], untitled])
    assert text == "## Fobs\n\nA lost fob costs eight dollars to replace.\n\nPlain text."


def test_from_config_indexes_the_experiments_corpus(tmp_path, capsys):
    assert retrieval.from_config(None) is None
    assert retrieval.from_config({"corpus": "", "top_k": 2, "passage_words": 200}) is None
    folder = make_folder(tmp_path)
    settings = {"corpus": str(folder), "top_k": 1, "passage_words": 50}
    retriever = retrieval.from_config(settings)
    expected = corpus.load_corpus(str(folder), passage_words=50)
    (top, _), *_ = retriever.search(expected[0].text, 1)
    assert top == expected[0]
    assert f"{len(expected)} passages indexed" in capsys.readouterr().out
