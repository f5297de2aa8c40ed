"""Generation from token ids: a KV-cached decoder that prefills only the prompts.

One `Decoder` serves both batched generation (base vs tuned answers, evaluation) and streaming
one prompt to a terminal. Prompts are right-padded to a width rounded up to a multiple of
`bucket` and prefilled in one pass into a cache sized for prompt plus new tokens; then every
row decodes from its own position (the one-token step is vmapped over rows, each with its own
cache index), so a batch takes exactly as many decode steps as tokens it generates, whatever
its prompt lengths. Decoding stops at Gemma's stop tokens (`<end_of_turn>`, `<eos>`).

Many prompts (`Decoder.generate`, `generate_ids`) are decoded `batch_size` rows at a time with
slots: a row that finishes frees its slot at once and the next prompt is prefilled alone into
that slot's part of the cache, so the batch stays full and a short answer never waits for the
longest one of its batch. Sampling uses one generator per prompt (seeded by the seed and the
prompt's position), so every answer is the same whatever else is in the batch.

A vision model's prompts may hold images (`images`: each prompt's `vision.PlacedImage`s, from
`ChatTemplate.prompt_images`): a batch with images is prefilled over the whole cache width, the
image tokens attending to each other both ways as in training (`model.vision`).
"""

from __future__ import annotations

import weakref
from collections.abc import Iterator

import numpy as np
import tqdm.auto

from gemma_tune.evaluation import decoding
from gemma_tune.model import families, keras_compat, vision

# The `decode_dtype` values and their check (`decoding`), named here for callers.
DECODE_DTYPES = decoding.DECODE_DTYPES
check_decode_dtype = decoding.check_decode_dtype

# Greedy decoding runs up to this many steps per compiled call (`Decoder._greedy_steps`),
# returning early when a row finishes and its slot can take the next prompt.
GREEDY_CHUNK = 32


def _round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


