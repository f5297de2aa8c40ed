"""`python -m gemma_tune.train` end to end on the tiny experiment, and its refusals."""

import json
import subprocess
import sys

import pytest


def _train(*args, timeout=300):
    return subprocess.run(
        [sys.executable, "-m", "gemma_tune.train", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _assert_stdout_holds_only_the_results(result, run_path):
    """Stdout: the comparison table, `Report: ...` and `Run directory: ...`, nothing else
    (`run=$(... | tail -1)` works); status and progress are on stderr."""
    lines = result.stdout.strip().splitlines()
    assert lines[0].startswith("Held-out comparison (") and lines[1].split() == [
        "metric",
        "base",
        "tuned",
    ], result.stdout
    for row in lines[2:-2]:  # one metric per row: its name, the base's and the tuned value
        name, base, tuned = row.split()
        assert name.replace("_", "").isalnum() and float(base) >= 0 and float(tuned) >= 0, row
    assert lines[-2:] == [f"Report: {run_path / 'report.html'}", f"Run directory: {run_path}"]
    for status in ("Reading and checking the data", "Model tiny:", "Training ", "train: 100%"):
        assert status in result.stderr and status not in result.stdout, status


@pytest.mark.parametrize(
    "architecture", ["gemma1", pytest.param("gemma3", marks=pytest.mark.slow)]  # gemma3: ~25 s
)
def test_tiny_run_writes_a_complete_run_directory(tmp_path, architecture):
    run_path = tmp_path / "run"
    result = _train(
        f"--experiment=tiny:{architecture}", f"--workdir={run_path}", "--set", "train.epochs=2"
    )
    assert result.returncode == 0, result.stderr[-3000:]
    _assert_stdout_holds_only_the_results(result, run_path)

    config = json.loads((run_path / "config.json").read_text())
    assert config["model"]["preset"] == f"tiny:{architecture}"
    assert config["train"]["epochs"] == 2
    summary = json.loads((run_path / "data_summary.json").read_text())
    assert summary["rows_read"] == 48 and summary["train_count"] > 0
    assert summary["token_lengths"]["max"] > 0

    records = [json.loads(line) for line in (run_path / "metrics.jsonl").read_text().splitlines()]
    train_losses = [r["loss"] for r in records if "loss" in r]
    assert train_losses[-1] < train_losses[0]
    assert any("val_loss" in r for r in records)

    adapter = json.loads((run_path / "adapter" / "adapter.json").read_text())
    assert adapter["rank"] == 8 and adapter["base_preset"] == f"tiny:{architecture}"
    assert adapter["alpha"] == 8.0 and adapter["targets"] == ["query", "value"]
    assert adapter["gemma_tune_version"] and len(adapter["base_fingerprint"]) == 16
    assert all("lora" in path for path in adapter["weights"])
    samples = (run_path / "samples.md").read_text()
    assert "| base | tuned |" in samples and samples.count("## Example") == 3
    result_json = json.loads((run_path / "result.json").read_text())
    assert result_json["steps"] > 0 and result_json["parameters_trainable"] > 0


def test_bad_data_stops_before_the_model_and_writes_nothing(tmp_path):
    data = tmp_path / "bad.jsonl"
    data.write_text(
        '{"prompt": "hi", "completion": "hello"}\n'
        '{"prompt": "hi again", "completion": ""}\n'
        "not json\n"
    )
    run_path = tmp_path / "run"
    result = _train(
        "--experiment=jsonl_sft", f"--workdir={run_path}", "--set", f"data.path={data}", timeout=120
    )
    assert result.returncode == 1
    assert f"{data}:2: completion" in result.stderr
    assert f"{data}:3:" in result.stderr
    assert "Loading" not in result.stderr and result.stdout == ""
    assert not run_path.exists()


def test_refuses_a_directory_holding_another_run(tmp_path):
    run_path = tmp_path / "run"
    run_path.mkdir()
    (run_path / "config.json").write_text('{"seed": 1, "model": {"preset": "tiny:gemma2"}}')
    checkpoint = run_path / "checkpoints" / "step-000001"  # it got far enough to resume
    checkpoint.mkdir(parents=True)
    (checkpoint / "state.json").write_text("{}")
    result = _train("--experiment=tiny", f"--workdir={run_path}", timeout=120)
    assert result.returncode == 1
    assert "holds an unfinished run of another config" in result.stderr
    assert "differs in" in result.stderr
    assert "--overwrite" in result.stderr


@pytest.mark.slow  # >15 s on a 2-core AVX2 CPU: slow suite (CI runs it)
def test_a_diverging_run_stops_naming_the_step(tmp_path):
    result = _train(
        "--experiment=tiny",
        f"--workdir={tmp_path / 'run'}",
        "--set",
        "train.learning_rate=3e38",  # finite (in range), but float32 weights overflow
        "--set",
        "train.warmup_steps=0",
        timeout=300,
    )
    assert result.returncode == 1
    assert "loss became" in result.stderr and "at step" in result.stderr


def test_an_unknown_lora_target_stops_before_any_work(tmp_path):
    result = _train(
        "--experiment=tiny",
        f"--workdir={tmp_path / 'run'}",
        "--set",
        'lora.targets=["q_proj"]',
        timeout=120,
    )
    assert result.returncode == 2
    assert "lora.targets: unknown target 'q_proj'" in result.stderr
    assert not (tmp_path / "run").exists()
