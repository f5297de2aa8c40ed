"""What each tuning method costs and gives, on Gemma 3 270M and the demo task.

    python benchmarks/peft_methods.py [--methods=lora_r4,dora_r4,...] [--steps=40]

Every method trains the `demo` experiment (handbook questions with the passage in the prompt:
batch 4, 128 tokens, the demo's schedule) for the same number of steps, each in its own
`python -m gemma_tune.train` process, one after the other, and is scored on the same 71
held-out questions. Reported per method: trainable parameters, peak resident memory while
training (the child's `VmHWM`, reset through `/proc/PID/clear_refs` when it prints "Training",
read when it starts the tuned answers) and over the whole process (`ru_maxrss` from `os.wait4`:
model loading, quantizing, training and evaluation), the training
step time (from `metrics.jsonl`, the compiled steady state: step 5 to the last step), and the
held-out token F1 / exact match / validation loss after tuning, next to the base model's.

Methods (all on query and value, alpha = rank, except full):
  lora_r4, lora_r16       LoRA (lr 3e-3, the demo's)
  dora_r4                 DoRA, rank 4
  qlora_int8, qlora_int4  LoRA rank 4 on an int8 / int4 base (`model.quantize`)
  qlora_int4_g64, _g128   int4 with 64 / 128 inputs per scale (`model.int4_block_size`; 32
                          by default)
  lora_r4_remat           LoRA rank 4 with `train.remat=full` (every block recomputed)
  lora_r4_buckets         LoRA rank 4 with `train.length_bucket=32` (batches padded to their
                          longest row rounded up to 32 tokens instead of to 128)
  full                    every weight (lr 1e-4: 3e-3 diverges for full fine-tuning)

Prints a Markdown table and a JSON line; the results are in benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time

METHODS = {
    "lora_r4": ["lora.rank=4"],
    "lora_r16": ["lora.rank=16"],
    "dora_r4": ["method=dora", "lora.rank=4"],
    "qlora_int8": ["lora.rank=4", "model.quantize=int8"],
    "qlora_int4": ["lora.rank=4", "model.quantize=int4"],
    "qlora_int4_g64": ["lora.rank=4", "model.quantize=int4", "model.int4_block_size=64"],
    "qlora_int4_g128": ["lora.rank=4", "model.quantize=int4", "model.int4_block_size=128"],
    "lora_r4_remat": ["lora.rank=4", "train.remat=full"],
    "lora_r4_buckets": ["lora.rank=4", "train.length_bucket=32"],
    "full": ["method=full", "train.learning_rate=1e-4"],
}
# Shared by every method: no extra generations beyond the scored questions.
COMMON = ["samples.count=0", "eval.prompts=[]", "train.checkpoint_every=0"]


TRAINING_STARTS = b"Training "  # printed right before the loop (base validation, steps)
TRAINING_ENDS = b"tuned answers"  # the first thing after the loop and the final validation


def _vm_hwm_gib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 2**20
    raise KeyError("VmHWM")


def _follow(process, log) -> float:
    """Copies the child's output to `log`; returns its peak RSS between the start and the end
    of training (the kernel's high-water mark, reset through /proc/PID/clear_refs)."""
    seen = b""
    training_peak = None
    started = False
    while chunk := os.read(process.stdout.fileno(), 4096):  # whatever has arrived
        log.write(chunk)
        seen = (seen + chunk)[-4096:]
        if not started and TRAINING_STARTS in seen:
            with open(f"/proc/{process.pid}/clear_refs", "w") as f:
                f.write("5")
            started, seen = True, b""
        elif started and training_peak is None and TRAINING_ENDS in seen:
            training_peak = _vm_hwm_gib(process.pid)
    return float("nan") if training_peak is None else training_peak


def run_method(name: str, steps: int, workdir: str, eval_limit: int) -> dict:
    """Trains one method in a child process; returns its measurements."""
    sets = [*METHODS[name], *COMMON, f"train.max_steps={steps}"]
    if eval_limit:
        sets.append(f"eval.limit={eval_limit}")
    command = [
        sys.executable,
        "-m",
        "gemma_tune.train",
        "--experiment=demo",
        f"--workdir={workdir}",
    ]
    for setting in sets:
        command += ["--set", setting]
    print(f"== {name}: {' '.join(sets)}", flush=True)
    started = time.perf_counter()
    with open(os.path.join(os.path.dirname(workdir), f"{name}.log"), "wb") as log:
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        training_peak = _follow(process, log)
        _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{name} failed; see {log.name}")
    with open(os.path.join(workdir, "result.json")) as f:
        result = json.load(f)
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        logged = [json.loads(line) for line in f]
    timed = [r for r in logged if "elapsed_s" in r and "loss" in r]
    first, last = timed[0], timed[-1]
    step_s = (last["elapsed_s"] - first["elapsed_s"]) / max(last["step"] - first["step"], 1)
    return {
        "method": name,
        "settings": sets,
        "trainable": result["parameters_trainable"],
        "total": result["parameters_total"],
        "peak_rss_gib": usage.ru_maxrss / 2**20,
        "training_peak_rss_gib": training_peak,
        "step_s": step_s,
        "wall_s": wall,
        "base": result["base"],
        "tuned": result["tuned"],
        "val_loss": result.get("val_loss"),
        "base_val_loss": result.get("base_val_loss"),
    }


def report(rows: list[dict]) -> None:
    """Prints the comparison table (ratios against LoRA rank 4 where it ran)."""
    reference = next((r for r in rows if r["method"] == "lora_r4"), rows[0])
    print(
        "\n| method | trainable params | training peak RSS (GiB) | process peak RSS (GiB) "
        "| step (s) | step vs lora_r4 "
        "| token F1 base → tuned | EM tuned | val loss | F1 vs lora_r4 |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        f1 = r["tuned"]["token_f1"]
        print(
            f"| {r['method']} | {r['trainable']:,} | {r['training_peak_rss_gib']:.2f} "
            f"| {r['peak_rss_gib']:.2f} | {r['step_s']:.2f} "
            f"| {r['step_s'] / reference['step_s']:.2f}x "
            f"| {r['base']['token_f1']:.3f} → {f1:.3f} | {r['tuned']['exact_match']:.3f} "
            f"| {r['val_loss']:.3f} | {f1 / reference['tuned']['token_f1']:.3f} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--out", default="", help="keep the run directories here")
    parser.add_argument(
        "--eval_limit", type=int, default=0, help="score fewer held-out questions (0: all 71)"
    )
    args = parser.parse_args()
    names = args.methods.split(",")
    unknown = sorted(set(names) - set(METHODS))
    if unknown:
        parser.error(f"unknown methods {unknown}; choose from {', '.join(METHODS)}")
    out = args.out or tempfile.mkdtemp(prefix="peft_methods_")
    os.makedirs(out, exist_ok=True)
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores; runs in {out}")
    rows = [
        run_method(name, args.steps, os.path.join(out, name), args.eval_limit) for name in names
    ]
    report(rows)
    print(json.dumps({"steps": args.steps, "rows": rows}))
    print(f"Run directories and logs: {out}")


if __name__ == "__main__":
    main()
