"""Two real processes (`jax.distributed` on localhost, CPU collectives), each the only writer
of its own run directory, killed right after a checkpoint; the run resumes on one process
and ends as a one-process run does (docs/reliability.md, "Several hosts").

Each process has 2 fake CPU devices, so the pair trains data parallel over 4 devices; the
reference trains in one process on one device. Slow: three training runs in subprocesses.
"""

import json
import os
import socket
import subprocess
import sys
import textwrap

import numpy as np
import pytest

pytestmark = pytest.mark.slow

# Trains the tiny experiment; with a stop step, exits at once (as a kill would) after saving
# that step's checkpoint.
_RUN = textwrap.dedent(
    """
    import os, sys
    from gemma_tune import config, train
    from gemma_tune.training import checkpoint

    settings = ["train.max_steps=4", "train.batch_size=4", "train.eval_batch_size=4",
                "train.log_every=1", "train.checkpoint_every=2", "samples.count=1",
                "eval.limit=4", "eval.prompts=[]"] + sys.argv[3:]
    stop_at = int(sys.argv[2])
    save = checkpoint.save

    def save_then_stop(run_path, trainer, *args, **kwargs):
        path = save(run_path, trainer, *args, **kwargs)
        if trainer.step == stop_at:
            print(f"stopped after {path}", flush=True)
            os._exit(3)
        return path

    checkpoint.save = save_then_stop
    train.run(config.load("tiny", settings), sys.argv[1])
    """
)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("localhost", 0))
        return probe.getsockname()[1]


def _start(workdir, devices: int, stop_at: int, *settings) -> subprocess.Popen:
    env = dict(os.environ)
    env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
    env["JAX_PLATFORMS"] = "cpu"
    return subprocess.Popen(
        [sys.executable, "-c", _RUN, str(workdir), str(stop_at), *settings],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def _wait(process: subprocess.Popen, status: int = 0) -> str:
    stdout, stderr = process.communicate(timeout=600)
    assert process.returncode == status, stderr[-3000:]
    return stdout


def _losses(run_path):
    records = [json.loads(line) for line in (run_path / "metrics.jsonl").read_text().splitlines()]
    return [r["loss"] for r in records if "loss" in r], [
        r["val_loss"] for r in records if "val_loss" in r
    ]


def test_a_two_process_run_killed_after_a_checkpoint_resumes_on_one_process(tmp_path):
    single = tmp_path / "single"
    _wait(_start(single, 1, 0))

    pair = tmp_path / "pair"
    distributed = [
        "mesh.distributed=true",
        f"mesh.coordinator=localhost:{_free_port()}",
        "mesh.num_processes=2",
        "mesh.data=4",
    ]
    workers = [_start(pair, 2, 2, *distributed, f"mesh.process_id={i}") for i in (0, 1)]
    outputs = [_wait(worker, status=3) for worker in workers]
    directories = (pair, tmp_path / "pair.process1")
    for worker, output, directory in zip(workers, outputs, directories, strict=True):
        assert f"stopped after {directory}/checkpoints/step-000002" in output
        # One writer per directory: each holds its own process's lock, and nothing of the other.
        assert (directory / ".lock").read_text().strip() == str(worker.pid)
        assert sorted(p.name for p in (directory / "checkpoints").iterdir()) == ["step-000002"]
    assert not (pair / "result.json").exists()

    resumed = _wait(_start(pair, 1, 0))  # one process, one device, the default mesh
    assert "Resuming from" in resumed and "step 2 of 4" in resumed
    losses, val_losses = _losses(pair)
    expected_losses, expected_val = _losses(single)
    assert losses == pytest.approx(expected_losses, rel=2e-5)
    assert val_losses == pytest.approx(expected_val, rel=2e-5)
    expected = np.load(single / "adapter" / "adapter.npz")
    adapter = np.load(pair / "adapter" / "adapter.npz")
    for name in expected.files:
        np.testing.assert_allclose(adapter[name], expected[name], rtol=1e-4, atol=1e-6)
    assert json.loads((pair / "config.json").read_text())["mesh"]["distributed"] is False
