"""The new formats train end to end on a tiny Gemma: a JSON array of OpenAI chat rows with
`"weight": 0` turns and unused keys, and `{"text"}` documents (language modelling)."""

import json
import subprocess
import sys

import pytest


def _chat_rows():
    rows = []
    for i in range(16):
        rows.append(
            {
                "id": i,
                "messages": [
                    {"role": "user", "content": f"Say {i}."},
                    {"role": "assistant", "content": "no", "weight": 0},
                    {"role": "user", "content": f"Please say {i}."},
                    {"role": "assistant", "content": f"{i}", "weight": 1},
                ],
            }
        )
    return rows


def _text_rows():
    return [{"text": f"The number {i} comes after {i - 1}.", "source": "gen"} for i in range(16)]


@pytest.mark.slow
@pytest.mark.parametrize(
    "name, rows, warning",
    [("chat.json", _chat_rows(), "id: not used"), ("docs.jsonl", _text_rows(), "source: not used")],
)
def test_tiny_run_on_a_format_file(tmp_path, name, rows, warning):
    data = tmp_path / name
    if name.endswith(".json"):
        data.write_text(json.dumps(rows, indent=1))
    else:
        data.write_text("".join(json.dumps(row) + "\n" for row in rows))
    run_path = tmp_path / "run"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "gemma_tune.train",
            "--experiment=tiny:gemma3",
            f"--workdir={run_path}",
            "--set",
            "data.source=file",
            "--set",
            f"data.path={data}",
            "--set",
            "train.epochs=1",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((run_path / "data_summary.json").read_text())
    assert summary["rows_read"] == 16 and summary["train_count"] > 0
    assert any(warning in line for line in summary["warnings"])
    records = [json.loads(line) for line in (run_path / "metrics.jsonl").read_text().splitlines()]
    assert any("val_loss" in record for record in records)
    if name == "docs.jsonl":  # no prompt to answer: validation loss only, no answer metrics
        assert "documents have no prompt to answer" in result.stderr
        assert not (run_path / "comparison.json").exists()
        outcome = json.loads((run_path / "result.json").read_text())
        assert outcome["val_loss"] < outcome["base_val_loss"] and "tuned" not in outcome
