"""The bundled demo data: answers are in their passages, splits do not leak, files reproduce."""

import json
import os
import re

import pytest

from gemma_tune import bundled
from gemma_tune.bundled import make_demo_data

RAG = ("rag_train.jsonl", "rag_validation.jsonl")
CLOSED = ("closed_train.jsonl", "closed_validation.jsonl")
KEYS = ["instruction", "context", "response", "category"]


def _rows(name):
    with open(bundled.path(name), encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def _sections():
    return make_demo_data.read_sections(bundled.path("handbook.md"))


def _fact_of_question():
    return {q: fact for fact in make_demo_data.FACTS for q in fact.questions}


@pytest.mark.parametrize("name", RAG + CLOSED)
def test_rows_are_dolly_with_short_answers(name):
    rows = _rows(name)
    assert rows
    category = "closed_qa" if name in RAG else "open_qa"
    for row in rows:
        assert list(row) == KEYS
        assert row["category"] == category
        assert row["instruction"].endswith("?")
        assert 1 <= len(row["response"].split()) <= 5
        assert not row["response"].endswith(".")
        assert row["response"] == row["response"].strip()


@pytest.mark.parametrize("name", RAG)
def test_rag_answers_appear_in_their_section(name):
    sections = set(_sections().values())
    for row in _rows(name):
        assert row["context"] in sections
        body = row["context"].split("\n", 1)[1]
        assert make_demo_data.contains_span(body, row["response"]), row


@pytest.mark.parametrize("name", CLOSED)
def test_closed_rows_have_no_context_and_answers_from_the_handbook(name):
    sections = _sections()
    facts = _fact_of_question()
    for row in _rows(name):
        assert row["context"] == ""
        fact = facts[row["instruction"]]
        assert row["response"] == fact.answer
        assert make_demo_data.contains_span(sections[fact.section], fact.answer)


def test_rag_validation_sections_are_not_in_training():
    train = {row["context"] for row in _rows("rag_train.jsonl")}
    validation = {row["context"] for row in _rows("rag_validation.jsonl")}
    assert validation and not validation & train
    held_out = {int(re.match(r"## (\d+)\.", c).group(1)) for c in validation}
    assert held_out == {n for n in _sections() if make_demo_data.is_held_out(n)}
    assert len(held_out) == 8
    train_questions = {row["instruction"] for row in _rows("rag_train.jsonl")}
    for row in _rows("rag_validation.jsonl"):
        assert row["instruction"] not in train_questions


def test_closed_validation_asks_trained_facts_in_new_words():
    facts = _fact_of_question()
    train = _rows("closed_train.jsonl")
    train_questions = {row["instruction"] for row in train}
    trained_facts = {facts[row["instruction"]] for row in train}
    validation = _rows("closed_validation.jsonl")
    assert len(validation) == len(make_demo_data.FACTS)
    for row in validation:
        assert row["instruction"] not in train_questions
        assert facts[row["instruction"]] in trained_facts


def test_every_wording_is_used_once_per_task():
    wordings = [q for fact in make_demo_data.FACTS for q in fact.questions]
    assert len(wordings) == len(set(wordings))
    for names in (RAG, CLOSED):
        asked = [row["instruction"] for name in names for row in _rows(name)]
        assert sorted(asked) == sorted(wordings)


def test_contains_span_matches_whole_words_only():
    assert make_demo_data.contains_span("open until 5 pm today", "5 pm")
    assert not make_demo_data.contains_span("swept at 8:45 pm", "5 pm")
    assert not make_demo_data.contains_span("costs $55 a month", "$5")
    assert make_demo_data.contains_span("a $5 donation", "$5")


def test_handbook_has_forty_sections_each_with_a_fact():
    sections = _sections()
    assert len(sections) == 40
    assert {fact.section for fact in make_demo_data.FACTS} == set(sections)
    make_demo_data.check(sections)


def test_regenerating_reproduces_the_files_byte_for_byte(tmp_path):
    counts = make_demo_data.write_all(str(tmp_path))
    assert sorted(counts) == sorted(RAG + CLOSED)
    for name in RAG + CLOSED:
        with open(bundled.path(name), "rb") as committed, open(tmp_path / name, "rb") as fresh:
            assert fresh.read() == committed.read(), f"{name} is stale: rerun make_demo_data"


def test_readme_counts_match_the_files():
    with open(bundled.path("README.md"), encoding="utf-8") as f:
        readme = f.read()
    stated = {
        m.group(1): int(m.group(2))
        for m in re.finditer(r"^\| `(\w+\.jsonl)` \|.*\| (\d+) \|$", readme, re.MULTILINE)
    }
    assert set(RAG + CLOSED) <= set(stated)
    assert stated == {name: len(_rows(name)) for name in stated}


def test_path_finds_bundled_files_and_lists_them_for_unknown_names():
    assert os.path.isabs(bundled.path("handbook.md"))
    assert os.path.isfile(bundled.path("rag_train.jsonl"))
    with pytest.raises(FileNotFoundError, match="rag_train.jsonl"):
        bundled.path("nope.jsonl")
    with pytest.raises(FileNotFoundError):
        bundled.path("make_demo_data.py")


def test_preference_pairs_prefer_the_answer_span_and_reproduce(tmp_path):
    from gemma_tune.bundled import make_preference_data

    answers = {fact.answer for fact in make_demo_data.FACTS}
    for name in make_preference_data.FILES:
        rows = _rows(name)
        assert rows and all(list(row) == ["prompt", "chosen", "rejected"] for row in rows)
        for row in rows:
            assert row["chosen"] in answers and row["chosen"] != row["rejected"]
            context = row["prompt"].split("\n\n", 2)
            # The section shown holds the chosen answer; a rejected span is another answer of
            # it (wrong) or the sentence holding the chosen one (rambling).
            assert make_demo_data.contains_span(row["prompt"], row["chosen"]), context[0]
            assert row["rejected"] in row["prompt"]
    validation_prompts = {row["prompt"] for row in _rows(make_preference_data.FILES[1])}
    assert not validation_prompts & {row["prompt"] for row in _rows(make_preference_data.FILES[0])}
    make_preference_data.write_all(str(tmp_path))
    for name in make_preference_data.FILES:
        with open(bundled.path(name), "rb") as committed, open(tmp_path / name, "rb") as fresh:
            assert committed.read() == fresh.read(), name


def test_mistake_pairs_prefer_the_reference_to_a_wrong_answer_of_the_same_question():
    from gemma_tune.evaluation import metrics

    for pairs_name, questions_name in (
        ("mistakes_train.jsonl", "rag_train.jsonl"),
        ("mistakes_validation.jsonl", "rag_validation.jsonl"),
    ):
        references = {
            f"Context:\n{row['context']}\n\n{row['instruction']}": row["response"]
            for row in _rows(questions_name)
        }
        pairs = _rows(pairs_name)
        assert pairs and all(list(row) == ["prompt", "chosen", "rejected"] for row in pairs)
        for row in pairs:
            assert references[row["prompt"]] == row["chosen"], row["prompt"]
            assert metrics.exact_match(row["rejected"], row["chosen"]) == 0.0
