"""The train_speed benchmark's report: joins the worker groups and prints tables and JSON."""

from __future__ import annotations

import json
import statistics

from train_speed_common import MATMUL_SIZE
from train_speed_flops import step_flops


def _merge(result: dict) -> tuple[dict, dict, dict]:
    """Joins the worker groups: (ready info per side, matmul FLOP/s samples per library,
    per-batch entries with both sides)."""
    ready, per_batch = {}, {}
    matmul = {"jnp": [], "torch": [], "numpy": result["numpy_matmul"]}
    for group in result["groups"]:
        ready.update(group["ready"])
        for name, rates in group["matmul"].items():
            matmul["jnp" if name == "ours" else "torch"] += rates
        for batch, entry in group["per_batch"].items():
            merged = per_batch.setdefault(
                batch, {"loadavg": [], "prepare": {}, "step_s": {}, "memory": {}, "rss": {}}
            )
            merged["loadavg"] += entry["loadavg"]
            for key in ("prepare", "step_s", "memory"):
                merged[key].update(entry[key])
            merged["rss"].update(
                {name: side["load_peak_rss_mib"] for name, side in group["ready"].items()}
            )
            if "breakdown" in entry:
                merged["breakdown"] = entry["breakdown"]
    return ready, matmul, per_batch


def report(result: dict, length: int) -> None:
    """Prints the setup, the Markdown table, the FLOP accounting and the raw JSON."""
    ready, matmul, per_batch = _merge(result)
    dims = ready["ours"]["dims"]
    best = {lib: max(rates) for lib, rates in matmul.items()}
    versions = {**ready["ours"]["versions"], **ready["peer"]["versions"]}
    print(f"\nVersions: {versions}; transformers attention: {ready['peer']['attention']}")
    print(
        f"Ours: train.remat={ready['ours']['remat']}, "
        f"TensorFlow loaded: {ready['ours']['tensorflow_loaded']}"
    )
    print(
        f"Trainable LoRA parameters: ours {ready['ours']['trainable_params']:,}, "
        f"peer {ready['peer']['trainable_params']:,}"
    )
    print(
        f"float32 matmul, n={MATMUL_SIZE}, best of 3 per sample, GFLOP/s (all samples): "
        + "; ".join(f"{lib} {[round(r / 1e9) for r in rates]}" for lib, rates in matmul.items())
    )
    print(f"Load average: start {result['loadavg_start']}, end {result['loadavg_end']}")
    print(
        "\n| batch x len | ours tok/s | peer tok/s | ours/peer | ours s/step | peer s/step "
        "| ours peak RSS | peer peak RSS | ours GFLOP/s | % of jnp peak "
        "| peer GFLOP/s | % of torch peak |"
    )
    print("| --- " * 12 + "|")
    for batch, entry in per_batch.items():
        tokens = batch * length
        times, memory = entry["step_s"], entry["memory"]
        ours_s, peer_s = statistics.median(times["ours"]), statistics.median(times["peer"])
        terms = step_flops(dims, batch, length, ready["ours"]["trainable_params"])
        peer_terms = step_flops(dims, batch, length, ready["peer"]["trainable_params"])
        model_flops = sum(terms.values())
        peer_flops = sum(peer_terms.values())
        print(
            f"| {batch} x {length} | {tokens / ours_s:.0f} | {tokens / peer_s:.0f} "
            f"| {peer_s / ours_s:.2f}x | {ours_s:.2f} | {peer_s:.2f} "
            f"| {memory['ours']['peak_rss_mib'] / 1024:.2f} GiB "
            f"| {memory['peer']['peak_rss_mib'] / 1024:.2f} GiB "
            f"| {model_flops / ours_s / 1e9:.1f} "
            f"| {100 * model_flops / ours_s / best['jnp']:.0f}% "
            f"| {peer_flops / peer_s / 1e9:.1f} "
            f"| {100 * peer_flops / peer_s / best['torch']:.0f}% |"
        )
    for batch, entry in per_batch.items():
        terms = step_flops(dims, batch, length, ready["ours"]["trainable_params"])
        prepare = entry["prepare"]
        print(f"\nBatch {batch} x {length}, FLOPs per step:")
        for name, value in terms.items():
            print(f"  {name}: {value / 1e9:.1f} GFLOP")
        print(f"  analytic total: {sum(terms.values()) / 1e9:.1f} GFLOP")
        print(f"  XLA cost_analysis of our step: {prepare['ours']['xla_flops'] / 1e9:.1f} GFLOP")
        print(
            f"  first-step loss (base model): ours {prepare['ours']['first_loss']:.4f}, "
            f"peer {prepare['peer']['first_loss']:.4f}; first step (compile) s: ours "
            f"{prepare['ours']['first_step_s']:.1f}, peer {prepare['peer']['first_step_s']:.1f}"
        )
        if "breakdown" in entry:
            breakdown = entry["breakdown"]
            print(
                f"  our time: backbone forward {breakdown['backbone_forward_s']:.2f} s, "
                f"forward + loss {breakdown['forward_loss_s']:.2f} s, "
                f"full step {statistics.median(entry['step_s']['ours']):.2f} s"
            )
        print(
            f"  step times: ours {[round(t, 2) for t in entry['step_s']['ours']]}, "
            f"peer {[round(t, 2) for t in entry['step_s']['peer']]}"
        )
        print(f"  load average at its start and end: {entry['loadavg']}")
        print(f"  peak RSS while loading (VmHWM before the first step), MiB: {entry['rss']}")
    print(f"\nWall time {result['wall_s']:.0f} s")
    print(json.dumps(result))
    print(summary_line(per_batch, length))


def summary_line(per_batch: dict, length: int) -> str:
    """The one-line result, e.g. `train_speed: ours/peft tok/s b1 1.01x b8 1.10x | peak RSS
    ours/peft b1 1.41x b8 0.57x`: tokens per second (median step times) and step peak RSS
    (VmHWM), ours over the peer's, per batch size."""
    speed, memory = [], []
    for batch, entry in per_batch.items():
        times, peaks = entry["step_s"], entry["memory"]
        ratio = statistics.median(times["peer"]) / statistics.median(times["ours"])
        speed.append(f"b{batch} {ratio:.2f}x")
        rss = peaks["ours"]["peak_rss_mib"] / peaks["peer"]["peak_rss_mib"]
        memory.append(f"b{batch} {rss:.2f}x")
    del length  # the rows' length is the same on both sides, so it cancels
    return f"train_speed: ours/peft tok/s {' '.join(speed)} | peak RSS ours/peft {' '.join(memory)}"
