"""Preference pairs from a run's mistakes (`python -m gemma_tune.pairs`): each pair prefers the
reference to the answer the tuned model gives, its prompt encodes to the supervised example's
prompt tokens, rows a pair cannot hold are named, and bad input stops before a file is written."""

import json
import os
import subprocess
import sys

import pytest

from gemma_tune import config as config_lib
from gemma_tune import pairs, train
from gemma_tune.data import example, preference_rows
from gemma_tune.evaluation import metrics, mistake_pairs
from gemma_tune.runs import tuned_run
from gemma_tune.training import template

USER, MODEL = example.USER, example.MODEL


def _example(*texts, system=None, context=None, source="qa.jsonl:1"):
    roles = [USER, MODEL] * len(texts)
    turns = tuple(example.Turn(role, text) for role, text in zip(roles, texts, strict=False))
    return example.Example(turns=turns, system=system, context=context, source=source)


def test_a_mistake_is_a_non_empty_answer_that_misses_after_normalization():
    assert mistake_pairs.is_mistake("15", "15 minutes")
    assert mistake_pairs.is_mistake("Monday to Friday", "Hana Ferreira")
    # Case, punctuation and articles are not mistakes (SQuAD's exact match), nor is silence.
    assert not mistake_pairs.is_mistake("The Yard.", "yard")
    assert not mistake_pairs.is_mistake("  ", "yard")


def test_greedy_mistakes_keep_the_examples_indices_and_resample_the_rest():
    examples = [_example("q1", "red"), _example("q2", "blue"), _example("q3", "green")]
    found, right = mistake_pairs.greedy_mistakes(examples, ["red", "green", ""])
    assert list(found) == [1] and found[1].answer == "green" and found[1].drawn == "greedy"
    assert right == [0, 2]  # right, and empty (no answer to prefer against)


def test_a_rejected_answer_is_cut_after_its_first_wrong_token(chat_template):
    assert mistake_pairs.divergence([5, 6, 9, 9], [5, 6, 7, 1]) == 3
    assert mistake_pairs.divergence([5, 6], [5, 6, 7, 1]) is None  # it stopped early
    assert mistake_pairs.divergence([4], [5, 6]) == 1
    item = _example("What should visitors wear?", "open toed shoes")
    reference = chat_template.answer_ids(item.response)
    assert reference[-1] == chat_template.end_of_turn_id
    assert chat_template.decode(reference) == "open toed shoes"

    def trimmed(text):
        ids = chat_template.answer_ids(text)[:-1]  # as generated: the stop token left out
        return mistake_pairs.trim(mistake_pairs.Mistake(item, text, "sampled"), ids, chat_template)

    # The test vocabulary is nearly one token per character: a run-on answer keeps the
    # reference's tokens and the first one after them.
    run_on = trimmed("open toed shoesy and gloves and a hat")
    assert (run_on.answer, run_on.trimmed) == ("open toed shoesy", True)
    # A wrong answer keeps its first token; one that stopped early stays whole.
    assert trimmed("closed toed shoes").answer == "c"
    short = trimmed("open toed")
    assert (short.answer, short.trimmed) == ("open toed", False)
    # A cut that would leave a right answer ("open toed shoes ") keeps the whole wrong one.
    spaced = trimmed("open toed shoes and gloves")
    assert (spaced.answer, spaced.trimmed) == ("open toed shoes and gloves", False)


@pytest.mark.parametrize(
    "item",
    [
        _example("What is on sale?", "apples", context="## Shop\n\nApples are on sale."),
        _example("What is on sale?", "apples", system="Answer in one word."),
        _example("Hi", "Hello!", "What is on sale?", "apples", system="Be brief."),
    ],
    ids=["context", "system", "conversation"],
)
def test_a_written_pair_reads_back_with_the_supervised_prompt(item, chat_template, tmp_path):
    path = str(tmp_path / "pairs.jsonl")
    mistake_pairs.write_pairs(path, [mistake_pairs.Mistake(item, "pears", "greedy")])
    assert os.listdir(tmp_path) == ["pairs.jsonl"]  # no partial file left behind
    (pair,) = preference_rows.read_file(path).pairs
    assert (pair.chosen, pair.rejected) == ("apples", "pears")
    # The pair's prompt is the supervised example's prompt, token for token.
    assert list(chat_template.encode_prompt(pair.chosen_example)) == list(
        chat_template.encode_prompt(item)
    )
    row = json.loads(open(path).read())
    assert isinstance(row["prompt"], list) == (len(item.turns) > 2)


