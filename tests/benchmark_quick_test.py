"""`benchmarks/train_speed.py --quick` ends with its one-line summary; checked on a tiny Gemma
(both sides start from the same weights: equal first losses), never timed.

    python -m pytest -q -m slow tests/benchmark_quick_test.py
"""

import json
import pathlib
import re
import subprocess
import sys

import pytest

BENCHMARKS = pathlib.Path(__file__).resolve().parent.parent / "benchmarks"
SUMMARY = re.compile(
    r"^train_speed: ours/peft tok/s b1 (\d+\.\d\d)x b8 (\d+\.\d\d)x"
    r" \| peak RSS ours/peft b1 (\d+\.\d\d)x b8 (\d+\.\d\d)x$"
)


# ~100 s (four worker processes start, two per side): slow suite, which CI runs too.
@pytest.mark.slow
def test_quick_benchmark_ends_with_its_summary_line():
    pytest.importorskip("peft")
    result = subprocess.run(
        [sys.executable, "train_speed.py", "--quick", "--model=tiny", "--seq_len=32"],
        cwd=BENCHMARKS,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.strip().splitlines()
    match = SUMMARY.match(lines[-1])
    assert match, lines[-1]
    assert all(float(ratio) > 0 for ratio in match.groups())
    raw = json.loads(lines[-2])
    assert raw["args"]["quick"] and raw["args"]["rounds"] == 1
    exit_codes = [code for group in raw["groups"] for code in group["exit_codes"].values()]
    assert exit_codes == [0] * 4, exit_codes  # every worker ended cleanly
    by_batch = {}
    for group in raw["groups"]:
        for batch, entry in group["per_batch"].items():
            for side, prepared in entry["prepare"].items():
                by_batch.setdefault(batch, {})[side] = prepared["first_loss"]
    assert sorted(by_batch) == ["1", "8"]
    for batch, losses in by_batch.items():  # the same model and rows on both sides
        assert losses["ours"] == pytest.approx(losses["peer"], rel=1e-5), batch
