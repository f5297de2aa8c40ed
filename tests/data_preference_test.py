"""Preference data: each format's rows become the same PreferencePair, and bad rows are named
by file, line and field; supervised tuning keeps refusing preference rows."""

import gzip
import json
import subprocess
import sys

import pytest

from gemma_tune.data import example, files, preference_rows

PAIR = ("What is 2+2?", "4", "5")


def _write(tmp_path, rows, name="pairs.jsonl"):
    path = tmp_path / name
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def _messages(*pairs):
    return [{"role": role, "content": content} for role, content in pairs]


def _gemini(role, text):
    return {"role": role, "parts": [{"text": text}]}


FORMATS = {
    "trl": {"prompt": PAIR[0], "chosen": PAIR[1], "rejected": PAIR[2]},
    "trl_conversational": {
        "prompt": _messages(("user", PAIR[0])),
        "chosen": _messages(("assistant", PAIR[1])),
        "rejected": _messages(("assistant", PAIR[2])),
    },
    "trl_implicit": {
        "chosen": _messages(("user", PAIR[0]), ("assistant", PAIR[1])),
        "rejected": _messages(("user", PAIR[0]), ("assistant", PAIR[2])),
    },
    "openai_preference": {
        "input": {
            "messages": _messages(("user", PAIR[0])),
            "tools": [],
            "parallel_tool_calls": True,
        },
        "preferred_output": _messages(("assistant", PAIR[1])),
        "non_preferred_output": _messages(("assistant", PAIR[2])),
    },
    "vertex_preference": {
        "contents": [_gemini("user", PAIR[0])],
        "completions": [
            {"score": 0, "completion": _gemini("model", PAIR[2])},
            {"score": 1, "completion": _gemini("model", PAIR[1])},
        ],
    },
}


@pytest.mark.parametrize("name", FORMATS)
def test_each_format_reads_as_the_same_pair(tmp_path, name):
    path = _write(tmp_path, [FORMATS[name]])
    result = preference_rows.read_file(path)
    assert result.format == name.removesuffix("_conversational")
    (pair,) = result.pairs
    assert pair.prompt == (example.Turn("user", PAIR[0]),)
    assert (pair.chosen, pair.rejected) == PAIR[1:]
    assert pair.source == f"{path}:1"
    assert result.warnings == []
    assert pair.chosen_example.turns[-1] == example.Turn("model", PAIR[1])
    assert pair.rejected_example.turns[:-1] == pair.prompt


def test_multi_turn_prompts_and_system_prompts(tmp_path):
    history = (("user", "Hi"), ("assistant", "Hello!"), ("user", "Say 4."))
    rows = [
        {
            "chosen": _messages(("system", "Be brief."), *history, ("assistant", "4")),
            "rejected": _messages(("system", "Be brief."), *history, ("assistant", "four")),
        }
    ]
    (pair,) = preference_rows.read_file(_write(tmp_path, rows)).pairs
    assert pair.system == "Be brief."
    assert [turn.role for turn in pair.prompt] == ["user", "model", "user"]
    assert (pair.chosen, pair.rejected) == ("4", "four")
    vertex = {
        "system_instruction": {"parts": [{"text": "Be brief."}]},
        "contents": [_gemini("user", "Hi"), _gemini("model", "Hello!"), _gemini("user", "4?")],
        "completions": [
            {"score": 2.5, "completion": _gemini("model", "4")},
            {"score": -1, "completion": _gemini("model", "four")},
        ],
    }
    (pair,) = preference_rows.read_file(_write(tmp_path, [vertex], "v.jsonl")).pairs
    assert (pair.system, len(pair.prompt), pair.chosen, pair.rejected) == (
        "Be brief.",
        3,
        "4",
        "four",
    )


