"""What the decoder reads and how it picks greedy tokens on the device.

`decode_dtype` is an opt-in: "float32" decodes with the weights as the model holds them;
"bfloat16" casts every weight matrix to bfloat16 for decoding (half the bytes held and read),
each layer still computing in the model's own dtype. benchmarks/RESULTS.md has its measured
speed and agreement with float32 greedy answers.

Greedy decoding needs only the index of the largest logit. Every Gemma family's logits are the
final hidden state times the tied token embedding (Gemma 2 and 4 then soft-cap them with tanh,
which keeps their order), so `greedy_tokens` takes the argmax of `embedding @ hidden.T`:
`[vocab, rows]` rather than KerasHub's `hidden @ embedding.T`, the product XLA on CPU runs
faster (benchmarks/RESULTS.md), with no logits leaving the device.
"""

from __future__ import annotations

DECODE_DTYPES = ("float32", "bfloat16")


def check_decode_dtype(decode_dtype: str, name: str = "decode_dtype") -> str:
    """Returns `decode_dtype` if it is one of `DECODE_DTYPES`.

    Raises:
      ValueError: naming `name` (the flag or argument that gave it) and the values allowed.
    """
    if decode_dtype not in DECODE_DTYPES:
        allowed = ", ".join(DECODE_DTYPES)
        raise ValueError(f"{name}={decode_dtype!r}: use one of {allowed}")
    return decode_dtype


def cast_matrices(weights: list, decode_dtype: str) -> list:
    """`weights` with every floating weight matrix (2 or more dimensions: kernels, embeddings,
    LoRA factors) cast to `decode_dtype`; norms and scales kept as they are."""
    import jax.numpy as jnp

    return [
        w.astype(decode_dtype) if w.ndim >= 2 and jnp.issubdtype(w.dtype, jnp.floating) else w
        for w in weights
    ]


def tied_embedding_index(causal_lm, variables: list) -> int | None:
    """The position in `variables` of the token embedding that forms the logits, or None
    when the logits are not a plain product with it (untied, quantized or recast: then
    greedy decoding takes the argmax of KerasHub's logits)."""
    embedding = causal_lm.backbone.token_embedding
    if (
        not getattr(embedding, "tie_weights", False)
        or getattr(embedding, "reverse_dtype", None) is not None
        or embedding.dtype_policy.quantization_mode is not None
    ):
        return None
    matches = [i for i, v in enumerate(variables) if v is embedding.embeddings]
    return matches[0] if matches else None


def greedy_tokens(hidden, embedding):
    """The most likely next token of each row: `hidden` `[rows, dim]` final hidden states,
    `embedding` `[vocab, dim]`; int32 `[rows]`."""
    return best_tokens((embedding.astype(hidden.dtype) @ hidden.T).T)  # scores [rows, vocab]


def best_tokens(scores):
    """Each row's index of its largest score (the first on ties, as `jnp.argmax`), through
    `vocab_tiled_head.first_index_of`, which XLA on CPU runs faster than `jnp.argmax`."""
    from gemma_tune.training import vocab_tiled_head

    return vocab_tiled_head.first_index_of(scores, scores.max(axis=-1))
