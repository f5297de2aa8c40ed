"""Where a LoRA training step's time goes: a per-op profile of the compiled step.

    python benchmarks/step_profile.py [--model=gemma3_270m_gguf] [--batch=1] [--seq_len=256]
        [--steps=3] [--remat]

Gemma 3 270M (float32) with rank-4 LoRA on query and value, AdamW, random token rows with loss
on every position: the `Trainer`'s step is compiled and run once, then `--steps` steps run under
`jax.profiler`, whose trace holds one event per executed XLA:CPU operation (thunk). Each
operation is put in a part of the model by the source of the JAX operations XLA fused into it
(the `op_name` metadata of the optimized HLO: `jvp(...)` is the forward pass,
`transpose(jvp(...))` the backward pass, the layer names say where) and in a kind (matrix
multiplication or other). Prints a Markdown table of busy time per part and kind, the share
of the summed operation time, the ten longest operations, and the step's wall time. The two
cores run operations side by side, so the busy time can exceed the wall time.
"""

from __future__ import annotations

import argparse
import collections
import glob
import gzip
import json
import os
import re
import tempfile
import time

import numpy as np

import gemma_tune  # noqa: F401  (JAX backend, gemma_tune's XLA flags)

# (part, pattern on the fused operations' op_name metadata); the first match wins.
PARTS = (
    ("LM head (vocabulary walk, loss)", re.compile(r"lm_head|vocab_tiled|_chunk")),
    ("optimizer (AdamW, clipping)", re.compile(r"adam|optimizer|clip|global_norm")),
    ("LoRA factors", re.compile(r"lora")),
    ("attention", re.compile(r"attention|query|key|value|rope|softmax")),
    ("MLP", re.compile(r"ffw|mlp|gating|linear")),
    ("norms, embedding, residual", re.compile(r"norm|embedding|decoder_block")),
)
MATMUL = re.compile(r"^(dot|convolution)")
INSTRUCTION = re.compile(r"^\s*(?:ROOT )?%?([\w.\-]+) = .*?(?:metadata=\{([^}]*)\})?$")
OP_NAME = re.compile(r'op_name="([^"]*)"')


def op_sources(hlo_text: str) -> dict[str, str]:
    """Every instruction's name -> the `op_name` metadata of it and of the instructions of the
    computations it calls (a fusion's body), joined: what JAX operations it executes."""
    computations, current = {}, None
    names, calls = {}, {}
    for line in hlo_text.splitlines():
        header = re.match(r"^(?:ENTRY )?%?([\w.\-]+) [\(\{]", line)
        if header and not line.startswith(" "):
            current = header.group(1)
            computations[current] = []
            continue
        match = INSTRUCTION.match(line)
        if not match or current is None:
            continue
        name = match.group(1)
        sources = OP_NAME.findall(line)
        names[name] = sources
        computations[current].append(name)
        called = re.findall(r"calls=%?([\w.\-]+)", line)
        called += re.findall(r"to_apply=%?([\w.\-]+)", line)
        calls[name] = called

    def gather(name: str, depth: int = 0) -> list[str]:
        found = list(names.get(name, []))
        if depth < 4:
            for computation in calls.get(name, []):
                for inner in computations.get(computation, []):
                    found += gather(inner, depth + 1)
        return found

    return {name: " ".join(gather(name)) for name in names}


def classify(name: str, source: str) -> tuple[str, str, str]:
    """(pass, part, kind) of one executed operation."""
    text = source.lower()
    direction = "backward" if "transpose(" in text else "forward"
    part = next((label for label, pattern in PARTS if pattern.search(text)), "other")
    if not text:
        part = "other"
    kind = "matmul" if MATMUL.search(name) or "dot_general" in text else "other"
    return direction, part, kind


