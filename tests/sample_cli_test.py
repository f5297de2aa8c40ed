"""`python -m gemma_tune.sample` on a tiny run: side-by-side answers, deterministic at T=0."""

import subprocess
import sys

import pytest


def _run(*args, timeout=300):
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("sample") / "run"
    result = _run(
        "-m",
        "gemma_tune.train",
        "--experiment=tiny",
        f"--workdir={path}",
        "--set",
        "train.max_steps=20",
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return path


@pytest.mark.slow  # >15 s on a 2-core AVX2 CPU: slow suite (CI runs it)
def test_compare_base_prints_both_answers_deterministically(run_dir):
    args = (
        "-m",
        "gemma_tune.sample",
        f"--run={run_dir}",
        "--prompt=What color is the sky?",
        "--compare_base",
        "--max_new_tokens=8",
    )
    first = _run(*args)
    assert first.returncode == 0, first.stderr[-2000:]
    assert "--- base ---" in first.stdout and "--- tuned ---" in first.stdout
    base, tuned = first.stdout.split("--- tuned ---")
    assert base.split("--- base ---")[1].strip() != tuned.strip()
    second = _run(*args)
    assert second.stdout == first.stdout


@pytest.mark.slow  # >12 s on a 2-core AVX2 CPU: slow suite (CI runs it)
def test_interactive_prompts_from_stdin(run_dir):
    result = subprocess.run(
        [sys.executable, "-m", "gemma_tune.sample", f"--run={run_dir}", "--max_new_tokens=4"],
        input="What color is the sky?\nRepeat after me: a dog\n\n",
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.count("> ") >= 2


def test_needs_a_model(tmp_path):
    result = _run("-m", "gemma_tune.sample", "--prompt=hi")
    assert result.returncode != 0
    assert "--run" in result.stderr
