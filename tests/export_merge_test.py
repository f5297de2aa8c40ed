"""Merging LoRA into a tiny Gemma keeps its logits: the merged model (either LoRA layout), the
update in each layout, and the merged Keras preset reloaded with model.load.

    python -m pytest -q tests/export_merge_test.py
"""

import numpy as np
import pytest
from export_helpers import CASES, base_model, encode, keras_logits, sample_token_ids, tuned_model

from gemma_tune import model, testing
from gemma_tune.export import merge
from gemma_tune.model import lora


@pytest.mark.parametrize(
    "architecture,kv_heads,layout",
    [(*case, "per_head") for case in CASES] + [("gemma1", 2, "peft"), ("gemma3", 1, "peft")],
)
def test_merged_model_has_no_lora_and_equal_logits(architecture, kv_heads, layout):
    tuned = tuned_model(architecture, kv_heads, layout=layout)
    token_ids = sample_token_ids()
    expected = keras_logits(tuned, token_ids)
    base = keras_logits(base_model(architecture, kv_heads), token_ids)
    assert np.abs(expected - base).max() > 0.1  # the LoRA factors do change the model

    merged = merge.merge_lora(tuned)
    assert not merge.has_lora(merged.backbone)
    assert not any("lora" in v.path for v in merged.causal_lm.weights)
    np.testing.assert_allclose(keras_logits(merged, token_ids), expected, atol=2e-5, rtol=0)


@pytest.mark.parametrize(
    "layout,a_shape,b_shape", [("per_head", (4, 32, 3), (3, 8)), ("peft", (32, 3), (3, 4, 8))]
)
def test_lora_update_follows_the_layer_forward_pass(layout, a_shape, b_shape):
    tuned = tuned_model("gemma1", rank=3, layout=layout)
    layer = tuned.backbone.get_layer("decoder_block_0").attention.query_dense
    layer.lora_alpha = 6  # scale 2: the update must follow alpha / rank
    x = np.random.default_rng(0).normal(size=(1, 5, 32)).astype(np.float32)
    kernel = np.asarray(layer._kernel.numpy())
    expected = np.asarray(layer(x))
    merged = np.einsum("btd,ndh->btnh", x, kernel + np.asarray(lora.update(layer)))
    np.testing.assert_allclose(merged, expected, atol=1e-5, rtol=0)
    # per_head (KerasHub's) on a (heads, hidden, head_dim) kernel: A per head, B shared;
    # peft: A over the input (hidden), B over the outputs (heads, head_dim).
    assert tuple(layer.lora_kernel_a.shape) == a_shape
    assert tuple(layer.lora_kernel_b.shape) == b_shape
    # The update's rank: heads x r per head, r in PEFT's layout.
    update = np.asarray(lora.update(layer)).transpose(1, 0, 2).reshape(32, -1)
    assert np.linalg.matrix_rank(update) == {"per_head": 12, "peft": 3}[layout]


@pytest.mark.parametrize("architecture", ["gemma3", "gemma4", "gemma4_moe"])
def test_keras_preset_round_trips(tmp_path, architecture):
    tuned = tuned_model(architecture)
    token_ids = sample_token_ids()
    expected = keras_logits(tuned, token_ids)
    merge.save_keras_preset(tuned, str(tmp_path / "preset"))
    reloaded = model.load(str(tmp_path / "preset"), "float32")
    assert not merge.has_lora(reloaded.backbone)
    # Merged kernels (W0 + AB) sum in another order than the adapter's x W0 + (x A) B: float32
    # rounding, up to 3.1e-5 measured on tiny Gemma 4's logits (its per-layer inputs and
    # double-wide MLP add terms); the other exports' 1e-4 bound.
    np.testing.assert_allclose(keras_logits(reloaded, token_ids), expected, atol=1e-4, rtol=0)
    start, end = testing.turn_markers(architecture)
    text = f"{start}user\nthe cat likes red apples.{end}\n"
    assert encode(reloaded.tokenizer, text) == encode(tuned.tokenizer, text)
