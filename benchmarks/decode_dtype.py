"""Reduced-precision decoding: speed and agreement with float32 greedy answers (Gemma 3 270M).

    python benchmarks/decode_dtype.py [--new_tokens=32] [--repeats=3] [--held_out=32]

Loads the float32 GGUF preset once and decodes with each `generate.DECODE_DTYPES` value:
batch 1 (one prompt at a time through `generate.TokenStream`, what `gemma_tune.sample` does)
and batch 8 (`generate.generate_ids`, what evaluation does), exactly `--new_tokens` greedy
tokens per prompt on the first 8 chat-templated prompts of the bundled rag_validation.jsonl
(tokens/s, median of `--repeats` after a warm-up). Then the first `--held_out` prompts of the
same file are answered until a stop token (at most 64 tokens), and each dtype's answers are
compared with float32's: the share of identical answers and the share of float32's answer
tokens before the first difference. Prints a Markdown table and the JSON of the numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys

import numpy as np
from generation_speed import median_time

import gemma_tune  # noqa: F401  (JAX backend)
from gemma_tune import bundled, model
from gemma_tune.data import jsonl
from gemma_tune.evaluation import generate
from gemma_tune.training import template


def _prompts(chat_template, count: int) -> list[np.ndarray]:
    examples = jsonl.read_jsonl(bundled.path("rag_validation.jsonl"), keep_context=True).examples
    return [chat_template.encode_prompt(e) for e in examples[:count]]


def _rate(fn, tokens: int, repeats: int) -> float:
    return tokens / median_time(fn, repeats)


def speeds(causal_lm, decode_dtype: str, prompts, new_tokens: int, repeats: int) -> dict:
    """tokens/s of batch 1 (stream, the first 4 prompts) and batch 8 for `decode_dtype`."""
    stream = generate.TokenStream(causal_lm, decode_dtype=decode_dtype)
    weights = stream.current_weights()

    def one_at_a_time():
        for prompt in prompts[:4]:
            assert len(list(stream.stream(prompt, new_tokens, (), weights))) == new_tokens

    def batched():
        out = generate.generate_ids(
            causal_lm, prompts, new_tokens, (), batch_size=8, decode_dtype=decode_dtype
        )
        assert all(len(o) == new_tokens for o in out)

    return {
        "batch1": _rate(one_at_a_time, 4 * new_tokens, repeats),
        "batch8": _rate(batched, len(prompts) * new_tokens, repeats),
    }


def agreement(answers: list, reference: list) -> dict:
    """Share of answers identical to the reference's, and share of the reference's tokens
    before each answer's first difference (summed over answers)."""
    same_prefix = 0
    for got, want in zip(answers, reference, strict=True):
        differs = [i for i, (a, b) in enumerate(zip(got, want, strict=False)) if a != b]
        same_prefix += differs[0] if differs else min(len(got), len(want))
    identical = [got == want for got, want in zip(answers, reference, strict=True)]
    return {
        "identical_answers": float(np.mean(identical)),
        "identical_token_share": same_prefix / max(1, sum(len(r) for r in reference)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--new_tokens", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--held_out", type=int, default=32)
    args = parser.parse_args()
    loaded = model.load("gemma3_270m_gguf", "float32")
    chat_template = template.ChatTemplate(loaded.tokenizer)
    prompts = _prompts(chat_template, 8)
    held_out = _prompts(chat_template, args.held_out)
    results, answers = {}, {}
    for decode_dtype in generate.DECODE_DTYPES:
        results[decode_dtype] = speeds(
            loaded.causal_lm, decode_dtype, prompts, args.new_tokens, args.repeats
        )
        answers[decode_dtype] = [
            a.tolist()
            for a in generate.generate_ids(
                loaded.causal_lm, held_out, 64, chat_template.stop_token_ids,
                decode_dtype=decode_dtype,
            )
        ]  # fmt: skip
        results[decode_dtype] |= agreement(answers[decode_dtype], answers["float32"])
        print(decode_dtype, json.dumps(results[decode_dtype]), flush=True)
    cpu = platform.processor() or platform.machine()
    print(f"\nHardware: {os.cpu_count()} CPU cores ({cpu}), python {sys.version.split()[0]}")
    print("| decode dtype | batch 1 tok/s | batch 8 tok/s | identical answers | same tokens |")
    print("| --- | --- | --- | --- | --- |")
    for decode_dtype, row in results.items():
        print(
            f"| {decode_dtype} | {row['batch1']:.1f} | {row['batch8']:.1f} | "
            f"{row['identical_answers']:.0%} | {row['identical_token_share']:.0%} |"
        )
    print(json.dumps(results))


if __name__ == "__main__":
    main()
