"""Time and memory of the vocabulary-tiled LM head for each vocabulary block size.

    python benchmarks/lm_head_blocks.py [--positions=256,2048] [--blocks=1024,4096,16384]
        [--vocab=262144] [--width=640] [--repeats=3]

Gemma 3 270M's head shapes by default (262,144 x 640 float32 table, random weights): for each
number of loss-carrying positions and each `vocab_block`, the compiled gradient of
`loss.head_sums` with respect to the hidden states (what a LoRA step runs) is timed (median
of `--repeats` after one compiling call), and XLA's `memory_analysis()` gives its temporary
buffers. Prints one Markdown table; what it measured on the 2-core AVX2 machine is in
benchmarks/RESULTS.md ("Vocabulary-tiled LM head").
"""

from __future__ import annotations

import argparse
import statistics
import time

import jax
import numpy as np

from gemma_tune.training import loss


def _measure(positions: int, block: int, vocab: int, width: int, repeats: int) -> dict:
    """One configuration's median seconds per head gradient and XLA's temporary bytes."""
    keys = jax.random.split(jax.random.PRNGKey(0), 3)
    hidden = jax.random.normal(keys[0], (1, positions, width))
    table = jax.random.normal(keys[1], (vocab, width)) * 0.05
    targets = jax.random.randint(keys[2], (1, positions), 0, vocab)
    weights = np.ones((1, positions), np.float32)

    def loss_sum(h):
        return loss.head_sums(h, table, targets, weights, vocab_block=block)[0]

    step = jax.jit(jax.value_and_grad(loss_sum))
    compiled = step.lower(hidden).compile()
    temporary = compiled.memory_analysis().temp_size_in_bytes
    jax.block_until_ready(step(hidden))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(step(hidden))
        times.append(time.perf_counter() - start)
    return {"seconds": statistics.median(times), "temporary_mib": temporary / 2**20}


def main() -> None:
    """Parses the flags, measures every (positions, block) pair and prints the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--positions", default="256,2048")
    parser.add_argument("--blocks", default="1024,4096,16384")
    parser.add_argument("--vocab", type=int, default=262144)
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print("| positions | vocab block | s per head gradient | GFLOP/s (4VHT) | XLA temporaries |")
    print("| ---: | ---: | ---: | ---: | ---: |")
    for positions in (int(p) for p in args.positions.split(",")):
        for block in (int(b) for b in args.blocks.split(",")):
            result = _measure(positions, block, args.vocab, args.width, args.repeats)
            flops = 4 * args.vocab * args.width * positions
            print(
                f"| {positions} | {block} | {result['seconds']:.3f} | "
                f"{flops / result['seconds'] / 1e9:.1f} | {result['temporary_mib']:.0f} MiB |",
                flush=True,
            )


if __name__ == "__main__":
    main()