def profile(args) -> dict:
    """Runs the step under the profiler; returns the busy time per (pass, part, kind), the
    longest operations and the step times."""
    import jax

    from gemma_tune import config, model
    from gemma_tune.training import optimizer, trainer

    loaded = model.load(args.model, "float32")
    model.enable_lora(loaded, 4)
    if args.remat:
        model.enable_remat(loaded)
    tuner = trainer.Trainer(loaded.causal_lm, optimizer.make(config.base_config().train, 100))
    vocab = loaded.backbone.vocabulary_size
    rows = np.random.default_rng(0).integers(3, vocab, (args.batch, args.seq_len + 1))
    batch = {
        "token_ids": rows[None, :, :-1],
        "padding_mask": np.ones((1, args.batch, args.seq_len), bool),
        "target_ids": rows[None, :, 1:],
        "target_weights": np.ones((1, args.batch, args.seq_len), np.float32),
    }
    print("Compiling and running the first step ...", flush=True)
    tuner.train_step(batch)
    hlo = tuner._train_step.lower(
        tuner.trainable, tuner.optimizer_state, tuner.frozen, batch, np.int32(tuner.step)
    ).compile()
    sources = op_sources(hlo.as_text())
    step_s = []
    with tempfile.TemporaryDirectory() as trace_dir:
        jax.profiler.start_trace(trace_dir, create_perfetto_trace=True)
        for index in range(args.steps):
            start = time.perf_counter()
            tuner.train_step(batch)
            step_s.append(time.perf_counter() - start)
            print(f"profiled step {index + 1}/{args.steps}: {step_s[-1]:.2f} s", flush=True)
        jax.profiler.stop_trace()
        (trace_file,) = glob.glob(os.path.join(trace_dir, "**", "*.trace.json.gz"), recursive=True)
        with gzip.open(trace_file) as handle:
            events = json.load(handle)
    events = events["traceEvents"] if isinstance(events, dict) else events
    busy = collections.Counter()
    per_op = collections.Counter()
    for event in events:
        name = event.get("name", "")
        if event.get("ph") != "X" or name not in sources:
            continue
        seconds = event.get("dur", 0) / 1e6 / args.steps
        busy[classify(name, sources[name])] += seconds
        per_op[name] += seconds
    return {"busy": busy, "per_op": per_op, "sources": sources, "step_s": step_s}


def report(result: dict, args) -> None:
    """Prints the table per part and kind, then the longest operations."""
    busy, total = result["busy"], sum(result["busy"].values())
    print(
        f"\n{args.model}, LoRA r4 q/v, batch {args.batch} x {args.seq_len}"
        f"{', remat' if args.remat else ''}: step {min(result['step_s']):.2f} s (best of "
        f"{args.steps}), summed operation time {total:.2f} s per step\n"
    )
    print("| pass | part | kind | s per step | share |")
    print("| --- | --- | --- | ---: | ---: |")
    for (direction, part, kind), seconds in sorted(busy.items(), key=lambda item: -item[1]):
        print(f"| {direction} | {part} | {kind} | {seconds:.3f} | {100 * seconds / total:.1f}% |")
    by_part = collections.Counter()
    for (_, part, _), seconds in busy.items():
        by_part[part] += seconds
    print(
        "\nBy part: " + ", ".join(f"{p} {100 * s / total:.0f}%" for p, s in by_part.most_common())
    )
    matmul = sum(s for (_, _, kind), s in busy.items() if kind == "matmul")
    print(f"Matrix multiplications: {100 * matmul / total:.0f}% of the operation time")
    print("\nLongest operations (s per step, source):")
    for name, seconds in result["per_op"].most_common(10):
        print(f"  {seconds:.3f}  {name}: {result['sources'][name][:150]}")


def main() -> None:
    """Parses the flags, profiles, prints the report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="gemma3_270m_gguf")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--seq_len", type=int, default=256)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--remat", action="store_true")
    args = parser.parse_args()
    report(profile(args), args)


if __name__ == "__main__":
    main()
