"""Exports of a tuned tiny Gemma reproduce its logits: merged Keras preset, Hugging Face
transformers, and PEFT adapter on the exported base; and the export CLI end to end.

    python -m pytest -q tests/export_test.py
"""

import functools

import keras_hub
import numpy as np
import pytest

from gemma_tune import merge, model, testing

# Longer than the tiny models' sliding window (16), so local attention is exercised.
SEQUENCE_LENGTH = 24
CASES = [("gemma1", 2), ("gemma1", 1), ("gemma2", 2), ("gemma3", 2), ("gemma3", 1)]


@functools.cache
def _tokenizer(architecture):
    return testing.tiny_tokenizer(architecture)


def _base(architecture, num_key_value_heads=2, seed=0):
    tokenizer = _tokenizer(architecture)
    backbone = testing.tiny_backbone(
        architecture,
        tokenizer.vocabulary_size(),
        seed=seed,
        dtype="float32",
        num_key_value_heads=num_key_value_heads,
    )
    if architecture == "gemma3":
        causal_lm = keras_hub.models.Gemma3CausalLM(backbone=backbone, preprocessor=None)
    else:
        causal_lm = keras_hub.models.GemmaCausalLM(backbone=backbone, preprocessor=None)
    return model.LoadedModel(causal_lm, tokenizer, f"tiny:{architecture}")


def _tuned(architecture, num_key_value_heads=2, rank=4):
    """A tiny model with LoRA whose factors are all random and nonzero."""
    loaded = _base(architecture, num_key_value_heads)
    model.enable_lora(loaded, rank)
    rng = np.random.default_rng(1)
    for variable in loaded.causal_lm.trainable_variables:
        variable.assign(rng.normal(0, 0.2, variable.shape).astype(np.float32))
    return loaded


def _token_ids(batch=2):
    rng = np.random.default_rng(7)
    ids = rng.integers(4, 320, (batch, SEQUENCE_LENGTH)).astype(np.int32)
    ids[:, 0] = 2  # <bos>
    return ids


def _ids(tokenizer, text):
    return [int(i) for i in tokenizer(text)]


def _keras_logits(loaded, token_ids):
    inputs = {"token_ids": token_ids, "padding_mask": np.ones_like(token_ids, bool)}
    return np.asarray(loaded.causal_lm(inputs))


@pytest.mark.parametrize("architecture,kv_heads", CASES)
def test_merged_model_has_no_lora_and_equal_logits(architecture, kv_heads):
    tuned = _tuned(architecture, kv_heads)
    token_ids = _token_ids()
    expected = _keras_logits(tuned, token_ids)
    base = _keras_logits(_base(architecture, kv_heads), token_ids)
    assert np.abs(expected - base).max() > 0.1  # the LoRA factors do change the model

    merged = merge.merge_lora(tuned)
    assert not merge.has_lora(merged.backbone)
    assert not any("lora" in v.path for v in merged.causal_lm.weights)
    np.testing.assert_allclose(_keras_logits(merged, token_ids), expected, atol=2e-5, rtol=0)


def test_lora_delta_follows_the_layer_forward_pass():
    tuned = _tuned("gemma1", rank=3)
    layer = tuned.backbone.get_layer("decoder_block_0").attention.query_dense
    layer.lora_alpha = 6  # scale 2: the delta must follow alpha / rank
    x = np.random.default_rng(0).normal(size=(1, 5, 32)).astype(np.float32)
    kernel = np.asarray(layer._kernel.numpy())
    expected = np.asarray(layer(x))
    merged = np.einsum("btd,ndh->btnh", x, kernel + merge.lora_delta(layer))
    np.testing.assert_allclose(merged, expected, atol=1e-5, rtol=0)
    # KerasHub's LoRA on a (heads, hidden, head_dim) kernel is per head in A, shared in B.
    assert tuple(layer.lora_kernel_a.shape) == (4, 32, 3)
    assert tuple(layer.lora_kernel_b.shape) == (3, 8)


def test_keras_preset_round_trips(tmp_path):
    tuned = _tuned("gemma3")
    token_ids = _token_ids()
    expected = _keras_logits(tuned, token_ids)
    merge.save_keras_preset(tuned, str(tmp_path / "preset"))
    reloaded = model.load(str(tmp_path / "preset"), "float32")
    assert not merge.has_lora(reloaded.backbone)
    np.testing.assert_allclose(_keras_logits(reloaded, token_ids), expected, atol=2e-5, rtol=0)
    text = "<start_of_turn>user\nthe cat likes red apples.<end_of_turn>\n"
    assert _ids(reloaded.tokenizer, text) == _ids(tuned.tokenizer, text)
