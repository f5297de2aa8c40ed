"""Every command answers `--help` with its own flags, and the `gemma-tune` console script runs
the same code as `python -m gemma_tune.<command>` (its help is identical, `data check` works)."""

import os
import subprocess
import sys

import pytest

from gemma_tune import bundled, cli

# Each command's module and flags of its own that its --help must list.
COMMAND_FLAGS = {
    "train": ["--experiment", "--set", "--workdir", "--resume", "--overwrite", "--print_config"],
    "sample": ["--run", "--model", "--adapter", "--prompt", "--compare_base", "--temperature"],
    "evaluate": ["--run", "--model", "--adapter", "--data", "--format", "--split", "--out"],
    "export": ["--run", "--to", "--out", "--dtype", "--overwrite", "--base_only", "--base_model"],
    "report": ["--run"],
    "pairs": ["--run", "--data", "--split", "--samples", "--temperature", "--top_p", "--out"],
    "data": ["--format", "--input_column", "--output_column", "--dedup", "--model"],
}
SCRIPT = os.path.join(os.path.dirname(sys.executable), "gemma-tune")
SMALL_JSONL = os.path.join(os.path.dirname(bundled.__file__), "closed_validation.jsonl")


def _run(*args, timeout=120):
    return subprocess.run(list(args), capture_output=True, text=True, timeout=timeout)


def _script(*args):
    assert os.path.exists(SCRIPT), f"no {SCRIPT}: run `pip install -e .` to install the script"
    return _run(SCRIPT, *args)


def _flags_listed(help_text: str, names: list[str]) -> list[str]:
    """The names missing from absl's help (each flag is listed as `  --name:` or
    `  --[no]name:`)."""
    return [
        name
        for name in names
        if f"  {name}:" not in help_text and f"  --[no]{name[2:]}:" not in help_text
    ]


@pytest.mark.parametrize("command", sorted(COMMAND_FLAGS))
def test_every_command_lists_its_own_flags(command):
    result = _run(sys.executable, "-m", f"gemma_tune.{command}", "--help")
    assert "flags:" in result.stdout, result.stderr[-2000:]
    assert _flags_listed(result.stdout, COMMAND_FLAGS[command]) == []


def test_data_check_help_lists_the_check_flags():
    result = _run(sys.executable, "-m", "gemma_tune.data", "check", "--help")
    assert _flags_listed(result.stdout, COMMAND_FLAGS["data"] + ["--sequence_length"]) == []


def test_script_lists_the_commands():
    for args in (["--help"], []):
        result = _script(*args)
        assert result.returncode == (0 if args else 2)
        assert "usage: gemma-tune <command>" in result.stdout
        for command in COMMAND_FLAGS:
            assert f"\n  {command} " in result.stdout
    assert set(cli.COMMANDS) == set(COMMAND_FLAGS)


def test_script_rejects_an_unknown_command():
    result = _script("tune", "--experiment=demo")
    assert result.returncode == 2
    assert "unknown command 'tune'" in result.stderr


@pytest.mark.parametrize("command", ["sample", "export"])
def test_script_help_is_the_modules_help(command):
    by_script = _script(command, "--help")
    by_module = _run(sys.executable, "-m", f"gemma_tune.{command}", "--help")
    assert by_script.returncode == by_module.returncode
    assert by_script.stdout == by_module.stdout
    assert _flags_listed(by_script.stdout, COMMAND_FLAGS[command]) == []


def test_script_checks_a_bundled_file():
    result = _script("data", "check", SMALL_JSONL, "--dedup=normalized")
    assert result.returncode == 0, result.stderr
    by_module = _run(
        sys.executable, "-m", "gemma_tune.data", "check", SMALL_JSONL, "--dedup=normalized"
    )
    assert result.stdout == by_module.stdout
    assert "rows read:" in result.stdout and "words: p50" in result.stdout


def test_script_passes_the_commands_exit_code(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "a", "completion": ""}\n')
    result = _script("data", "check", str(bad))
    assert result.returncode == 1
    assert result.stdout.startswith(f"{bad}:1: completion: empty")
