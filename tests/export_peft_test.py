"""The PEFT adapter export of a tuned tiny Gemma: on the exported base it reproduces the tuned
logits (LoRA, DoRA, every projection), and per-head LoRA maps to PEFT ranks exactly.

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