class Decoder:
    """Compiled prefill and decode step for a KerasHub Gemma/Gemma3 CausalLM.

    Each is jit-compiled once per (batch, width); widths are multiples of `bucket`, so new
    prompt lengths rarely recompile. The model's weights are passed in as values, so one
    decoder serves the base model and a tuned one alike.

    Args:
      causal_lm: a KerasHub Gemma/Gemma3 CausalLM (any preprocessor is ignored).
      bucket: prompt and cache widths are multiples of this.
      decode_dtype: "float32" (the weights as they are) or "bfloat16" (weight matrices cast
        to bfloat16 for decoding; each layer computes in the model's own dtype).

    Raises:
      ValueError: an unknown `decode_dtype`, named.
    """

    def __init__(self, causal_lm, bucket: int = 32, decode_dtype: str = "float32"):
        import jax
        import jax.numpy as jnp
        import keras

        self.decode_dtype = check_decode_dtype(decode_dtype)
        # The last two weight lists cast for decoding (base and tuned, say): (source, cast).
        self._casts: list[tuple[list, list]] = []
        self.causal_lm = causal_lm
        self._cache_arguments = families.of_backbone(causal_lm.backbone).cache_arguments
        self.bucket = bucket
        self.variables = list(causal_lm.variables)
        embedding_index = decoding.tied_embedding_index(causal_lm, self.variables)

        def bind(weights):
            return keras.StatelessScope(
                state_mapping=list(zip(self.variables, weights, strict=True))
            )

        def prefill(weights, token_ids, width, image_arrays=None):
            # Right padding needs no padding mask: causal attention keeps every real token
            # from seeing the pads after it, and each pad slot is overwritten when its row
            # decodes there. With images the ids fill the cache width (`_with_images`): the
            # image tokens' two-way mask is as wide as the ids.
            with bind(weights):
                shape = jax.ShapeDtypeStruct((token_ids.shape[0], width), "int32")
                spec = jax.eval_shape(lambda ids: self._empty_cache(ids)[1], shape)
                cache = jax.tree.map(lambda leaf: jnp.zeros(leaf.shape, leaf.dtype), spec)
                extra = {}
                if image_arrays is not None:
                    extra = vision.cache_arguments(causal_lm.backbone, image_arrays)
                _, _, cache = causal_lm.call_with_cache(token_ids, cache, 0, **extra)
            return cache

        def step(weights, cache, tokens, indices, hidden=False):
            # Each row's float32 logits (or, with `hidden`, final hidden states) after its
            # token, written into its cache at its own index.
            def one_row(token, row_cache, index):
                row_cache = jax.tree.map(lambda leaf: leaf[None], row_cache)
                logits, hidden_states, row_cache = causal_lm.call_with_cache(
                    token[None, None], row_cache, index
                )
                out = hidden_states[0, 0] if hidden else logits[0, 0].astype("float32")
                return out, jax.tree.map(lambda x: x[0], row_cache)

            with bind(weights):
                return jax.vmap(one_row)(tokens, cache, indices)

        def greedy_step(weights, cache, tokens, indices):
            if embedding_index is None:
                logits, cache = step(weights, cache, tokens, indices)
                return decoding.best_tokens(logits), cache
            hidden, cache = step(weights, cache, tokens, indices, hidden=True)
            return decoding.greedy_tokens(hidden, weights[embedding_index]), cache

        def fill(weights, cache, slot, token_ids, width, image_arrays=None):
            # One prompt prefilled alone, written into row `slot` of the batch's cache.
            row = prefill(weights, token_ids, width, image_arrays)
            return jax.tree.map(
                lambda leaf, new: jax.lax.dynamic_update_slice_in_dim(leaf, new, slot, axis=0),
                cache,
                row,
            )

        def greedy_steps(weights, cache, tokens, indices, budgets, exit_on_any, stops, chunk):
            # Up to `chunk` greedy steps in one call, the argmax taken on the device: each
            # step's tokens go into `picked[step]`; a row is done at a stop token or when it
            # has produced its `budget` tokens (0: an idle row). It returns early when every
            # row is done, or, with `exit_on_any`, when any row finished (its slot can take
            # the next prompt). A done row keeps decoding into its own slot, unread.
            def cond(state):
                count, _, _, _, done, finished_any, _ = state
                return (count < chunk) & ~jnp.all(done) & ~(exit_on_any & finished_any)

            def body(state):
                count, cache, tokens, indices, done, _, picked = state
                tokens, cache = greedy_step(weights, cache, tokens, indices)
                finished = ~done & (jnp.isin(tokens, stops) | (count + 1 >= budgets))
                picked = picked.at[count].set(tokens)
                done = done | finished
                return count + 1, cache, tokens, indices + 1, done, finished.any(), picked

            picked = jnp.zeros((chunk, tokens.shape[0]), jnp.int32)
            state = (0, cache, tokens, indices, budgets <= 0, False, picked)
            count, cache, *_, picked = jax.lax.while_loop(cond, body, state)
            return picked, count, cache

        self._prefill = jax.jit(prefill, static_argnums=2)
        self._step = jax.jit(step, donate_argnums=1)
        self._greedy_step = jax.jit(greedy_step, donate_argnums=1)
        self._greedy_steps = jax.jit(greedy_steps, static_argnums=7, donate_argnums=1)
        self._fill = jax.jit(fill, static_argnums=4, donate_argnums=1)
        # Decode steps the last `generate` took (a measure of the slots' effect).
        self.last_decode_steps = 0

    def _prefill_inputs(self, token_ids: np.ndarray, images, width: int):
        """`(token ids, image arrays)` of a prefill: the ids as given and None without images;
        with some, the ids right-padded to the cache `width` and the images' arrays."""
        if images is None or not any(images):
            return token_ids, None
        padded = np.zeros((token_ids.shape[0], width), np.int32)
        padded[:, : token_ids.shape[1]] = token_ids
        return padded, vision.batch_arrays(images, len(token_ids), width)

    def _empty_cache(self, token_ids):
        return keras_compat.build_cache(self.causal_lm, token_ids, self._cache_arguments)

    def model_weights(self) -> list:
        """The model's current weight values, as the model holds them."""
        return [v.value for v in self.variables]

    def current_weights(self) -> list:
        """The model's current weight values cast for decoding (pass as `weights`)."""
        return self.decode_weights(self.model_weights())

    def decode_weights(self, weights: list) -> list:
        """`weights` as this decoder reads them: as given for float32; for bfloat16, every
        floating weight matrix (2 or more dimensions) cast to bfloat16, norms and scales kept.
        The last two casts are remembered, so passing the same arrays again costs nothing."""
        if self.decode_dtype == "float32":
            return weights
        for source, cast in self._casts:
            if all(a is b for a, b in zip(source, weights, strict=True)):
                return cast
        cast = decoding.cast_matrices(weights, self.decode_dtype)
        self._casts = [*self._casts[-1:], (list(weights), cast)]
        return cast

    def steps(
        self,
        prompts: list,
        max_new_tokens: int,
        stop_token_ids: tuple[int, ...],
        weights=None,
        temperature: float = 0.0,
        top_k: int = 0,
        top_p: float = 1.0,
        seed: int = 0,
        images: list | None = None,
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Yields `(next_ids, stopped)` per step, one entry per prompt, until all have stopped.

        A row is stopped from the step that produced its first stop token on (that token
        included); at most `max_new_tokens` steps. Sampling is as in `pick_token`, one
        generator seeded with `seed` for the whole batch. `images`: each prompt's placed
        images (module docstring), or None.
        """
        weights = self.current_weights() if weights is None else self.decode_weights(weights)
        rng = np.random.default_rng(seed)
        lengths = np.array([len(p) for p in prompts], np.int32)
        longest = int(lengths.max())
        token_ids = np.zeros((len(prompts), _round_up(longest, self.bucket)), np.int32)
        for row, prompt in enumerate(prompts):
            token_ids[row, : len(prompt)] = prompt
        width = _round_up(longest + max_new_tokens, self.bucket)
        ids, image_arrays = self._prefill_inputs(token_ids, images, width)
        cache = self._prefill(weights, ids, width, image_arrays)
        # The first step re-reads each prompt's last token to get the logits after it.
        tokens = token_ids[np.arange(len(prompts)), lengths - 1]
        indices = lengths - 1
        stopped = np.zeros(len(prompts), bool)
        stops = np.array(stop_token_ids or (-1,), np.int32)
        for _ in range(max_new_tokens):
            if temperature <= 0:  # the argmax on the device, as `generate` takes it
                tokens, cache = self._greedy_step(weights, cache, tokens, indices)
                tokens = np.asarray(tokens)
            else:
                logits, cache = self._step(weights, cache, tokens, indices)
                logits = np.asarray(logits)
                tokens = np.array(
                    [pick_token(row, temperature, top_k, top_p, rng) for row in logits], np.int32
                )
            stopped = stopped | np.isin(tokens, stops)
            yield tokens, stopped
            if stopped.all():
                return
            indices = indices + 1

    def _padded(self, prompts: list) -> np.ndarray:
        """Prompts right-padded with 0 into one `[rows, width]` array, width a bucket multiple."""
        token_ids = np.zeros(
            (len(prompts), _round_up(max(map(len, prompts)), self.bucket)), np.int32
        )
        for row, prompt in enumerate(prompts):
            token_ids[row, : len(prompt)] = prompt
        return token_ids

    def generate(
        self,
        prompts: list,
        max_new_tokens: int,
        stop_token_ids: tuple[int, ...],
        weights=None,
        batch_size: int = 8,
        temperature: float = 0.0,
        top_k: int = 0,
        top_p: float = 1.0,
        seed: int = 0,
        progress=None,
        images: list | None = None,
    ) -> list[np.ndarray]:
        """The new ids of each prompt (its first stop token and after left out), decoding
        `batch_size` rows at a time and refilling a row's slot as soon as it finishes (see the
        module docstring). Prompt `i` samples with `np.random.default_rng([seed, i])`.

        Args:
          progress: called with the number of prompts finished, after each one.
          images: each prompt's placed images (`vision.PlacedImage`s), or None.
        """
        weights = self.current_weights() if weights is None else self.decode_weights(weights)
        width = _round_up(max(map(len, prompts)) + max_new_tokens, self.bucket)
        stops = set(stop_token_ids)
        stop_array = np.array(sorted(stops) or [-1], np.int32)
        rngs = [np.random.default_rng([seed, index]) for index in range(len(prompts))]
        queue = list(range(len(prompts)))
        active = queue[:batch_size]
        del queue[:batch_size]
        # A full batch from the start (a short last batch repeats its last prompt, unread),
        # so one compiled step serves every call of this batch size.
        first_rows = active + [active[-1]] * (batch_size - len(active))
        first = [prompts[i] for i in first_rows]
        first_images = None if images is None else [images[i] for i in first_rows]
        ids, image_arrays = self._prefill_inputs(self._padded(first), first_images, width)
        cache = self._prefill(weights, ids, width, image_arrays)
        tokens = np.array([p[-1] for p in first], np.int32)
        indices = np.array([len(p) - 1 for p in first], np.int32)
        active += [-1] * (batch_size - len(active))
        produced: dict[int, list[int]] = {i: [] for i in range(len(prompts))}
        self.last_decode_steps = 0
        while any(index >= 0 for index in active):
            if temperature <= 0:
                budgets = np.array(
                    [max_new_tokens - len(produced[i]) if i >= 0 else 0 for i in active], np.int32
                )
                picked, count, cache = self._greedy_steps(
                    weights, cache, tokens, indices, budgets, bool(queue), stop_array,
                    GREEDY_CHUNK,
                )  # fmt: skip
                picked = np.asarray(picked)[: int(count)]
            else:
                logits, cache = self._step(weights, cache, tokens, indices)
                logits = np.asarray(logits)
                picked = np.array(
                    [
                        [
                            pick_token(logits[slot], temperature, top_k, top_p, rngs[index])
                            if index >= 0
                            else 0
                            for slot, index in enumerate(active)
                        ]
                    ],
                    np.int32,
                )
            self.last_decode_steps += len(picked)
            indices = indices + len(picked)
            tokens = picked[-1].copy()
            for slot, index in enumerate(active):
                if index < 0 or not _take(picked[:, slot], produced[index], stops, max_new_tokens):
                    continue
                active[slot] = queue.pop(0) if queue else -1
                if progress:
                    progress(1)
                if active[slot] >= 0:
                    prompt = prompts[active[slot]]
                    row_images = None if images is None else [images[active[slot]]]
                    ids, image_arrays = self._prefill_inputs(
                        self._padded([prompt]), row_images, width
                    )
                    cache = self._fill(weights, cache, slot, ids, width, image_arrays)
                    tokens[slot], indices[slot] = prompt[-1], len(prompt) - 1
        return [np.array(produced[i], np.int32) for i in range(len(prompts))]


def _take(picked: np.ndarray, produced: list[int], stops: set, max_new_tokens: int) -> bool:
    """Appends a row's `picked` tokens to its answer up to its first stop token or its
    `max_new_tokens`-th token; returns whether the row finished (its slot is free)."""
    for token in picked.tolist():
        if token in stops:
            return True
        produced.append(token)
        if len(produced) >= max_new_tokens:
            return True
    return False


_DECODERS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def decoder_for(causal_lm, decode_dtype: str = "float32") -> Decoder:
    """The model's `Decoder` for `decode_dtype`, kept across calls so base and tuned answers
    share its compiled functions; rebuilt when the model's variables changed (LoRA enabled,
    say)."""
    decoders = _DECODERS.setdefault(causal_lm, {})
    decoder = decoders.get(decode_dtype)
    variables = list(causal_lm.variables)
    if decoder is None or list(map(id, decoder.variables)) != list(map(id, variables)):
        decoder = decoders[decode_dtype] = Decoder(causal_lm, decode_dtype=decode_dtype)
    return decoder


def generate_ids(
    causal_lm,
    prompts: list[np.ndarray],
    max_new_tokens: int,
    stop_token_ids: tuple[int, ...],
    batch_size: int = 8,
    images: list | None = None,
    decode_dtype: str = "float32",
    **sampling,
) -> list[np.ndarray]:
    """Generates continuations for token-id prompts; returns the new ids of each, stop excluded.

    Args:
      causal_lm: a KerasHub Gemma/Gemma3 CausalLM; its current weights are used.
      prompts: one int array per prompt (BOS included).
      max_new_tokens: the most tokens to generate per prompt.
      stop_token_ids: ids that end a sequence.
      batch_size: rows decoded at once; a finished row's slot takes the next prompt.
      images: each prompt's placed images (`ChatTemplate.prompt_images`), or None.
      decode_dtype: "float32" (default) or "bfloat16" weights for decoding (`Decoder`).
      **sampling: `temperature`, `top_k`, `top_p`, `seed` (greedy by default).

    Raises:
      ValueError: an unknown `decode_dtype`, named.
    """
    check_decode_dtype(decode_dtype)
    if not prompts:
        return []
    decoder = decoder_for(causal_lm, decode_dtype)
    with tqdm.auto.tqdm(
        total=len(prompts), desc="generate", unit="answer", disable=len(prompts) <= batch_size
    ) as bar:
        return decoder.generate(
            prompts, max_new_tokens, stop_token_ids, batch_size=batch_size,
            progress=bar.update, images=images, **sampling,
        )  # fmt: skip


class TokenStream:
    """Token-by-token generation for one prompt, for streaming to a terminal.

    A `Decoder` with batch 1: prefill and each decode step are compiled once per cache width
    (multiples of `bucket`). Weights are passed in as values, so one stream serves the base
    model and a tuned one alike (`--compare_base`).

    Args:
      causal_lm: a KerasHub Gemma/Gemma3 CausalLM.
      bucket: cache widths are multiples of this.
      decode_dtype: "float32" (default) or "bfloat16" weights for decoding (`Decoder`).
    """

    def __init__(self, causal_lm, bucket: int = 128, decode_dtype: str = "float32"):
        self.decoder = Decoder(causal_lm, bucket, decode_dtype)

    def current_weights(self) -> list:
        """The model's current weight values, cast for decoding (pass to `stream`)."""
        return self.decoder.current_weights()

    def stream(
        self,
        prompt: np.ndarray,
        max_new_tokens: int,
        stop_token_ids,
        weights=None,
        images: tuple = (),
        **sampling,
    ):
        """Yields generated token ids one at a time until a stop token or the length limit.

        `sampling` (`temperature`, `top_k`, `top_p`, `seed`) is as in `Decoder.steps`: greedy
        at temperature 0 (deterministic), else sampled from the softmax at that temperature,
        restricted to the `top_k` most likely tokens and/or the smallest set whose
        probability reaches `top_p`. `images`: the prompt's placed images (vision models).
        """
        for tokens, stopped in self.decoder.steps(
            [prompt], max_new_tokens, stop_token_ids, weights, images=[images], **sampling
        ):
            if stopped[0]:
                return
            yield int(tokens[0])


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