def test_rows_a_pair_cannot_hold_are_named():
    document = example.Example(turns=(), text="a page", source="corpus.jsonl:3")
    with pytest.raises(ValueError, match=r"corpus.jsonl:3: a document \(a text row\)"):
        mistake_pairs.check_examples([_example("q", "a"), document])
    call = example.ToolCall("lookup", {}, None, "messages[1].tool_calls[0]")
    with_tools = example.Example(
        turns=(example.Turn(USER, "q"), example.Turn(MODEL, "", tool_calls=(call,))),
        source="tools.jsonl:2",
    )
    with pytest.raises(ValueError, match=r"tools.jsonl:2: tools: .*no tool calls"):
        mistake_pairs.check_examples([with_tools])


@pytest.mark.parametrize(
    "setting, message",
    [
        ({"samples": -1}, "--samples must be 0 or more"),
        ({"samples": 2, "temperature": 0.0}, "--temperature must be above 0"),
        ({"top_p": 0.0}, r"--top_p must be in \(0, 1\]"),
    ],
)
def test_bad_settings_stop_before_the_run_is_read(setting, message, tmp_path):
    with pytest.raises(ValueError, match=message):
        pairs.make_pairs(str(tmp_path / "no_run"), out=str(tmp_path / "p.jsonl"), **setting)
    assert os.listdir(tmp_path) == []


def _pairs(*args):
    return subprocess.run(
        [sys.executable, "-m", "gemma_tune.pairs", *args],
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.slow  # a tiny run, then the command in a subprocess: ~40 s on 2 CPU cores
def test_pairs_hold_the_tuned_models_own_wrong_answers(tmp_path):
    run_path = str(tmp_path / "run")
    settings = ["train.max_steps=8", "samples.max_new_tokens=5", "eval.limit=0"]
    train.run(config_lib.load("tiny", settings), run_path)
    out = str(tmp_path / "pairs.jsonl")

    result = _pairs(f"--run={run_path}", "--split=validation", "--samples=2", f"--out={out}")
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().splitlines()[-1].startswith(f"Pairs: {out} (")
    summary = [line for line in result.stderr.splitlines() if "answered right greedily" in line]
    counts = [int(word) for word in summary[0].replace(",", "").split() if word.isdigit()]
    prompts, right, greedy_wrong, sampled_wrong, without, trimmed = counts
    assert prompts == right + greedy_wrong and right == sampled_wrong + without
    assert trimmed <= greedy_wrong + sampled_wrong
    pairs = preference_rows.read_file(out).pairs
    assert len(pairs) == greedy_wrong + sampled_wrong > 0
    for pair in pairs:
        assert metrics.exact_match(pair.rejected, pair.chosen) == 0.0

    # The greedy mistakes are what the tuned model answers: regenerate them from the run.
    tuned = tuned_run.load_tuned(run_path)
    chat = template.ChatTemplate(tuned.loaded.tokenizer)
    again = mistake_pairs.find_mistakes(
        tuned.loaded.causal_lm, chat, [pair.chosen_example for pair in pairs], samples=0,
        temperature=1.0, top_p=1.0, max_new_tokens=5, batch_size=4,
    )  # fmt: skip
    greedy = {m.example.prompt: m.answer for m in again}
    assert sum(greedy.get(p.chosen_example.prompt) == p.rejected for p in pairs) == greedy_wrong

    # Bad input: one line on stderr, exit 1, nothing written.
    missing = _pairs(f"--run={tmp_path / 'nope'}", f"--out={tmp_path / 'x.jsonl'}")
    assert missing.returncode == 1 and missing.stderr.strip().startswith("error: ")
    assert not os.path.exists(tmp_path / "x.jsonl")