def test_csv_json_array_parquet_and_gzip_containers(tmp_path):
    csv_path = tmp_path / "pairs.csv"
    csv_path.write_text('prompt,chosen,rejected,system\n"What is\n2+2?",4,5,\nQ2,yes,no,Be kind.\n')
    result = preference_rows.read_file(csv_path)
    assert [pair.source for pair in result.pairs] == [f"{csv_path}:2", f"{csv_path}:4"]
    assert result.pairs[0].system is None and result.pairs[1].system == "Be kind."
    array = tmp_path / "pairs.json"
    array.write_text(json.dumps([FORMATS["openai_preference"]] * 2, indent=1))
    assert len(preference_rows.read_file(array).pairs) == 2
    packed = tmp_path / "pairs.jsonl.gz"
    packed.write_bytes(gzip.compress(_write(tmp_path, [FORMATS["trl"]]).read_bytes()))
    assert preference_rows.read_file(packed).pairs[0].chosen == "4"
    import pyarrow
    import pyarrow.parquet

    table = pyarrow.Table.from_pylist([FORMATS["trl_conversational"]] * 3)
    pyarrow.parquet.write_table(table, tmp_path / "pairs.parquet")
    assert len(preference_rows.read_file(tmp_path / "pairs.parquet").pairs) == 3
    import datasets

    datasets.Dataset.from_list([FORMATS["trl"]] * 2).save_to_disk(str(tmp_path / "saved"))
    saved = preference_rows.read_file(tmp_path / "saved")
    assert [pair.source for pair in saved.pairs] == [f"{tmp_path / 'saved'}:{n}" for n in (1, 2)]


def _problems(path, **kwargs):
    with pytest.raises(example.DataError) as raised:
        preference_rows.read_file(path, **kwargs)
    return [str(problem) for problem in raised.value.problems]


def test_bad_rows_are_named_by_file_line_and_field(tmp_path):
    good = FORMATS["trl_conversational"]
    rows = [
        good,
        {**good, "rejected": good["chosen"]},  # identical
        {"prompt": good["prompt"], "chosen": good["chosen"], "rejected": None},  # missing side
        {**good, "prompt": _messages(("user", "Q"), ("assistant", "A"))},  # ends with model
        {**good, "chosen": _messages(("assistant", "a"), ("assistant", "b"))},
        {**good, "rejected": _messages(("user", "4"))},
        {**good, "chosen": "4"},
    ]
    path = _write(tmp_path, rows)
    assert _problems(path) == [
        f"{path}:2: rejected: identical to the preferred answer: nothing to prefer",
        f"{path}:3: rejected: is null",
        f"{path}:4: prompt[1].role: the conversation does not end with a user turn",
        f"{path}:5: chosen: 2 messages; expected one assistant message, the answer",
        f"{path}:6: rejected[0].role: expected 'assistant' (the answer), got 'user'",
        f"{path}:7: chosen: expected a list of messages, got string (prompt, chosen and "
        "rejected are all strings or all lists of messages)",
    ]


def test_bad_rows_of_the_other_formats(tmp_path):
    openai = FORMATS["openai_preference"]
    vertex = FORMATS["vertex_preference"]
    implicit = FORMATS["trl_implicit"]
    same_score = [dict(item, score=1) for item in vertex["completions"]]
    cases = [
        ({**openai, "non_preferred_output": openai["preferred_output"]}, "non_preferred_output"),
        ({**openai, "input": {"messages": _messages(("assistant", "hi"))}}, "input.messages[0]"),
        ({**openai, "input": {"messages": [], "tools": [{"type": "function"}]}}, "input.tools"),
        ({**vertex, "completions": vertex["completions"][:1]}, "completions"),
        ({**vertex, "completions": same_score}, "completions[1].score"),
        ({**vertex, "contents": [_gemini("user", "q"), _gemini("model", "a")]}, "contents[1]"),
        ({**implicit, "rejected": implicit["chosen"]}, "rejected"),
        ({**implicit, "rejected": _messages(("user", "other"), ("assistant", "5"))}, "rejected"),
        ({**implicit, "chosen": "4", "rejected": "5"}, "chosen"),
        (
            {**implicit, "rejected": [implicit["chosen"][0], {"role": "tool", "content": "5"}]},
            "rejected[1].role",
        ),
    ]
    for index, (row, field) in enumerate(cases):
        path = _write(tmp_path, [row], f"case{index}.jsonl")
        (problem,) = _problems(path)[:1]
        assert problem.startswith(f"{path}:1: {field}"), problem


def test_supervised_and_other_rows_are_refused_by_the_preference_reader(tmp_path):
    path = _write(tmp_path, [{"messages": _messages(("user", "q"), ("assistant", "a"))}])
    (problem,) = _problems(path)
    assert "fit no preference format (they are openai_chat rows, supervised data)" in problem
    kto = _write(tmp_path, [{"prompt": "q", "completion": "a", "label": True}], "kto.jsonl")
    assert "KTO data" in _problems(kto)[0]
    images = _write(tmp_path, [{**FORMATS["trl"], "images": ["a.png"]}], "images.jsonl")
    assert "images are not supported" in _problems(images)[0]
    with pytest.raises(ValueError, match="unknown preference format 'alpaca'"):
        preference_rows.read_file(path, format="alpaca")


