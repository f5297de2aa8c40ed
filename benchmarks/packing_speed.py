"""What padding costs a training epoch, and what length buckets and packing save.

    python benchmarks/packing_speed.py [--sequence_length=256] [--batch_size=4] [--steps=2]
        [--modes=padded,buckets,packed] [--peer] [--trl]

Gemma 3 270M (float32, LoRA rank 4 on query and value), the bundled demo training set
(`rag_train.jsonl`, 309 questions with their passage) encoded at `--sequence_length` tokens,
batches of `--batch_size` rows, three ways:

  padded     every row padded to sequence_length (the default: one compiled step)
  buckets    `train.length_bucket=32`: each batch padded to its longest row rounded up to 32
  packed     `train.packing=true`: examples packed into full rows, attention kept per example

and, with `--peer` (needs the `parity` extra and peft), transformers + PEFT (LoRA rank 4 on
q_proj/v_proj, torch AdamW, the `Peer` of train_speed.py) on the same epoch batches padded as
transformers' collators pad by default: each batch to its longest row (labels -100 where our
target weights are 0). The peer's every step is run and timed (eager torch has nothing to
compile), so its epoch time is measured, not summed from samples. With `--trl`, TRL's
`SFTTrainer` with padding-free packing trains the same examples and labels (`packing_trl.py`,
every step of its epoch timed); its first batch's loss is printed with ours on the same
examples, packed our way.

`--modes` picks which of our three modes to time. Each mode gets its own `Trainer` (its
LM-head target budget from its own rows, as a run sets it). For every batch width an epoch
uses, the compiled `Trainer.train_step` is timed (`--steps` steps after one untimed compiling
step, median); an epoch's compute time is the sum over its batches of their width's step time
(compilation reported apart). Tokens per second counts the
epoch's real (non-padding) input tokens, the same in all three. Prints a Markdown table and a
JSON line; the results are in benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import platform
import statistics
import sys
import time

import numpy as np
import packing_trl  # benchmarks/ is the script's directory

import gemma_tune  # noqa: F401  (JAX backend)
from gemma_tune import bundled, config, model
from gemma_tune.data import jsonl
from gemma_tune.training import batching, optimizer, packing, template, trainer

MODES = ("padded", "buckets", "packed")


def epoch_batches(rows, mode: str, sequence_length: int, batch_size: int) -> list[dict]:
    """One epoch's batches of `rows` (examples, or packed rows) in seed-0 order, as the
    training loop would build them."""
    bucket = 32 if mode == "buckets" else 0
    order = batching.epoch_order(len(rows), seed=0, epoch=0)
    steps = batching.steps_per_epoch(len(rows), batch_size)
    return [
        batching.train_batch(rows, order, step, batch_size, 1, sequence_length, 0, bucket)
        for step in range(steps)
    ]


def time_widths(tuner, batches: list[dict], steps: int) -> dict[int, dict[str, float]]:
    """Compile time and median step time for each batch width among `batches`."""
    first_of_width = {}
    for batch in batches:
        first_of_width.setdefault(batch["token_ids"].shape[-1], batch)
    timings = {}
    for width, batch in sorted(first_of_width.items()):
        start = time.perf_counter()
        first_loss = tuner.train_step(batch)["loss"]
        compile_s = time.perf_counter() - start
        times = []
        for _ in range(steps):
            start = time.perf_counter()
            tuner.train_step(batch)
            times.append(time.perf_counter() - start)
        timings[width] = {
            "compile_s": compile_s,
            "step_s": statistics.median(times),
            "first_loss": first_loss,
        }
        print(f"  width {width}: step {timings[width]['step_s']:.2f} s", flush=True)
    return timings


def peer_epoch(batches: list[dict]) -> dict:
    """Runs transformers + PEFT over `batches`, each cut to its longest row; times each step."""
    import torch
    from train_speed_peer import Peer  # benchmarks/ is the script's directory

    peer = Peer()
    times, losses = [], []
    for batch in batches:
        flat = {key: value[0] for key, value in batch.items()}  # [accumulation=1, B, L] -> [B, L]
        width = int(flat["padding_mask"].sum(axis=1).max())
        inputs = torch.from_numpy(flat["token_ids"][:, :width].astype(np.int64))
        mask = torch.from_numpy(flat["padding_mask"][:, :width].astype(np.int64))
        labels = np.where(
            flat["target_weights"][:, :width] > 0, flat["target_ids"][:, :width], -100
        )
        labels = torch.from_numpy(labels.astype(np.int64))
        start = time.perf_counter()
        loss = peer.model(
            input_ids=inputs, attention_mask=mask, labels=labels, shift_labels=labels
        ).loss
        loss.backward()
        peer.optimizer.step()
        peer.optimizer.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - start)
        losses.append(loss.item())
    return {
        "steps": len(batches),
        "epoch_s": sum(times),
        "step_s_median": statistics.median(times),
        "first_loss": losses[0],  # the same batch as ours' first padded step (same weights)
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sequence_length", type=int, default=256)
    parser.add_argument("--batch_size", type=int, default=4)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--peer", action="store_true", help="also time transformers + PEFT")
    parser.add_argument(
        "--trl", action="store_true", help="also time TRL's SFTTrainer, padding-free packing"
    )
    parser.add_argument(
        "--modes", default=",".join(MODES), help="which of our modes to time (comma-separated)"
    )
    args = parser.parse_args()
    modes = [mode for mode in args.modes.split(",") if mode]
    if not set(modes) <= set(MODES):
        parser.error(f"--modes: choose among {', '.join(MODES)}")

    loaded = model.load("gemma3_270m_gguf", "float32")
    chat_template = template.ChatTemplate(loaded.tokenizer)
    examples = jsonl.read_jsonl(bundled.path("rag_train.jsonl"), keep_context=True).examples
    encoded = [chat_template.encode(e, args.sequence_length) for e in examples]
    model.enable_lora(loaded, 4)
    settings = config.base_config().train
    real_tokens = sum(len(e.token_ids) - 1 for e in encoded)
    results = {}
    for mode in modes:
        rows = packing.combine(encoded, args.sequence_length) if mode == "packed" else encoded
        batches = epoch_batches(rows, mode, args.sequence_length, args.batch_size)
        print(f"{mode}: {len(batches)} steps per epoch", flush=True)
        tuner = trainer.Trainer(  # the LM head's target budget as a run in this mode sets it
            loaded.causal_lm,
            optimizer.make(settings, 1000),
            max_targets_per_row=batching.max_targets_per_row(rows),
        )
        timings = time_widths(tuner, batches, args.steps)
        widths = collections.Counter(b["token_ids"].shape[-1] for b in batches)
        epoch_s = sum(count * timings[w]["step_s"] for w, count in widths.items())
        results[mode] = {
            "steps": len(batches),
            "widths": {str(w): count for w, count in sorted(widths.items())},
            "step_s": {str(w): t["step_s"] for w, t in timings.items()},
            "compile_s": sum(t["compile_s"] for t in timings.values()),
            "first_loss": {str(w): t["first_loss"] for w, t in timings.items()},
            "epoch_s": epoch_s,
            "tokens_per_s": real_tokens / epoch_s,
            "slots_filled": real_tokens / sum(b["token_ids"].size for b in batches),
        }

    if args.trl:
        print("transformers + PEFT + TRL: SFTTrainer, padding-free packing", flush=True)
        trl = packing_trl.trl_epoch(encoded, args.sequence_length, args.batch_size)
        trl["tokens_per_s"] = real_tokens / trl["epoch_s"]
        trl["slots_filled"] = real_tokens / sum(trl.pop("tokens_per_step"))
        trl["ours_first_loss"] = loss_on(loaded, trl.pop("first_batch"), args.sequence_length)
        results["peer_trl_padding_free"] = trl
        print(json.dumps({"peer_trl_padding_free": trl}), flush=True)
    if args.peer:
        dynamic = epoch_batches(encoded, "padded", args.sequence_length, args.batch_size)
        print(f"transformers + PEFT: {len(dynamic)} steps, each batch cut to its longest row")
        peer = peer_epoch(dynamic)
        peer["tokens_per_s"] = real_tokens / peer["epoch_s"]
        results["peer_dynamic_padding"] = peer
        print(json.dumps({"peer_dynamic_padding": peer}), flush=True)

    print(
        f"\n{len(encoded)} examples, {real_tokens} real input tokens, "
        f"{args.sequence_length}-token rows, batch {args.batch_size}; "
        f"{os.cpu_count()} CPU cores ({platform.processor() or platform.machine()}), "
        f"python {sys.version.split()[0]}"
    )
    print("| mode | steps/epoch | slots holding tokens | epoch compute | tokens/s | first loss |")
    print("| --- | --- | --- | --- | --- | --- |")
    for mode, r in results.items():
        filled = f"{100 * r['slots_filled']:.0f}%" if "slots_filled" in r else "-"
        first = r["first_loss"]
        first = first if isinstance(first, float) else first[min(first)]
        print(
            f"| {mode} | {r['steps']} | {filled} | {r['epoch_s']:.0f} s "
            f"| {r['tokens_per_s']:.0f} | {first:.4f} |"
        )
    for peer in ("peer_dynamic_padding", "peer_trl_padding_free"):
        for mode in modes if peer in results else ():
            ratio = results[peer]["epoch_s"] / results[mode]["epoch_s"]
            print(f"{mode} vs {peer}: {ratio:.2f}x")
    if "peer_trl_padding_free" in results:
        trl = results["peer_trl_padding_free"]
        print(
            f"TRL's first batch: loss {trl['first_loss']:.4f} (TRL), "
            f"{trl['ours_first_loss']:.4f} (ours, the same examples packed)"
        )
    print(json.dumps({"args": vars(args), "results": results}))


def loss_on(loaded, examples, sequence_length: int) -> float:
    """Our loss (before any update) on `(token ids, labels)` examples, packed as our
    `train.packing` packs them: the check that TRL computes what we compute."""
    encoded = [
        template.Encoded(
            token_ids=np.asarray(ids, np.int32),
            target_weights=(np.asarray(labels) != packing_trl.IGNORE).astype(np.float32),
            full_length=len(ids),
        )
        for ids, labels in examples
    ]
    rows = packing.combine(encoded, sequence_length)
    batch = batching.pack(rows, sequence_length, 0, len(rows))
    return trainer.Trainer(loaded.causal_lm, None).evaluate([batch])["loss"]


if __name__ == "__main__":
    main()
