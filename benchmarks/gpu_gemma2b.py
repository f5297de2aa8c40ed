"""Gemma-2B architecture on one GPU: gemma_tune's LoRA step vs transformers + PEFT, and what
each tuning method costs.

    python benchmarks/gpu_gemma2b.py [--out=results.json] [--steps=10] [--seq_len=256]
        [--runs="ours:lora_r4@1,16 peft:lora_r4@1,16 ours:qlora_int8@1 ..."] [--arch=gemma_2b]

Both sides build the Gemma-2B architecture (KerasHub `gemma_2b_en`'s config: 18 layers, hidden
2048, 8 query heads and 1 kv head of 256, FFN 16384, vocabulary 256,000, tied embedding) with
random weights in bfloat16 (speed and memory do not depend on the weights, so nothing is
downloaded) and train rank-4 LoRA on the query and value projections (alpha = rank) with AdamW
on random token rows of `seq_len` tokens, loss on every position. Ours is gemma_tune's compiled
`Trainer.train_step` (the LoRA factors in float32 over the bf16 base, as KerasHub makes them);
the peer is transformers' `GemmaForCausalLM` (its default attention, SDPA) with a PEFT LoRA
(PEFT also keeps the factors in float32) and a plain eager torch step: forward with labels,
backward, `torch.optim.AdamW.step`, `zero_grad`.

Each run is its own worker process (so peak memory is per run), one after the other. A run
times, per batch size: the first step (compilation on our side), two warm-up steps, then
`--steps` steps, each ended by reading the loss back (a device sync); reported is the median.
Peak memory is the accelerator allocator's high-water mark: JAX's `peak_bytes_in_use`
(`XLA_PYTHON_CLIENT_PREALLOCATE=false`; a process-lifetime peak, so batch sizes run in
increasing order) and torch's `max_memory_allocated` (reset after the model is built). Also
measured in each worker: a bf16 8192^3 matmul's rate (the card's practical peak) and the
training step's achieved FLOP/s (analytic count, forward + backward of the base with LoRA,
no recompute) as a fraction of it.

`ours:METHOD` runs the other tuning methods through the same Trainer: lora_r16, dora_r4,
qlora_int8 / qlora_int4 (LoRA rank 4 on an int8 / int4 base, `gemma_tune.model.quantize`), full
(every weight trainable, AdamW state in bf16). `--arch=tiny` is a 2-layer model for checking
the script on a CPU. Prints a Markdown table; the results are in benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time

import numpy as np
from train_speed_common import matmul_rate  # benchmarks/ is the script's directory

# KerasHub's gemma_2b_en config; the FFN's `intermediate_dim` counts gate + up (2 x 16384).
ARCHS = {
    "gemma_2b": dict(
        vocabulary_size=256000,
        num_layers=18,
        num_query_heads=8,
        num_key_value_heads=1,
        hidden_dim=2048,
        intermediate_dim=32768,
        head_dim=256,
    ),
    "tiny": dict(
        vocabulary_size=1024,
        num_layers=2,
        num_query_heads=4,
        num_key_value_heads=1,
        hidden_dim=64,
        intermediate_dim=256,
        head_dim=16,
    ),
}
SETUPS = {  # method, LoRA rank, base quantization
    "lora_r4": ("lora", 4, "none"),
    "lora_r16": ("lora", 16, "none"),
    "dora_r4": ("dora", 4, "none"),
    "qlora_int8": ("lora", 4, "int8"),
    "qlora_int4": ("lora", 4, "int4"),
    "full": ("full", 0, "none"),
}
DEFAULT_RUNS = (
    "ours:lora_r4@1,16 peft:lora_r4@1,16 ours:qlora_int8@1 ours:qlora_int4@1 "
    "ours:dora_r4@1 ours:lora_r16@1 ours:full@1"
)
MATMUL_SIZE = 8192


def step_flops(dims: dict, batch: int, length: int, full: bool) -> float:
    """Analytic FLOPs of one training step: 2 per multiply-add in the forward pass (projections,
    attention scores and values, LM head), the backward pass 2x that for the activations'
    gradients, plus 2x the forward again for weight gradients when every weight trains (LoRA's
    own matmuls are < 1% and left out)."""
    h, heads, kv, hd = (
        dims[k] for k in ("hidden_dim", "num_query_heads", "num_key_value_heads", "head_dim")
    )
    ffn = dims["intermediate_dim"] // 2
    tokens = batch * length
    per_layer = 2 * tokens * (h * hd * (heads + 2 * kv) + heads * hd * h + 3 * h * ffn)
    per_layer += 2 * 2 * batch * heads * length * length * hd  # scores and weighted values
    forward = dims["num_layers"] * per_layer + 2 * tokens * h * dims["vocabulary_size"]
    return forward * (5 if full else 3)


def _random_rows(vocabulary: int, batch: int, length: int) -> np.ndarray:
    rng = np.random.default_rng(batch)
    return rng.integers(2, vocabulary, (batch, length + 1)).astype(np.int32)


def _time_steps(step, steps: int) -> dict:
    """Times the first call, two warm-up calls, then `steps` calls of `step()` (which syncs)."""
    start = time.perf_counter()
    first_loss = step()
    first_s = time.perf_counter() - start
    for _ in range(2):
        step()
    times, loss = [], first_loss
    for _ in range(steps):
        start = time.perf_counter()
        loss = step()
        times.append(time.perf_counter() - start)
    return {
        "first_step_s": first_s,
        "step_s": statistics.median(times),
        "step_times": times,
        "first_loss": first_loss,
        "last_loss": loss,
    }


# ---------------------------------------------------------------------------------------------
# Our side.


def run_ours(
    setup: str, arch: str, batch_sizes: list[int], length: int, steps: int, analyze: bool
) -> dict:
    import jax
    import jax.numpy as jnp
    import keras_hub

    import gemma_tune  # noqa: F401  (selects the JAX backend)
    from gemma_tune import config, model
    from gemma_tune.model import quantize
    from gemma_tune.training import optimizer, trainer

    method, rank, quantization = SETUPS[setup]
    device = jax.devices()[0]
    start = time.perf_counter()
    backbone = keras_hub.models.GemmaBackbone(**ARCHS[arch], dtype="bfloat16")
    causal_lm = keras_hub.models.GemmaCausalLM(backbone=backbone, preprocessor=None)
    loaded = model.LoadedModel(causal_lm, tokenizer=None, preset=f"random:{arch}")
    quantize.quantize(backbone, quantization)
    settings = config.base_config()
    settings.lora.rank = max(rank, 1)
    model.enable_tuning(loaded, method, settings.lora)
    tuner = trainer.Trainer(causal_lm, optimizer.make(settings.train, total_steps=1000))
    result = {
        "side": "ours",
        "setup": setup,
        "build_s": time.perf_counter() - start,
        "trainable_params": model.parameter_counts(loaded)[1],
        "resident_gib": _jax_memory(device, "bytes_in_use"),
        "peak_after_build_gib": _jax_memory(device, "peak_bytes_in_use"),
        "matmul_tflops": _jax_matmul_tflops(jax, jnp),
        "device": device.device_kind,
        "batches": {},
    }
    for batch in batch_sizes:
        rows = _random_rows(ARCHS[arch]["vocabulary_size"], batch, length)
        flat = {
            "token_ids": rows[:, :-1],
            "padding_mask": np.ones((batch, length), bool),
            "target_ids": rows[:, 1:],
            "target_weights": np.ones((batch, length), np.float32),
        }
        stacked = {key: value[None] for key, value in flat.items()}  # [accum=1, B, L]
        timing = _time_steps(lambda batch=stacked: tuner.train_step(batch)["loss"], steps)
        timing["peak_gib"] = _jax_memory(device, "peak_bytes_in_use")
        if analyze:  # XLA's own account of the step's buffers (compiles the step again)
            compiled = tuner._train_step.lower(
                tuner.trainable, tuner.optimizer_state, tuner.frozen, stacked, np.int32(0)
            ).compile()
            memory = compiled.memory_analysis()
            timing["xla_memory_gib"] = {
                field: getattr(memory, f"{field}_size_in_bytes") / 2**30
                for field in ("argument", "output", "alias", "temp")
            }
        result["batches"][str(batch)] = timing
        _emit_partial(result)
    return result


def _jax_memory(device, field: str) -> float:
    """A JAX device allocator statistic in GiB (NaN where the backend keeps none, e.g. CPU)."""
    return (device.memory_stats() or {}).get(field, float("nan")) / 2**30


def _jax_matmul_tflops(jax, jnp) -> float:
    a = jnp.ones((MATMUL_SIZE, MATMUL_SIZE), jnp.bfloat16)
    matmul = jax.jit(jnp.matmul)
    return matmul_rate(lambda: matmul(a, a).block_until_ready(), 5, MATMUL_SIZE) / 1e12


# ---------------------------------------------------------------------------------------------
# The peer: transformers + PEFT.


def run_peft(setup: str, arch: str, batch_sizes: list[int], length: int, steps: int) -> dict:
    import peft
    import torch
    import transformers

    from gemma_tune import config

    if setup != "lora_r4":
        raise ValueError("the PEFT peer runs lora_r4 only")
    dims = ARCHS[arch]
    cuda = torch.cuda.is_available()
    device = torch.device("cuda" if cuda else "cpu")
    start = time.perf_counter()
    hf_config = transformers.GemmaConfig(
        vocab_size=dims["vocabulary_size"],
        hidden_size=dims["hidden_dim"],
        intermediate_size=dims["intermediate_dim"] // 2,
        num_hidden_layers=dims["num_layers"],
        num_attention_heads=dims["num_query_heads"],
        num_key_value_heads=dims["num_key_value_heads"],
        head_dim=dims["head_dim"],
        hidden_activation="gelu_pytorch_tanh",
        rms_norm_eps=1e-6,
        tie_word_embeddings=True,
    )
    with device:
        base = transformers.GemmaForCausalLM(hf_config).to(torch.bfloat16)
    lora = peft.LoraConfig(r=4, lora_alpha=4, target_modules=["q_proj", "v_proj"])
    tuned = peft.get_peft_model(base, lora)
    tuned.train()
    train = config.base_config().train
    trainable = [p for p in tuned.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(
        trainable,
        lr=train.learning_rate,
        betas=(train.adam_beta1, train.adam_beta2),
        eps=train.adam_epsilon,
        weight_decay=train.weight_decay,
    )
    result = {
        "side": "peft",
        "setup": setup,
        "build_s": time.perf_counter() - start,
        "trainable_params": sum(p.numel() for p in trainable),
        "adapter_dtype": str(trainable[0].dtype),
        "attention": base.config._attn_implementation,
        "device": torch.cuda.get_device_name() if cuda else "cpu",
        "batches": {},
    }
    if cuda:
        result["resident_gib"] = torch.cuda.memory_allocated() / 2**30
        a = torch.ones(MATMUL_SIZE, MATMUL_SIZE, dtype=torch.bfloat16, device=device)

        def matmul():
            torch.matmul(a, a)
            torch.cuda.synchronize()

        result["matmul_tflops"] = matmul_rate(matmul, 5, MATMUL_SIZE) / 1e12
        del a
    for batch in batch_sizes:
        rows = torch.from_numpy(
            _random_rows(dims["vocabulary_size"], batch, length).astype(np.int64)
        )
        inputs = rows[:, :-1].contiguous().to(device)

        def step(inputs=inputs):
            # The usual recipe: labels = inputs, shifted inside (L - 1 positions carry loss).
            loss = tuned(input_ids=inputs, labels=inputs).loss
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            return loss.item()

        if cuda:
            torch.cuda.reset_peak_memory_stats()
        timing = _time_steps(step, steps)
        if cuda:
            timing["peak_gib"] = torch.cuda.max_memory_allocated() / 2**30
        result["batches"][str(batch)] = timing
        _emit_partial(result)
    return result


# ---------------------------------------------------------------------------------------------
# Driver.

PARTIAL = "PARTIAL "


def _emit_partial(result: dict) -> None:
    print(PARTIAL + json.dumps(result), flush=True)


def _parse_run(spec: str) -> tuple[str, str, list[int]]:
    name, _, batches = spec.partition("@")
    side, _, setup = name.partition(":")
    if side not in ("ours", "peft") or setup not in SETUPS:
        raise ValueError(
            f"bad run {spec!r}: SIDE:SETUP@B1,B2 with SIDE ours|peft, SETUP in {list(SETUPS)}"
        )
    return side, setup, [int(b) for b in (batches or "1").split(",")]


def _versions() -> dict:
    from importlib import metadata

    found = {}
    for name in ("jax", "jaxlib", "keras", "keras-hub", "torch", "transformers", "peft"):
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return found


def report(results: list[dict], args) -> None:
    dims = ARCHS[args.arch]
    print(f"\n{args.arch}, {args.seq_len} tokens per row, median of {args.steps} steps\n")
    print(
        "| run | batch | trainable | step (s) | tokens/s | peak memory (GiB) | "
        "achieved TFLOP/s (% of matmul peak) | first step (s) | loss first -> last |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---|")
    for result in results:
        if "error" in result:
            print(f"| {result['run']} | | | failed: {result['error'][:80]} | | | | | |")
        for batch, t in result.get("batches", {}).items():
            flops = step_flops(dims, int(batch), args.seq_len, result["setup"] == "full")
            achieved = flops / t["step_s"] / 1e12
            peak = result.get("matmul_tflops")
            share = f" ({100 * achieved / peak:.0f}%)" if peak else ""
            print(
                f"| {result['run']} | {batch} | {result['trainable_params']:,} | "
                f"{t['step_s']:.4f} | {int(batch) * args.seq_len / t['step_s']:,.0f} | "
                f"{t.get('peak_gib', float('nan')):.2f} | {achieved:.1f}{share} | "
                f"{t['first_step_s']:.1f} | {t['first_loss']:.3f} -> {t['last_loss']:.3f} |"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", default=DEFAULT_RUNS)
    parser.add_argument("--arch", default="gemma_2b", choices=sorted(ARCHS))
    parser.add_argument("--seq_len", type=int, default=256)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--out", default="")
    parser.add_argument("--budget_s", type=float, default=0.0, help="skip runs after this")
    parser.add_argument(
        "--analyze",
        default="lora_r4",
        help="setups to run XLA's "
        "memory_analysis of the step for (one more compile per batch size)",
    )
    parser.add_argument("--worker", default="", help=argparse.SUPPRESS)
    parser.add_argument("--batch_sizes", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        side, setup, _ = _parse_run(args.worker)
        batches = [int(b) for b in args.batch_sizes.split(",")]
        if side == "ours":
            analyze = setup in args.analyze.split(",")
            result = run_ours(setup, args.arch, batches, args.seq_len, args.steps, analyze)
        else:
            result = run_peft(setup, args.arch, batches, args.seq_len, args.steps)
        print(json.dumps(result), flush=True)
        return
    env = dict(os.environ, XLA_PYTHON_CLIENT_PREALLOCATE="false", KERAS_BACKEND="jax")
    results, began = [], time.perf_counter()
    meta = {
        "arch": args.arch,
        "seq_len": args.seq_len,
        "steps": args.steps,
        "versions": _versions(),
        "python": platform.python_version(),
    }
    for spec in args.runs.split():
        side, setup, batches = _parse_run(spec)
        if args.budget_s and time.perf_counter() - began > args.budget_s:
            print(f"skipping {spec}: past --budget_s", flush=True)
            continue
        print(f"== {spec}", flush=True)
        command = [
            sys.executable,
            os.path.abspath(__file__),
            f"--worker={side}:{setup}",
            f"--batch_sizes={','.join(map(str, batches))}",
            f"--arch={args.arch}",
            f"--seq_len={args.seq_len}",
            f"--steps={args.steps}",
            f"--analyze={args.analyze}",
        ]
        process = subprocess.run(command, env=env, capture_output=True, text=True)
        lines = [line for line in process.stdout.splitlines() if line.strip()]
        final = [line for line in lines if line.startswith("{")]
        partial = [line for line in lines if line.startswith(PARTIAL)]
        if process.returncode == 0 and final:
            result = json.loads(final[-1])
        elif partial:
            result = json.loads(partial[-1][len(PARTIAL) :])
            result["error"] = process.stderr.strip().splitlines()[-1] if process.stderr else "?"
        else:
            result = {"error": (process.stderr.strip().splitlines() or ["?"])[-1]}
            print(process.stderr[-3000:], file=sys.stderr)
        result["run"] = f"{side}:{setup}"
        results.append(result)
        print(json.dumps(result), flush=True)
        if args.out:
            with open(args.out, "w") as out:
                json.dump({**meta, "results": results}, out, indent=1)
    report([r for r in results], args)
    if args.out:
        print(f"\nResults written to {args.out}")


if __name__ == "__main__":
    main()
