"""Generation from token ids with KerasHub's compiled, KV-cached sampler loop.

Prompts are right-padded into a batch whose width is rounded up to a multiple of `bucket`, so
a handful of compiled shapes serve every prompt length. Decoding stops at Gemma's stop tokens
(`<end_of_turn>`, `<eos>`).
"""

from __future__ import annotations

import keras_hub
import numpy as np


def make_sampler(temperature: float = 0.0, top_k: int = 0, top_p: float = 1.0, seed: int = 0):
    """Greedy decoding for temperature 0, else top-k / top-p / plain random sampling."""
    if temperature <= 0:
        return keras_hub.samplers.GreedySampler()
    if top_k > 0:
        return keras_hub.samplers.TopKSampler(k=top_k, seed=seed, temperature=temperature)
    if top_p < 1.0:
        return keras_hub.samplers.TopPSampler(p=top_p, seed=seed, temperature=temperature)
    return keras_hub.samplers.RandomSampler(seed=seed, temperature=temperature)


def generate_ids(
    causal_lm,
    prompts: list[np.ndarray],
    max_new_tokens: int,
    stop_token_ids: tuple[int, ...],
    pad_id: int = 0,
    batch_size: int = 8,
    bucket: int = 64,
    sampler=None,
) -> list[np.ndarray]:
    """Generates continuations for token-id prompts; returns only the new ids of each.

    Args:
      causal_lm: a KerasHub CausalLM without a preprocessor.
      prompts: one int array per prompt (BOS included).
      max_new_tokens: the most tokens to generate per prompt.
      stop_token_ids: ids that end a sequence.
      pad_id: the padding id.
      batch_size: prompts per compiled call.
      bucket: batch widths are rounded up to a multiple of this to limit recompilation.
      sampler: a KerasHub sampler (greedy by default).
    """
    causal_lm.compile(sampler=sampler or make_sampler())
    # The compiled per-batch function that `CausalLM.generate` wraps; called directly because
    # `generate`'s output normalisation fails on Gemma 3's image-free outputs without a
    # preprocessor, and we tokenize ourselves anyway.
    generate_function = causal_lm.make_generate_function()
    outputs: list[np.ndarray] = []
    for start in range(0, len(prompts), batch_size):
        chunk = prompts[start : start + batch_size]
        rows = len(chunk)
        longest = max(len(p) for p in chunk)
        width = -(-(longest + max_new_tokens) // bucket) * bucket
        token_ids = np.full((batch_size, width), pad_id, np.int32)
        padding_mask = np.zeros((batch_size, width), bool)
        for row in range(batch_size):
            prompt = chunk[row] if row < rows else chunk[0]
            token_ids[row, : len(prompt)] = prompt
            padding_mask[row, : len(prompt)] = True
        result = generate_function(
            {"token_ids": token_ids, "padding_mask": padding_mask},
            stop_token_ids=tuple(stop_token_ids),
        )
        generated = np.asarray(result["token_ids"])
        for row in range(rows):
            begin = len(chunk[row])
            outputs.append(generated[row, begin : begin + max_new_tokens])
    return outputs
