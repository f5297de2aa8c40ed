"""`gemma_tune.xla_flags`: the flag lands in XLA_FLAGS unless the user set it, and it is what
makes rematerialization save memory on XLA:CPU (the reason it is set)."""

import json
import os
import subprocess
import sys

from gemma_tune import xla_flags

FLAG = "xla_cpu_enable_concurrency_optimized_scheduler"


def test_apply_appends_to_the_users_flags():
    environ = {"XLA_FLAGS": "--xla_force_host_platform_device_count=4"}
    xla_flags.apply(environ)
    assert environ["XLA_FLAGS"] == f"--xla_force_host_platform_device_count=4 --{FLAG}=false"
    empty = {}
    xla_flags.apply(empty)
    assert empty["XLA_FLAGS"] == f"--{FLAG}=false"


def test_a_users_own_value_wins():
    environ = {"XLA_FLAGS": f"--{FLAG}=true"}
    xla_flags.apply(environ)
    assert environ["XLA_FLAGS"] == f"--{FLAG}=true"


def test_importing_gemma_tune_sets_it():
    assert f"--{FLAG}=false" in os.environ["XLA_FLAGS"]


# The compiled training step of a tiny Gemma 3 with LoRA at 8 x 512 tokens; argv[1] == "1"
# rematerializes its blocks. Prints XLA's temporary buffer bytes.
STEP_PROGRAM = """
import json, sys
import numpy as np
import gemma_tune
from gemma_tune import config, model
from gemma_tune.model.load import load
from gemma_tune.training import optimizer, trainer

loaded = load("tiny:gemma3")
model.enable_lora(loaded, 2)
if sys.argv[1] == "1":
    model.enable_remat(loaded)
tuner = trainer.Trainer(loaded.causal_lm, optimizer.make(config.base_config().train, 10))
rows = np.arange(8 * 513).reshape(8, 513) % 300 + 3
batch = {"token_ids": rows[None, :, :-1], "padding_mask": np.ones((1, 8, 512), bool),
         "target_ids": rows[None, :, 1:], "target_weights": np.ones((1, 8, 512), np.float32)}
compiled = tuner._train_step.lower(
    tuner.trainable, tuner.optimizer_state, tuner.frozen, batch, np.int32(0)
).compile()
print(json.dumps(compiled.memory_analysis().temp_size_in_bytes))
"""


def _temp_bytes(remat: bool, xla_flags_value: str | None = None) -> int:
    environ = {key: value for key, value in os.environ.items() if key != "XLA_FLAGS"}
    if xla_flags_value is not None:
        environ["XLA_FLAGS"] = xla_flags_value
    result = subprocess.run(
        [sys.executable, "-c", STEP_PROGRAM, "1" if remat else "0"],
        env=environ,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_rematerialization_saves_memory_with_the_flag_only():
    remat = _temp_bytes(remat=True)  # gemma_tune's default flags
    plain = _temp_bytes(remat=False)
    remat_xla_order = _temp_bytes(remat=True, xla_flags_value=f"--{FLAG}=true")
    assert remat < 0.9 * plain, (remat, plain)
    assert remat < remat_xla_order / 1.5, (remat, remat_xla_order)
