"""What each `train.remat` mode saves: Gemma 3 270M, LoRA rank 4, long rows.

    python benchmarks/remat_memory.py [--seq_lens=512,2048] [--modes=none,matmuls,full] [--steps=2]

For each sequence length, one worker process per mode, one after the other, trains the real
270M (float32, rank-4 LoRA on query and value, AdamW) on one row of random token ids with
`model.enable_remat(loaded, mode)`: none, matmuls (each block's elementwise work recomputed in
the backward pass, matrix products kept) or full (every block recomputed).
Each reports its peak resident memory while training (`VmHWM`, reset through
`/proc/self/clear_refs` after the model is loaded, so it covers compiling and the steps), the
median step time after the first, and the losses (which must be equal: remat changes memory
and time, not the result). Prints a Markdown table; results are in benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import numpy as np


def _status_gib(field: str) -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 2**20
    raise KeyError(field)


def worker(seq_len: int, remat: str, steps: int) -> dict:
    import gemma_tune  # JAX backend

    gemma_tune.import_guard.install()  # as in `python -m gemma_tune.train`: no TensorFlow
    from gemma_tune import config, model
    from gemma_tune.training import optimizer, trainer

    loaded = model.load("gemma3_270m_gguf", "float32")
    model.enable_lora(loaded, 4)
    model.enable_remat(loaded, remat)
    tuner = trainer.Trainer(
        loaded.causal_lm, optimizer.make(config.base_config().train, total_steps=100)
    )
    rows = np.random.default_rng(0).integers(2, 262144, (1, seq_len + 1)).astype(np.int32)
    batch = {
        "token_ids": rows[None, :, :-1],
        "padding_mask": np.ones((1, 1, seq_len), bool),
        "target_ids": rows[None, :, 1:],
        "target_weights": np.ones((1, 1, seq_len), np.float32),
    }
    loaded_gib = _status_gib("VmRSS")
    with open("/proc/self/clear_refs", "w") as clear_refs:
        clear_refs.write("5")  # VmHWM := VmRSS from here on
    times, losses = [], []
    for _ in range(steps + 1):
        start = time.perf_counter()
        losses.append(tuner.train_step(batch)["loss"])
        times.append(time.perf_counter() - start)
    return {
        "seq_len": seq_len,
        "remat": remat,
        "loaded_gib": loaded_gib,
        "training_peak_gib": _status_gib("VmHWM"),
        "first_step_s": times[0],
        "step_s": statistics.median(times[1:]),
        "losses": losses,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seq_lens", default="512,2048")
    parser.add_argument("--modes", default="none,matmuls,full")
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--worker", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        seq_len, remat = args.worker.split(":")
        print(json.dumps(worker(int(seq_len), remat, args.steps)), flush=True)
        return
    results = []
    for seq_len in [int(length) for length in args.seq_lens.split(",")]:
        for remat in args.modes.split(","):
            print(f"== {seq_len} tokens, remat={remat}", flush=True)
            process = subprocess.run(
                [
                    sys.executable,
                    os.path.abspath(__file__),
                    f"--worker={seq_len}:{remat}",
                    f"--steps={args.steps}",
                ],
                env=dict(os.environ, KERAS_BACKEND="jax"),
                capture_output=True,
                text=True,
                check=False,
            )
            if process.returncode:
                print(process.stderr[-3000:], file=sys.stderr)
                raise SystemExit(f"worker {seq_len}:{remat} failed")
            results.append(json.loads(process.stdout.strip().splitlines()[-1]))
            print(json.dumps(results[-1]), flush=True)
    count = len(args.modes.split(","))
    print("\n| tokens | remat | training peak RSS | vs first | step (s) | vs first | losses")
    print("| ---: | --- | ---: | ---: | ---: | ---: | --- |")
    for start in range(0, len(results), count):
        group = results[start : start + count]
        first = group[0]
        for row in group:
            print(
                f"| {row['seq_len']} | {row['remat']} | "
                f"{row['training_peak_gib']:.2f} GiB | "
                f"{row['training_peak_gib'] / first['training_peak_gib']:.2f}x | "
                f"{row['step_s']:.2f} | {row['step_s'] / first['step_s']:.2f}x | "
                f"{', '.join(f'{loss:.4f}' for loss in row['losses'])} |"
            )


if __name__ == "__main__":
    main()
