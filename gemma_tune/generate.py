"""Generation from token ids with KerasHub's compiled, KV-cached sampler loop.

Prompts are right-padded into a batch whose width is rounded up to a multiple of `bucket`, so
a handful of compiled shapes serve every prompt length. Decoding stops at Gemma's stop tokens
(`<end_of_turn>`, `<eos>`).
"""

from __future__ import annotations

import keras_hub
import numpy as np
import tqdm


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
    bucket: int = 32,
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
    # `compile` discards KerasHub's compiled generate function; keep it across calls (base then
    # tuned answers reuse it: weights are passed in as state) unless the sampler changes.
    if sampler is not None or not isinstance(
        getattr(causal_lm, "sampler", None), keras_hub.samplers.GreedySampler
    ):
        causal_lm.compile(sampler=sampler or make_sampler())
    # The compiled per-batch function that `CausalLM.generate` wraps; called directly because
    # `generate`'s output normalisation fails on Gemma 3's image-free outputs without a
    # preprocessor, and we tokenize ourselves anyway.
    generate_function = causal_lm.make_generate_function()
    # KerasHub decodes every row from the batch's shortest prompt to the full width, so
    # batching prompts of similar length (and a modest bucket) saves most of the steps.
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    outputs: dict[int, np.ndarray] = {}
    batches = range(0, len(order), batch_size)
    for start in tqdm.tqdm(batches, desc="generate", unit="batch", disable=len(batches) < 2):
        chunk_ids = order[start : start + batch_size]
        chunk = [prompts[i] for i in chunk_ids]
        longest = max(len(p) for p in chunk)
        width = -(-(longest + max_new_tokens) // bucket) * bucket
        token_ids = np.full((batch_size, width), pad_id, np.int32)
        padding_mask = np.zeros((batch_size, width), bool)
        for row in range(batch_size):
            prompt = chunk[row] if row < len(chunk) else chunk[-1]
            token_ids[row, : len(prompt)] = prompt
            padding_mask[row, : len(prompt)] = True
        result = generate_function(
            {"token_ids": token_ids, "padding_mask": padding_mask},
            stop_token_ids=tuple(stop_token_ids) or None,
        )
        generated = np.asarray(result["token_ids"])
        for row, index in enumerate(chunk_ids):
            begin = len(prompts[index])
            outputs[index] = generated[row, begin : begin + max_new_tokens]
    return [outputs[i] for i in range(len(prompts))]


class TokenStream:
    """Token-by-token generation for one prompt, for streaming to a terminal.

    Prefill and each decode step are jit-compiled once per cache width; widths are rounded up
    to a multiple of `bucket`, so new prompt lengths rarely recompile. The model's weights are
    passed in as values (`weights`), so one compiled stream serves the base model and a tuned
    one alike (`--compare_base`).

    Args:
      causal_lm: a KerasHub Gemma/Gemma3 CausalLM.
      bucket: cache widths are multiples of this.
    """

    def __init__(self, causal_lm, bucket: int = 128):
        import jax
        import keras

        self.causal_lm = causal_lm
        self.bucket = bucket
        self.variables = list(causal_lm.variables)

        def bind(weights):
            return keras.StatelessScope(
                state_mapping=list(zip(self.variables, weights, strict=True))
            )

        def prefill(weights, token_ids, padding_mask):
            with bind(weights):
                _, cache = self._build_cache(token_ids, padding_mask)
            return cache

        def decode(weights, cache, token, index):
            with bind(weights):
                logits, _, cache = causal_lm.call_with_cache(token, cache, index)
            return logits[:, 0].astype("float32"), cache

        self._prefill = jax.jit(prefill)
        self._decode = jax.jit(decode)

    def _build_cache(self, token_ids, padding_mask):
        if isinstance(self.causal_lm, keras_hub.models.Gemma3CausalLM):
            return self.causal_lm._build_cache(token_ids, None, None, padding_mask, None)
        return self.causal_lm._build_cache(token_ids)

    def current_weights(self) -> list:
        """The model's current weight values (pass to `stream`)."""
        return [v.value for v in self.variables]

    def stream(
        self,
        prompt: np.ndarray,
        max_new_tokens: int,
        stop_token_ids: tuple[int, ...],
        weights=None,
        temperature: float = 0.0,
        top_k: int = 0,
        top_p: float = 1.0,
        seed: int = 0,
    ):
        """Yields generated token ids one at a time until a stop token or the length limit.

        Decoding is greedy at `temperature=0` (deterministic), else samples from the softmax
        at that temperature, restricted to the `top_k` most likely tokens and/or the smallest
        set whose probability reaches `top_p`.
        """
        weights = self.current_weights() if weights is None else weights
        rng = np.random.default_rng(seed)
        width = -(-(len(prompt) + max_new_tokens) // self.bucket) * self.bucket
        token_ids = np.zeros((1, width), np.int32)
        token_ids[0, : len(prompt)] = prompt
        padding_mask = np.zeros((1, width), bool)
        padding_mask[0, : len(prompt)] = True
        cache = self._prefill(weights, token_ids, padding_mask)
        index = len(prompt)
        for _ in range(max_new_tokens):
            token = token_ids[:, index - 1 : index]
            logits, cache = self._decode(weights, cache, token, np.int32(index - 1))
            next_id = pick_token(np.asarray(logits[0]), temperature, top_k, top_p, rng)
            if next_id in stop_token_ids:
                return
            yield next_id
            token_ids[0, index] = next_id
            index += 1


def pick_token(
    logits: np.ndarray, temperature: float, top_k: int, top_p: float, rng: np.random.Generator
) -> int:
    """Chooses the next token from one position's logits (greedy when temperature <= 0)."""
    if temperature <= 0:
        return int(np.argmax(logits))
    scaled = logits.astype(np.float64) / temperature
    order = np.argsort(-scaled)
    if top_k > 0:
        order = order[:top_k]
    probs = np.exp(scaled[order] - scaled[order[0]])
    probs /= probs.sum()
    if top_p < 1.0:
        keep = int(np.searchsorted(np.cumsum(probs), top_p) + 1)
        order, probs = order[:keep], probs[:keep] / probs[:keep].sum()
    return int(rng.choice(order, p=probs))
