"""Opt-in bfloat16 decoding: weight matrices cast, answers close to float32 greedy, reached
from `sample`, `evaluate` and the Python API; an unknown value is named."""

import subprocess
import sys

import jax.numpy as jnp
import numpy as np
import pytest

from gemma_tune import model
from gemma_tune.data import example as ex
from gemma_tune.evaluation import generate
from gemma_tune.training import template

TEXTS = ["Hi", "Repeat: the cat sees old books.", "What color is the sky on a clear day?"]


def _prompts(loaded):
    chat_template = template.ChatTemplate(loaded.tokenizer)
    return [
        chat_template.encode_prompt(ex.Example(turns=(ex.Turn(ex.USER, t), ex.Turn(ex.MODEL, "-"))))
        for t in TEXTS
    ]


@pytest.mark.parametrize("architecture", ["gemma2", "gemma3"])
def test_bfloat16_decoding_is_close_to_float32(architecture):
    loaded = model.load(f"tiny:{architecture}", "float32", seed=1)
    prompts = _prompts(loaded)
    full = generate.Decoder(loaded.causal_lm)
    half = generate.Decoder(loaded.causal_lm, decode_dtype="bfloat16")
    weights = half.current_weights()
    matrices = [w for w in weights if w.ndim >= 2]
    assert matrices and all(w.dtype == jnp.bfloat16 for w in matrices)
    assert all(w.dtype == jnp.float32 for w in weights if w.ndim < 2)
    assert half.decode_weights(full.model_weights()) is weights  # the cast is remembered
    # The next-token logits after each prompt: close, not equal.
    logits = {
        name: _last_logits(decoder, prompts) for name, decoder in (("full", full), ("half", half))
    }
    difference = np.abs(logits["full"] - logits["half"]).max()
    assert 0 < difference < 0.05 * np.abs(logits["full"]).max(), difference
    # Greedy answers: the same first token for every prompt, most tokens the same.
    answers = {
        name: generate.generate_ids(loaded.causal_lm, prompts, 8, (), decode_dtype=dtype)
        for name, dtype in (("full", "float32"), ("half", "bfloat16"))
    }
    same = [a[0] == b[0] for a, b in zip(answers["full"], answers["half"], strict=True)]
    assert all(same)
    shared = np.mean(np.concatenate(answers["full"]) == np.concatenate(answers["half"]))
    assert shared >= 0.5, shared


def _last_logits(decoder, prompts):
    """The logits after each prompt's last token, from the decoder's first step."""
    token_ids = decoder._padded(prompts)
    width = token_ids.shape[1] + decoder.bucket
    weights = decoder.current_weights()
    cache = decoder._prefill(weights, token_ids, width)
    lengths = np.array([len(p) for p in prompts], np.int32)
    tokens = token_ids[np.arange(len(prompts)), lengths - 1]
    logits, _ = decoder._step(weights, cache, tokens, lengths - 1)
    return np.asarray(logits)


def test_an_unknown_decode_dtype_is_named():
    loaded = model.load("tiny:gemma1", "float32", seed=1)
    with pytest.raises(ValueError, match="decode_dtype='float16'.*bfloat16"):
        generate.generate_ids(loaded.causal_lm, _prompts(loaded), 4, (), decode_dtype="float16")
    for command in ("sample", "evaluate"):
        result = subprocess.run(
            [sys.executable, "-m", f"gemma_tune.{command}", "--model=tiny:gemma1",
             "--decode_dtype=int3"],
            capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert result.returncode != 0
        assert "--decode_dtype='int3'" in result.stderr, result.stderr[-2000:]


def test_sample_and_evaluate_decode_in_bfloat16(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "gemma_tune.sample", "--model=tiny:gemma3", "--raw",
         "--prompt=The cat", "--max_new_tokens=4", "--decode_dtype=bfloat16"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    from gemma_tune import evaluate

    data = tmp_path / "qa.csv"
    data.write_text("input,output\nRepeat after me: a dog.,a dog.\nWhat is red?,an apple\n")
    out = evaluate.evaluate(
        model_name="tiny:gemma1",
        data=str(data),
        out=str(tmp_path / "out"),
        max_new_tokens=4,
        decode_dtype="bfloat16",
    )
    assert (tmp_path / "out" / "comparison.json").exists() and out == str(tmp_path / "out")


@pytest.mark.parametrize("quantized", [None, "int8"])
def test_greedy_tokens_on_the_device_equal_the_argmax_of_the_logits(quantized):
    """Greedy batches and the stream pick `embedding @ hidden.T`'s argmax on the device (or,
    with a quantized embedding, KerasHub's logits'); both equal the host argmax of KerasHub's
    logits step by step, token for token (Gemma 2: soft-capped logits)."""
    from gemma_tune.evaluation import decoding
    from gemma_tune.model import quantize

    loaded = model.load("tiny:gemma2", "float32", seed=1)
    if quantized:
        quantize.quantize(loaded.backbone, quantized)
    decoder = generate.Decoder(loaded.causal_lm)
    index = decoding.tied_embedding_index(loaded.causal_lm, decoder.variables)
    assert (index is None) == bool(quantized)
    prompts = _prompts(loaded)
    expected = _host_greedy(decoder, prompts, 10)
    assert len({tuple(e) for e in expected}) > 1
    batched = decoder.generate(prompts, 10, (), batch_size=3)
    assert [b.tolist() for b in batched] == expected
    stream = generate.TokenStream(loaded.causal_lm, bucket=16)
    assert [list(stream.stream(p, 10, ())) for p in prompts] == expected


def _host_greedy(decoder, prompts, steps):
    """Greedy answers from the decoder's logits step (KerasHub's logits), argmax on the host."""
    token_ids = decoder._padded(prompts)
    weights = decoder.current_weights()
    cache = decoder._prefill(weights, token_ids, token_ids.shape[1] + decoder.bucket)
    indices = np.array([len(p) - 1 for p in prompts], np.int32)
    tokens = token_ids[np.arange(len(prompts)), indices]
    answers = [[] for _ in prompts]
    for _ in range(steps):
        logits, cache = decoder._step(weights, cache, tokens, indices)
        tokens = np.argmax(np.asarray(logits), axis=-1).astype(np.int32)
        for answer, token in zip(answers, tokens.tolist(), strict=True):
            answer.append(token)
        indices = indices + 1
    return answers
