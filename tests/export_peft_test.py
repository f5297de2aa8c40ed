"""The PEFT adapter export of a tuned tiny Gemma: on the exported base it reproduces the tuned
logits (LoRA, DoRA, every projection, either LoRA layout); per-head LoRA maps to PEFT ranks
exactly, and the peft layout exports at the user's rank.

    python -m pytest -q tests/export_peft_test.py
"""

import json

import numpy as np
import pytest
from export_helpers import (
    CASES,
    base_model,
    hf_load,
    hf_logits,
    keras_logits,
    peft_logits,
    sample_token_ids,
    tuned_model,
)

from gemma_tune import model

ALL_TARGETS = list(model.LORA_TARGETS)


@pytest.mark.parametrize("architecture,kv_heads", CASES)
def test_peft_adapter_on_the_exported_base_matches_the_tuned_logits(
    tmp_path, architecture, kv_heads
):
    from gemma_tune.export import hf_export, peft_export

    tuned = tuned_model(architecture, kv_heads)
    token_ids = sample_token_ids()
    expected = keras_logits(tuned, token_ids)
    hf_export.save(base_model(architecture, kv_heads), str(tmp_path / "base"))
    peft_export.save(tuned, str(tmp_path / "adapter"), str(tmp_path / "base"))
    logits = peft_logits(tmp_path / "base", tmp_path / "adapter", token_ids)
    print(f"{architecture} kv={kv_heads}: max |PEFT - Keras| {np.abs(logits - expected).max():.2e}")
    np.testing.assert_allclose(logits, expected, atol=1e-4, rtol=0)


@pytest.mark.parametrize("architecture,kv_heads", [("gemma1", 2), ("gemma3", 1)])
def test_dora_exports_to_hf_and_peft_with_the_tuned_logits(tmp_path, architecture, kv_heads):
    from gemma_tune.export import hf_export, peft_export

    tuned = tuned_model(architecture, kv_heads, dora=True)
    token_ids = sample_token_ids()
    expected = keras_logits(tuned, token_ids)
    hf_export.save(tuned, str(tmp_path / "merged"))
    merged = hf_logits(hf_load(tmp_path / "merged"), token_ids)
    np.testing.assert_allclose(merged, expected, atol=1e-4, rtol=0)
    hf_export.save(base_model(architecture, kv_heads), str(tmp_path / "base"))
    peft_export.save(tuned, str(tmp_path / "adapter"), str(tmp_path / "base"))
    config = json.loads((tmp_path / "adapter" / peft_export.CONFIG_FILE).read_text())
    assert config["use_dora"] is True
    logits = peft_logits(tmp_path / "base", tmp_path / "adapter", token_ids)
    np.testing.assert_allclose(logits, expected, atol=1e-4, rtol=0)


def test_peft_adapter_represents_per_head_lora_exactly():
    from gemma_tune.export import peft_export

    config, tensors = peft_export.adapter(
        tuned_model("gemma1", num_key_value_heads=1, rank=4).backbone
    )
    # query: 4 heads, each with its own A -> PEFT rank 16; value: one kv head -> plain rank 4.
    assert (config["r"], config["lora_alpha"]) == (16, 16)
    assert config["rank_pattern"] == config["alpha_pattern"] == {"v_proj": 4}
    assert config["target_modules"] == ["q_proj", "v_proj"]
    prefix = "base_model.model.model.layers.1.self_attn."
    assert tensors[prefix + "q_proj.lora_A.weight"].shape == (16, 32)
    assert tensors[prefix + "q_proj.lora_B.weight"].shape == (32, 16)
    assert tensors[prefix + "v_proj.lora_A.weight"].shape == (4, 32)
    assert tensors[prefix + "v_proj.lora_B.weight"].shape == (8, 4)


