"""`python -m gemma_tune.evaluate`: rebuilds a run's base and tuned model, scores both, and
reports; retrieval adds the +context systems; bad input is named before any model loads."""

import json
import os
import subprocess
import sys

import pytest

from gemma_tune import config as config_lib
from gemma_tune import train

SETTINGS = ["train.max_steps=30", "samples.max_new_tokens=6", "samples.count=2"]


def _evaluate(*args, timeout=300):
    return subprocess.run(
        [sys.executable, "-m", "gemma_tune.evaluate", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _json(path):
    with open(path) as f:
        return json.load(f)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    run_path = str(tmp_path_factory.mktemp("eval") / "run")
    prompts = '["Repeat after me: the cat likes red apples.", "What color is the sky?"]'
    train.run(config_lib.load("tiny", [*SETTINGS, f"eval.prompts={prompts}"]), run_path)
    return run_path


@pytest.mark.slow  # >15 s on a 2-core AVX2 CPU: slow suite (CI runs it)
def test_evaluating_a_run_reproduces_its_answers_and_losses(tiny_run, tmp_path):
    out = str(tmp_path / "evaluation")
    result = _evaluate(f"--run={tiny_run}", f"--out={out}")
    assert result.returncode == 0, result.stderr[-3000:]
    # Stdout holds the results alone (the comparison and where it is); status is on stderr.
    lines = result.stdout.strip().splitlines()
    assert lines[0].startswith("Held-out comparison (") and lines[1].split()[0] == "metric"
    assert all(len(line.split()) == 3 for line in lines[1:-2]), result.stdout
    assert lines[-2:] == [f"Report: {out}/report.html", f"Evaluation directory: {out}"]
    for status in ("Reading the evaluation data", "Generating "):
        assert status in result.stderr and status not in result.stdout, status
    during_training = _json(os.path.join(tiny_run, "comparison.json"))
    again = _json(os.path.join(out, "comparison.json"))
    assert again["systems"] == ["base", "tuned"] == during_training["systems"]
    assert again["count"] == during_training["count"] > 0
    # Greedy answers of the rebuilt base and tuned models equal those of the training run.
    for before, after in zip(during_training["examples"], again["examples"], strict=True):
        assert after["answers"] == before["answers"]
    assert again["means"] == during_training["means"]
    # Reference losses on the same examples equal the run's own validation passes.
    run_result = _json(os.path.join(tiny_run, "result.json"))
    assert again["losses"]["tuned"]["loss"] == pytest.approx(run_result["val_loss"], rel=1e-5)
    assert again["losses"]["base"]["loss"] == pytest.approx(run_result["base_val_loss"], rel=1e-5)
    assert again["losses"]["tuned"]["loss"] < again["losses"]["base"]["loss"]
    assert [q["prompt"] for q in again["qualitative"]] == [
        "Repeat after me: the cat likes red apples.",
        "What color is the sky?",
    ]
    assert again["qualitative"] == during_training["qualitative"]
    assert os.path.exists(os.path.join(out, "report.html"))


@pytest.mark.slow  # >15 s on a 2-core AVX2 CPU: slow suite (CI runs it)
def test_any_file_against_a_model_and_bad_rows_named(tiny_run, tmp_path):
    data = tmp_path / "questions.jsonl"
    rows = [
        {
            "prompt": "Repeat after me: a dog sees blue boxes.",
            "completion": "a dog sees blue boxes.",
        },
        {
            "prompt": "Repeat after me: the bird finds old books.",
            "completion": "the bird finds old books.",
        },
    ]
    data.write_text("".join(json.dumps(row) + "\n" for row in rows))
    out = str(tmp_path / "file_eval")
    adapter = os.path.join(tiny_run, "adapter")
    result = _evaluate(
        "--model=tiny:gemma1", f"--adapter={adapter}", f"--data={data}", f"--out={out}"
    )
    assert result.returncode == 0, result.stderr[-3000:]
    comparison = _json(os.path.join(out, "comparison.json"))
    assert comparison["count"] == 2 and comparison["systems"] == ["base", "tuned"]
    assert comparison["examples"][1]["reference"] == "the bird finds old books."

    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(rows[0]) + "\n" + '{"prompt": "no answer"}\n')
    out_bad = str(tmp_path / "bad_eval")
    result = _evaluate("--model=tiny:gemma1", f"--data={bad}", f"--out={out_bad}")
    assert result.returncode == 1
    assert f"{bad}:2:" in result.stderr and "completion" in result.stderr
    assert not os.path.exists(out_bad)


def test_retrieval_runs_the_four_way_comparison(tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "colors.md").write_text(
        "# Sky colors\n\nThe sky above red apples is blue.\n\n"
        "# Repeating\n\nTo repeat after me, say the sentence again.\n"
    )
    (corpus / "notes.txt").write_text("A dog sees blue boxes.\n\nThe robot carries old books.\n")
    config = config_lib.load(
        "tiny",
        [*SETTINGS, "eval.limit=3", f"retrieval.corpus={corpus}", "retrieval.top_k=1"],
    )
    run_path = train.run(config, str(tmp_path / "run"))
    comparison = _json(os.path.join(run_path, "comparison.json"))
    assert comparison["systems"] == ["base", "base+context", "tuned", "tuned+context"]
    assert comparison["primary"] == "tuned+context"
    assert all(example["context"] for example in comparison["examples"])
    # The tuned model learned with passages in its prompts: its losses are the +context ones.
    assert set(comparison["losses"]) == {"base+context", "tuned+context"}
    report = open(os.path.join(run_path, "report.md")).read()
    assert "tuned+context" in report


def test_python_api_evaluates_a_base_model_on_a_file(tmp_path):
    from gemma_tune import evaluate

    data = tmp_path / "qa.csv"
    data.write_text(
        "input,output\nRepeat after me: a dog sees blue boxes.,a dog sees blue boxes.\n"
    )
    with pytest.raises(ValueError, match="output directory"):
        evaluate.evaluate(model_name="tiny:gemma1", data=str(data))
    out = evaluate.evaluate(
        model_name="tiny:gemma1", data=str(data), out=str(tmp_path / "out"), max_new_tokens=4
    )
    comparison = _json(os.path.join(out, "comparison.json"))
    assert comparison["systems"] == ["base"] and comparison["count"] == 1
    assert "tuned" not in comparison["losses"] and comparison["losses"]["base"]["loss"] > 0
