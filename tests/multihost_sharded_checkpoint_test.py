"""Full fine-tuning over two real processes (`jax.distributed` on localhost, CPU collectives)
with every weight split over both hosts: each host writes only its own shards of a checkpoint
(Orbax, `training/sharded_checkpoint.py`), nothing is gathered, and a run killed right after
a checkpoint resumes on the same layout to exactly the uninterrupted run's losses and weights
(docs/reliability.md, "Several hosts"), also when the kill fell between two hosts' writes of
the same step: both resume from the older step they both hold.

Each process has 2 fake CPU devices; `mesh.model=4` splits every weight (and its optimizer
state) over all four, so no process holds a whole one. Slow: three two-process runs.
"""

import json
import os
import shutil
import socket
import subprocess
import sys
import textwrap

import numpy as np
import pytest

pytest.importorskip("orbax.checkpoint")
pytestmark = pytest.mark.slow

# Trains the tiny experiment with every weight sharded; counts the arrays gathered to the host
# while checkpoints are written; with a stop step, exits at once (as a kill would) after that
# step's checkpoint.
_RUN = textwrap.dedent(
    """
    import os, sys
    from gemma_tune import config, train
    from gemma_tune.training import checkpoint, multihost, sharding

    sharding.MIN_SHARDED_SIZE = 0
    settings = ["method=full", "train.max_steps=4", "train.batch_size=4",
                "train.eval_batch_size=4", "train.log_every=1", "train.checkpoint_every=1",
                "samples.count=0", "eval.limit=0", "eval.prompts=[]", "mesh.distributed=true",
                "mesh.num_processes=2", "mesh.data=1", "mesh.model=4"] + sys.argv[3:]
    stop_at = int(sys.argv[2])
    save, to_host, gathered = checkpoint.save, multihost.to_host, []

    def counting_to_host(array):
        gathered.append(array.shape)
        return to_host(array)

    def save_then_stop(run_path, trainer, *args, **kwargs):
        multihost.to_host = counting_to_host
        try:
            path = save(run_path, trainer, *args, **kwargs)
        finally:
            multihost.to_host = to_host
        print(f"saved {path}, gathered {len(gathered)} arrays", flush=True)
        if trainer.step == stop_at:
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


def _pair(workdir, stop_at: int, status: int = 0) -> list[str]:
    """Runs the two processes to their end; returns their stdout."""
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    env["XLA_FLAGS"] = "--xla_force_host_platform_device_count=2"
    port = _free_port()
    workers = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                _RUN,
                str(workdir),
                str(stop_at),
                f"mesh.coordinator=localhost:{port}",
                f"mesh.process_id={index}",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )  # fmt: skip
        for index in (0, 1)
    ]
    outputs = []
    for worker in workers:
        stdout, stderr = worker.communicate(timeout=600)
        assert worker.returncode == status, stderr[-3000:]
        outputs.append(stdout)
    return outputs


def _losses(run_path) -> list[float]:
    records = [json.loads(line) for line in (run_path / "metrics.jsonl").read_text().splitlines()]
    return [r["loss"] for r in records if "loss" in r]


def test_full_tuning_on_two_hosts_writes_shards_and_resumes_exactly(tmp_path):
    reference = tmp_path / "reference"
    _pair(reference, stop_at=0)
    expected_losses = _losses(reference)
    assert len(expected_losses) == 4

    pair = tmp_path / "pair"
    outputs = _pair(pair, stop_at=3, status=3)
    directories = (pair, tmp_path / "pair.process1")
    for output, directory in zip(outputs, directories, strict=True):
        # No array was gathered: each host wrote only its own shards.
        assert f"saved {directory}/checkpoints/step-000003, gathered 0 arrays" in output
        step = directory / "checkpoints" / "step-000003"
        assert sorted(p.name for p in step.iterdir()) == ["state.json"]  # no state.npz
        state = json.loads((step / "state.json").read_text())
        assert (directory / state["sharded"]).resolve() == (
            pair / "checkpoints" / "sharded-000003"
        ).resolve()
    shards = pair / "checkpoints" / "sharded-000003"
    assert {"ocdbt.process_0", "ocdbt.process_1"} <= {p.name for p in shards.iterdir()}
    assert not (pair / "result.json").exists()
    # As if the kill came after process 0's state.json of step 3 and before process 1's.
    shutil.rmtree(directories[1] / "checkpoints" / "step-000003")

    outputs = _pair(pair, stop_at=0)  # the same command, the same two-host layout
    assert "checkpoint step 3 is newer than step 2" in outputs[0]
    for output, directory in zip(outputs, directories, strict=True):
        assert "gathered 0 arrays" in output
        assert f"Resuming from {directory}/checkpoints/step-000002 (step 2 of 4)" in output
    for directory in directories:
        assert _losses(directory) == expected_losses  # exact: same layout, same sums
        checkpoints = sorted(p.name for p in (pair / "checkpoints").iterdir())
        assert checkpoints == ["sharded-000003", "sharded-000004", "step-000003", "step-000004"]
    expected = np.load(reference / "adapter" / "adapter.npz")
    weights = np.load(pair / "adapter" / "adapter.npz")
    assert sorted(weights.files) == sorted(expected.files)
    for name in expected.files:
        np.testing.assert_array_equal(weights[name], expected[name], err_msg=name)