@pytest.mark.parametrize(
    "architecture,kv_heads,dora",
    [
        ("gemma1", 2, False),
        ("gemma3", 1, True),
        # ~15 s each: slow suite (CI runs it too).
        pytest.param("gemma2", 1, True, marks=pytest.mark.slow),
        pytest.param("gemma3", 2, False, marks=pytest.mark.slow),
    ],
)
def test_peft_layout_exports_at_the_users_rank_with_the_tuned_logits(
    tmp_path, architecture, kv_heads, dora
):
    from gemma_tune.export import hf_export, peft_export

    tuned = tuned_model(architecture, kv_heads, rank=3, dora=dora, layout="peft", targets=["all"])
    token_ids = sample_token_ids()
    expected = keras_logits(tuned, token_ids)
    hf_export.save(base_model(architecture, kv_heads), str(tmp_path / "base"))
    peft_export.save(tuned, str(tmp_path / "adapter"), str(tmp_path / "base"))
    config = json.loads((tmp_path / "adapter" / peft_export.CONFIG_FILE).read_text())
    # Rank 3 on every projection, attention included: no per-module ranks.
    assert (config["r"], config["lora_alpha"]) == (3, 3)
    assert config["rank_pattern"] == config["alpha_pattern"] == {}
    assert len(config["target_modules"]) == 7 and config["use_dora"] is dora
    prefix = "base_model.model.model.layers.0.self_attn."
    # q_proj: 4 heads x head_dim 8 outputs, hidden 32 inputs, rank 3.
    assert _tensor_shapes(tmp_path / "adapter", prefix + "q_proj") == ((3, 32), (32, 3))
    logits = peft_logits(tmp_path / "base", tmp_path / "adapter", token_ids)
    print(f"{architecture} kv={kv_heads}: max |PEFT - Keras| {np.abs(logits - expected).max():.2e}")
    np.testing.assert_allclose(logits, expected, atol=1e-4, rtol=0)
    base = keras_logits(base_model(architecture, kv_heads), token_ids)
    assert np.abs(base - expected).max() > 0.1  # the adapter mattered


def _tensor_shapes(adapter_dir, module):
    """The shapes of `module`'s lora_A and lora_B in the exported adapter file."""
    import safetensors.numpy

    from gemma_tune.export import peft_export

    tensors = safetensors.numpy.load_file(str(adapter_dir / peft_export.WEIGHTS_FILE))
    return tensors[f"{module}.lora_A.weight"].shape, tensors[f"{module}.lora_B.weight"].shape


def test_peft_adapter_with_lora_on_every_projection(tmp_path):
    from gemma_tune.export import hf_export, peft_export

    tuned = base_model("gemma3", 1)
    tuned.backbone.enable_lora(3, target_layer_names=ALL_TARGETS)
    rng = np.random.default_rng(3)
    for variable in tuned.causal_lm.trainable_variables:
        variable.assign(rng.normal(0, 0.2, variable.shape).astype(np.float32))
    token_ids = sample_token_ids()
    expected = keras_logits(tuned, token_ids)
    hf_export.save(base_model("gemma3", 1), str(tmp_path / "base"))
    peft_export.save(tuned, str(tmp_path / "adapter"))
    config = json.loads((tmp_path / "adapter" / peft_export.CONFIG_FILE).read_text())
    assert len(config["target_modules"]) == 7
    logits = peft_logits(tmp_path / "base", tmp_path / "adapter", token_ids)
    np.testing.assert_allclose(logits, expected, atol=1e-4, rtol=0)
    # The merged export of the same model agrees as well.
    hf_export.save(tuned, str(tmp_path / "merged"))
    merged = hf_logits(hf_load(tmp_path / "merged"), token_ids)
    np.testing.assert_allclose(merged, expected, atol=1e-4, rtol=0)


def test_peft_export_refuses_a_model_without_lora(tmp_path):
    from gemma_tune.export import peft_export

    with pytest.raises(ValueError, match="no LoRA layers"):
        peft_export.save(base_model("gemma1"), str(tmp_path))