def test_rows_fitting_no_format_are_named_once_per_key_set(tmp_path):
    path = tmp_path / "pairs.csv"
    path.write_text("prompt,good,bad\nq1,a,b\nq2,a,b\nq3,a,b\n")
    (problem,) = _problems(path)
    assert problem.startswith(f"{path}:2: row: the keys (bad, good, prompt) fit no ")
    assert problem.endswith("(3 rows with these keys)")
    path.write_text("question,chosen,rejected\nq1,a,b\n")
    assert _problems(path) == [
        f"{path}:2: chosen: a string without a prompt: add a prompt (key or CSV column), or "
        "give chosen and rejected as whole conversations (lists of messages) that share the "
        "prompt"
    ]


def test_forced_format_and_unused_keys(tmp_path):
    row = {**FORMATS["trl"], "score_chosen": 9.0}
    result = preference_rows.read_file(_write(tmp_path, [row, row]), format="trl")
    (warning,) = result.warnings
    assert (warning.line, warning.field) == (1, "score_chosen")
    path = _write(tmp_path, [FORMATS["trl"]], "forced.jsonl")
    (problem,) = _problems(path, format="openai_preference")
    assert "are of the trl format, but the file is openai_preference" in problem


@pytest.mark.parametrize("name", ["trl", "openai_preference", "vertex_preference"])
def test_supervised_reading_still_refuses_preference_rows(tmp_path, name):
    with pytest.raises(example.DataError, match="preference data .* is not supported"):
        files.read(_write(tmp_path, [FORMATS[name]]))


def _check(*args):
    return subprocess.run(
        [sys.executable, "-m", "gemma_tune.data", "check", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_data_check_reads_preference_pairs(tmp_path):
    good = _write(tmp_path, [FORMATS["vertex_preference"], FORMATS["vertex_preference"]])
    run = _check(str(good), "--preference=auto")
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines()[:3] == [
        "format: vertex_preference",
        "rows read: 2",
        "preference pairs: 2",
    ]
    assert "chosen words: p50 1" in run.stdout
    bad = _write(tmp_path, [FORMATS["trl"], {**FORMATS["trl"], "rejected": "4"}], "bad.jsonl")
    run = _check(str(bad), "--preference=auto")
    assert run.returncode == 1
    assert run.stdout.splitlines() == [
        f"{bad}:2: rejected: identical to the preferred answer: nothing to prefer"
    ]
    assert "1 problem(s)" in run.stderr


def test_hugging_face_datasets_by_their_columns(tmp_path):
    rows = [
        {**FORMATS["trl_implicit"], "score_chosen": 8.0, "score_rejected": 2.0},
        {**FORMATS["trl_implicit"], "rejected": FORMATS["trl_implicit"]["chosen"]},
    ]
    result = preference_rows.load_hf("trl-lib/ultrafeedback_binarized", rows=rows)
    assert (result.format, result.rows_read, len(result.pairs)) == ("trl_implicit", 2, 1)
    assert result.pairs[0].source == "trl-lib/ultrafeedback_binarized[0]"
    assert result.dropped == {"invalid row (rejected: identical to chosen: nothing to prefer)": 1}
    assert [warning.field for warning in result.warnings] == ["score_chosen", "score_rejected"]
    import datasets

    datasets.Dataset.from_list([FORMATS["openai_preference"]] * 3).save_to_disk(str(tmp_path))
    saved = preference_rows.load_hf(str(tmp_path), "train[:2]")
    assert (saved.format, len(saved.pairs)) == ("openai_preference", 2)
    with pytest.raises(ValueError, match="fit no preference format .*openai_chat"):
        preference_rows.load_hf("chat", rows=[{"messages": []}])
    with pytest.raises(ValueError, match="KTO data"):
        preference_rows.load_hf("kto", rows=[{"prompt": "q", "completion": "a", "label": True}])


@pytest.mark.slow  # ~8 s: the tiny tokenizer's vocabulary is trained in the subprocess
def test_data_check_with_a_model_counts_truncated_rows_and_pairs_left_without_answer(tmp_path):
    rows = [FORMATS["trl"], {**FORMATS["trl"], "prompt": "word " * 60}]
    path = _write(tmp_path, rows)
    run = _check(str(path), "--preference=auto", "--model=tiny:gemma1", "--sequence_length=40")
    assert run.returncode == 0, run.stderr
    assert "rows: 2 of 4 longer than sequence_length 40" in run.stdout
    assert "pairs left with no answer (dropped in training): 1" in run.stdout
