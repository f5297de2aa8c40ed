"""A run stopped at any file write of its final step resumes to the uninterrupted run's
result.json, metrics and adapter (docs/reliability.md, "Exact resume").

The tiny run below validates every 3 steps and checkpoints every 4, so its last step (8) is
both checkpointed and validated at the end, the case where a checkpoint written before the
final validation made a resumed run report step 6's validation loss as final. Each case makes
one write of the final step fail (as a kill there would leave the directory, the writes before
it done and that one absent), then reruns the same config on the same directory.
"""

import json
import os
import re

import numpy as np
import pytest

from gemma_tune import config as config_lib
from gemma_tune import train
from gemma_tune.runs import run_dir

SETTINGS = [
    "train.max_steps=8",
    "train.eval_every=3",
    "train.checkpoint_every=4",
    "train.log_every=1",
    "eval.limit=2",
    "samples.count=1",
    "samples.max_new_tokens=4",
    "eval.prompts=[]",
]

# Fields that measure time, which no two runs share.
TIMINGS = {"train_seconds", "wall_seconds", "elapsed_s", "tokens_per_s"}

# The writes after the last training step, in order, as patterns of their path (a checkpoint
# is written into `.partial-<step>-<pid>/` and renamed when complete).
FINAL_WRITES = [
    r"partial-000008-\d+/state\.npz$",
    r"partial-000008-\d+/state\.json$",
    r"adapter/adapter\.npz$",
    r"adapter/adapter\.json$",
    r"/samples\.md$",
    r"/comparison\.json$",
    r"/result\.json$",
    r"/report\.html$",
    r"/report\.md$",
]
# The default suite stops at this one (the first write after the final checkpoint, where a
# resumed run used to skip the final validation); the slow suite at every write above.
FAST = {r"adapter/adapter\.npz$"}


class _Killed(Exception):
    """Stands for a kill at one write: the run stops there, the file not written."""


def _without_timings(record):
    if isinstance(record, dict):
        return {k: _without_timings(v) for k, v in record.items() if k not in TIMINGS}
    return record


def _outputs(run_path):
    result = json.loads(open(os.path.join(run_path, run_dir.RESULT)).read())
    metrics = [_without_timings(r) for r in run_dir.read_metrics(run_path)]
    with np.load(os.path.join(run_path, run_dir.ADAPTER_DIR, run_dir.ADAPTER_WEIGHTS)) as f:
        adapter = {name: f[name] for name in f.files}
    return _without_timings(result), metrics, adapter


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    run_path = str(tmp_path_factory.mktemp("uninterrupted") / "run")
    train.run(config_lib.load("tiny", SETTINGS), run_path)
    return _outputs(run_path)


def _stop_at(monkeypatch, pattern):
    """Makes the first write of a file whose path matches `pattern` fail."""
    write = run_dir.write_atomically
    stopped = []

    def failing_write(path, content, *args, **kwargs):
        if not stopped and re.search(pattern, path):
            stopped.append(path)
            raise _Killed(path)
        return write(path, content, *args, **kwargs)

    monkeypatch.setattr(run_dir, "write_atomically", failing_write)
    return stopped


@pytest.mark.parametrize(
    "write",
    [w if w in FAST else pytest.param(w, marks=pytest.mark.slow) for w in FINAL_WRITES],
)
def test_a_stop_at_each_final_write_resumes_to_the_uninterrupted_result(
    uninterrupted, tmp_path, monkeypatch, write
):
    run_path = str(tmp_path / "run")
    stopped = _stop_at(monkeypatch, write)
    with pytest.raises(_Killed):
        train.run(config_lib.load("tiny", SETTINGS), run_path)
    assert stopped, f"no write of {write}"
    monkeypatch.undo()
    assert not run_dir.is_finished(run_path)

    train.run(config_lib.load("tiny", SETTINGS), run_path)
    result, metrics, adapter = _outputs(run_path)
    expected_result, expected_metrics, expected_adapter = uninterrupted
    assert result == expected_result
    assert metrics == expected_metrics
    assert sorted(adapter) == sorted(expected_adapter)
    for name, value in expected_adapter.items():
        np.testing.assert_array_equal(adapter[name], value, err_msg=name)


@pytest.mark.slow  # >12 s on a 2-core AVX2 CPU: slow suite (CI runs it)
def test_a_stop_signal_after_the_last_step_validates_on_resume(
    uninterrupted, tmp_path, monkeypatch
):
    """SIGINT during the last step checkpoints that step before its final validation (the
    checkpoint records step 6's validation); the resumed run validates step 8."""
    import signal

    from gemma_tune.training import checkpoint, loop

    run_path = str(tmp_path / "run")
    train_step = loop._Fit.train_step

    def last_step_interrupted(self, *args):
        train_step(self, *args)
        if self.step == self.total_steps:
            signal.raise_signal(signal.SIGINT)

    monkeypatch.setattr(loop._Fit, "train_step", last_step_interrupted)
    with pytest.raises(loop.Interrupted):
        train.run(config_lib.load("tiny", SETTINGS), run_path)
    monkeypatch.undo()
    state = run_dir.read_json(checkpoint.latest(run_path), checkpoint.STATE_FILE)
    assert (state["step"], state["validated_step"]) == (8, 6)

    train.run(config_lib.load("tiny", SETTINGS), run_path)
    result, metrics, _ = _outputs(run_path)
    assert (result, metrics) == uninterrupted[:2]
