"""`data.max_field_chars`: a row with a longer text field is left out before tokenizing and
reported (counted in the summary, named by file, line and field), never cut short silently.
The memory this bounds is measured in `benchmarks/huge_row_memory.py`, not here."""

import json
import subprocess
import sys

import ml_collections
import pytest

from gemma_tune import config as config_lib
from gemma_tune import config_ranges
from gemma_tune.data import field_cap, sources


def _write(path, rows):
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def _data_config(path, **overrides):
    data = config_lib.base_config().data
    data.source, data.path, data.validation_fraction = "file", str(path), 0.0
    for key, value in overrides.items():
        data[key] = value
    return ml_collections.ConfigDict(data.to_dict())


def test_a_row_over_the_cap_is_left_out_and_named(tmp_path):
    def chat(user, model, system=None):
        turns = [{"role": "user", "content": user}, {"role": "assistant", "content": model}]
        return {"messages": ([{"role": "system", "content": system}] if system else []) + turns}

    rows = [
        chat("short", "fine"),
        chat("long answer", "x" * 5_000),
        chat("q", "a", system="s" * 3_000),
        chat("at the cap", "y" * 2_000),
    ]
    path = _write(tmp_path / "train.jsonl", rows)
    train, _, summary = sources.load(_data_config(path, max_field_chars=2_000))
    assert [item.prompt for item in train] == ["short", "at the cap"]
    assert summary.rows_read == 4
    assert summary.dropped == {field_cap.REASON: 2}
    assert summary.warnings == [
        f"{path}:2: turn 2 (model): 5,000 characters, over data.max_field_chars=2,000; row left "
        "out (raise data.max_field_chars to keep it)",
        f"{path}:3: system: 3,000 characters, over data.max_field_chars=2,000; row left out "
        "(raise data.max_field_chars to keep it)",
    ]
    assert f"dropped: 2 ({field_cap.REASON}: 2)" in summary.format()


def test_no_cap_keeps_every_row_and_validation_rows_are_capped_too(tmp_path):
    path = _write(tmp_path / "train.jsonl", [{"text": "d" * 5_000}, {"text": "short doc"}])
    validation = _write(tmp_path / "val.jsonl", [{"text": "v" * 5_000}, {"text": "kept"}])
    train, _, summary = sources.load(_data_config(path, max_field_chars=0))
    assert len(train) == 2 and not summary.dropped
    train, kept, summary = sources.load(
        _data_config(path, max_field_chars=100, validation_path=str(validation))
    )
    assert [item.text for item in train] == ["short doc"]
    assert [item.text for item in kept] == ["kept"]
    assert summary.dropped == {field_cap.REASON: 2} and summary.rows_read == 4
    assert summary.warnings[1].startswith(f"{validation}:1: text: 5,000 characters")


def test_many_rows_over_the_cap_are_counted_past_the_first_ones_named(tmp_path):
    rows = [{"text": "z" * 50}] * 15 + [{"text": "ok"}]
    path = _write(tmp_path / "train.jsonl", rows)
    _, _, summary = sources.load(_data_config(path, max_field_chars=10, dedup="none"))
    assert summary.dropped == {field_cap.REASON: 15}
    assert len(summary.warnings) == field_cap.MAX_NAMED + 1
    assert summary.warnings[-1] == "data: max_field_chars: 5 more rows over the cap left out"


def test_a_negative_cap_is_refused_with_its_range():
    with pytest.raises(ValueError, match=r"data.max_field_chars=-1: must be >= 0 \(0: no cap\)"):
        config_lib.load("tiny", ["data.max_field_chars=-1"])
    assert "data.max_field_chars" in config_ranges.RANGES


def test_data_check_reports_the_row_over_the_cap(tmp_path):
    path = _write(
        tmp_path / "train.jsonl",
        [{"prompt": "hi", "completion": "hello"}, {"prompt": "big", "completion": "b" * 300}],
    )
    run = subprocess.run(
        [sys.executable, "-m", "gemma_tune.data", "check", str(path), "--max_field_chars=100"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr
    assert f"dropped: 1 ({field_cap.REASON}: 1)" in run.stdout
    assert f"warning: {path}:2: turn 2 (model): 300 characters" in run.stdout
    assert "train examples: 1" in run.stdout
