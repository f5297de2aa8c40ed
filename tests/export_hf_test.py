"""The Hugging Face transformers export of a tuned tiny Gemma: weights that reproduce its logits
(float32 and bfloat16), each generation's config, and a tokenizer and chat template that give
our ids.

    python -m pytest -q tests/export_hf_test.py
"""

import json

import ml_dtypes
import numpy as np
import pytest
from export_helpers import (
    CASES,
    base_model,
    encode,
    hf_load,
    hf_logits,
    keras_logits,
    sample_token_ids,
    tiny_tokenizer,
    tuned_model,
)

from gemma_tune import testing
from gemma_tune.export import merge

HF_CLASSES = {
    "gemma1": "GemmaForCausalLM",
    "gemma2": "Gemma2ForCausalLM",
    "gemma3": "Gemma3ForCausalLM",
}


@pytest.mark.parametrize("architecture,kv_heads", CASES)
def test_hf_export_of_a_tuned_model_matches_its_logits(tmp_path, architecture, kv_heads):
    from gemma_tune.export import hf_export

    tuned = tuned_model(architecture, kv_heads)
    token_ids = sample_token_ids()
    expected = keras_logits(tuned, token_ids)
    hf_export.save(tuned, str(tmp_path))  # LoRA enabled: merged, not dropped
    assert merge.has_lora(tuned.backbone)  # the caller's model is left as it was
    hf_model = hf_load(tmp_path)
    assert type(hf_model).__name__ == HF_CLASSES[architecture]
    assert hf_model.config.num_key_value_heads == kv_heads
    logits = hf_logits(hf_model, token_ids)
    print(f"{architecture} kv={kv_heads}: max |HF - Keras| {np.abs(logits - expected).max():.2e}")
    np.testing.assert_allclose(logits, expected, atol=1e-4, rtol=0)


@pytest.mark.parametrize("architecture", ["gemma3", "gemma4"])
def test_hf_export_in_bfloat16(tmp_path, architecture):
    pytest.importorskip("torch")  # safe_open(..., "pt") reads the bfloat16 tensors with torch
    from safetensors import safe_open

    from gemma_tune.export import hf_export

    tuned = tuned_model(architecture)
    token_ids = sample_token_ids()
    expected = keras_logits(tuned, token_ids)
    hf_export.save(tuned, str(tmp_path), "bfloat16")
    with safe_open(str(tmp_path / hf_export.WEIGHTS_FILE), "pt") as f:
        assert {str(f.get_tensor(name).dtype) for name in f.keys()} == {"torch.bfloat16"}
    assert json.loads((tmp_path / "config.json").read_text())["torch_dtype"] == "bfloat16"
    # Weights rounded once to bfloat16 (8 bits of mantissa), computed in float32: equal to our
    # merged model with its weights rounded the same way. (Against the float32 model the tiny
    # random Gemma 4, with large random LoRA on every target, moves by up to 6% of its largest
    # logit: the rounding, not the export.)
    logits = hf_logits(hf_load(tmp_path), token_ids)
    merged = merge.merge_lora(tuned)
    for variable in merged.backbone.weights:
        value = np.asarray(variable.numpy())
        if value.dtype == np.float32:
            variable.assign(value.astype(ml_dtypes.bfloat16).astype(np.float32))
    np.testing.assert_allclose(logits, keras_logits(merged, token_ids), atol=1e-4, rtol=0)
    assert np.abs(logits - expected).max() < 0.1 * np.abs(expected).max()


def test_hf_configs_carry_each_generation_s_architecture():
    from gemma_tune.export import hf_export

    gemma2 = base_model("gemma2")
    config = hf_export.config_dict(gemma2.backbone, gemma2.tokenizer)
    assert config["model_type"] == "gemma2"
    assert config["attn_logit_softcapping"] == 50.0 and config["final_logit_softcapping"] == 30.0
    assert config["sliding_window"] == 16 and config["query_pre_attn_scalar"] == 8
    assert config["layer_types"] == ["sliding_attention", "full_attention"]

    gemma3 = base_model("gemma3")
    config = hf_export.config_dict(gemma3.backbone, gemma3.tokenizer, "bfloat16")
    assert config["architectures"] == ["Gemma3ForCausalLM"]
    assert config["model_type"] == "gemma3_text" and config["torch_dtype"] == "bfloat16"
    assert config["layer_types"] == ["sliding_attention", "sliding_attention"]
    assert config["rope_local_base_freq"] == 10_000.0 and config["rope_theta"] == 1_000_000.0
    assert config["final_logit_softcapping"] is None

    gemma1 = base_model("gemma1")
    config = hf_export.config_dict(gemma1.backbone, gemma1.tokenizer)
    assert config["model_type"] == "gemma" and "layer_types" not in config
    assert (config["bos_token_id"], config["eos_token_id"], config["pad_token_id"]) == (2, 1, 0)


def test_hf_state_dict_refuses_unmerged_lora():
    from gemma_tune.export import hf_export

    with pytest.raises(ValueError, match="merge it first"):
        hf_export.state_dict(tuned_model("gemma1").backbone)


TEXTS = [
    "the cat likes red apples.",
    "<start_of_turn>user\nWhat color is the sky? It is blue.<end_of_turn>\n"
    "<start_of_turn>model\nAnswer: blue<end_of_turn>\n",
    "  two  spaces, digits 12345, unknown letters zq héllo 😀\n\n",
]


@pytest.mark.parametrize("architecture", ["gemma1", "gemma3"])
def test_hf_tokenizer_gives_our_ids(tmp_path, architecture):
    transformers = pytest.importorskip("transformers")
    from gemma_tune.export import hf_export

    tokenizer = tiny_tokenizer(architecture)
    hf_export.save_tokenizer(tokenizer, str(tmp_path))
    hf_tokenizer = transformers.AutoTokenizer.from_pretrained(str(tmp_path))
    for text in TEXTS:
        assert hf_tokenizer(text, add_special_tokens=False)["input_ids"] == encode(tokenizer, text)
    assert hf_tokenizer("the cat")["input_ids"][0] == 2  # <bos> added, as Gemma expects
    for marker in testing.turn_markers(architecture):
        assert hf_tokenizer.convert_tokens_to_ids(marker) == tokenizer.token_to_id(marker)


def test_hf_chat_template_matches_ours(tmp_path):
    transformers = pytest.importorskip("transformers")
    from gemma_tune.data import example
    from gemma_tune.export import hf_export
    from gemma_tune.training import template

    tokenizer = tiny_tokenizer("gemma3")
    hf_export.save_tokenizer(tokenizer, str(tmp_path))
    hf_tokenizer = transformers.AutoTokenizer.from_pretrained(str(tmp_path))
    item = example.Example(
        turns=(
            example.Turn(example.USER, "What color is the sky?"),
            example.Turn(example.MODEL, "-"),
        ),
        system="Answer briefly.",
    )
    messages = [
        {"role": "system", "content": "Answer briefly."},
        {"role": "user", "content": "What color is the sky?"},
    ]
    text = hf_tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    ids = hf_tokenizer(text, add_special_tokens=False)["input_ids"]
    assert ids == template.ChatTemplate(tokenizer).encode_prompt(item).tolist()
