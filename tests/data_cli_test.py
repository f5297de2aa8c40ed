"""Tests for `python -m gemma_tune.data check`, run as users run it."""

import json
import subprocess
import sys

import pytest


def check(*args):
    return subprocess.run(
        [sys.executable, "-m", "gemma_tune.data", "check", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_bad_file_prints_every_problem_and_exits_1(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_bytes(b'{"prompt": "a", "completion": ""}\n\n{oops\n{"prompt": "\xff"}\n')
    run = check(str(path))
    assert run.returncode == 1
    lines = run.stdout.splitlines()
    assert lines[0] == f"{path}:1: completion: empty"
    assert lines[1].startswith(f"{path}:3: line: invalid JSON")
    assert lines[2].startswith(f"{path}:4: line: invalid UTF-8")
    assert len(lines) == 3
    assert "3 problem(s)" in run.stderr


def test_good_file_prints_the_summary_and_exits_0(tmp_path):
    path = tmp_path / "good.jsonl"
    rows = [
        {"instruction": "one two three", "response": "four five"},
        {"instruction": "One  two three", "response": "four five"},
        {"instruction": "a", "context": "passage", "response": "b"},
    ]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    run = check(str(path), "--dedup=normalized")
    assert run.returncode == 0, run.stderr
    assert "rows read: 3" in run.stdout
    assert "dropped: 1 (has context: 1)" in run.stdout
    assert "duplicates removed: 1" in run.stdout
    assert "train examples: 1" in run.stdout
    assert "characters: p50 23, p95 23, max 23" in run.stdout
    assert "words: p50 5, p95 5, max 5" in run.stdout


def test_csv_columns_and_missing_column(tmp_path):
    path = tmp_path / "qa.csv"
    path.write_text("question,answer\nhi,hello\n")
    good = check(str(path), "--input_column=question", "--output_column=answer")
    assert good.returncode == 0, good.stderr
    assert "train examples: 1" in good.stdout
    bad = check(str(path))
    assert bad.returncode == 1
    assert bad.stdout.startswith(f"{path}:1: header: no column 'input', 'output'")


def test_cli_does_not_import_heavy_libraries():
    code = (
        "import sys, gemma_tune.data.__main__; "
        "print(sorted(m for m in ('tensorflow', 'keras', 'jax', 'datasets', "
        "'tensorflow_datasets', 'keras_hub') if m in sys.modules))"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert run.stdout.strip() == "[]", run.stderr


@pytest.mark.slow  # >15 s on a 2-core AVX2 CPU: slow suite (CI runs it)
def test_model_option_reports_token_lengths_and_truncation(tmp_path):
    path = tmp_path / "train.jsonl"
    rows = [
        {"prompt": "What color is the sky? It is red.", "completion": "Answer: red"},
        {"prompt": "hi", "completion": "Repeat after me: the cat sees old books."},
    ]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    run = check(str(path), "--model=tiny:gemma1", "--sequence_length=20")
    assert run.returncode == 0, run.stderr
    assert "2 of 2 longer than sequence_length 20" in run.stdout
    run = check(str(path), "--model=tiny:gemma1", "--sequence_length=500")
    assert "0 of 2 longer than sequence_length 500" in run.stdout


def test_stdout_holds_the_summary_alone_and_stderr_the_rest(tmp_path):
    path = tmp_path / "train.jsonl"
    path.write_text('{"prompt": "hi", "completion": "hello"}\n')
    run = check(str(path))
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    # The summary's `name: value` lines, ending with the lengths; the hint is on stderr.
    assert all(": " in line for line in lines) and lines[-2:] == [
        "characters: p50 8, p95 8, max 8",
        "words: p50 2, p95 2, max 2",
    ]
    assert "add --model=PRESET" in run.stderr and "add --model" not in run.stdout
    missing = check(str(tmp_path / "missing.jsonl"), "--model=tiny:gemma1")
    assert missing.returncode == 1 and missing.stdout == ""
    assert len(missing.stderr.strip().splitlines()) == 1, missing.stderr
    unknown = check(str(path), "--model=no_such_preset_xyz")
    assert unknown.returncode == 1 and unknown.stdout == "", unknown.stdout
    assert unknown.stderr.strip().splitlines()[-1].startswith("error: "), unknown.stderr[-2000:]
    assert "Traceback" not in unknown.stderr


def test_flags_before_or_after_the_file_and_with_a_space(tmp_path):
    path = tmp_path / "qa.csv"
    path.write_text("question,answer,passage\nhi,hello,doc\n")
    expected = check(str(path), "--input_column=question", "--output_column=answer")
    assert expected.returncode == 0, expected.stderr
    for args in (
        ["--input_column", "question", "--output_column", "answer", str(path)],
        ["--format=csv", str(path), "--input_column=question", "--output_column", "answer"],
    ):
        run = check(*args)
        assert run.returncode == 0, run.stderr
        assert run.stdout == expected.stdout


def test_usage_errors_name_the_problem(tmp_path):
    no_command = subprocess.run(
        [sys.executable, "-m", "gemma_tune.data", "verify", "x.jsonl"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert no_command.returncode != 0 and "give a command: check" in no_command.stderr
    two_files = check("a.jsonl", "b.jsonl")
    assert two_files.returncode != 0 and "check takes one file" in two_files.stderr
    bad_format = check(str(tmp_path / "x.jsonl"), "--format=parquet")
    assert bad_format.returncode != 0 and "openai_chat" in bad_format.stderr


def test_check_reads_a_gzipped_json_array_and_prints_the_unused_key_warnings(tmp_path):
    import gzip

    rows = [{"instruction": f"Say {i}.", "input": "", "output": f"{i}", "id": i} for i in range(3)]
    path = tmp_path / "alpaca.json.gz"
    path.write_bytes(gzip.compress(json.dumps(rows, indent=2).encode()))
    run = check(str(path), "--format=alpaca")
    assert run.returncode == 0, run.stderr
    assert "train examples: 3" in run.stdout
    assert f"warning: {path}:2: id: not used by the alpaca format; ignored" in run.stdout


def test_check_names_a_kto_file(tmp_path):
    path = tmp_path / "kto.jsonl"
    path.write_text('{"prompt": "a", "completion": "b", "label": false}\n')
    run = check(str(path))
    assert run.returncode == 1
    assert run.stdout.startswith(f"{path}:1: label: KTO data (prompt, completion, label) is not")
