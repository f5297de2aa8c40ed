"""Exports of a tuned tiny Gemma reproduce its logits: merged Keras preset, Hugging Face
transformers, and PEFT adapter on the exported base; and the export CLI end to end.

    python -m pytest -q tests/export_test.py
"""

import functools
import json

import keras_hub
import numpy as np
import pytest

from gemma_tune import model, testing
from gemma_tune.export import merge
from gemma_tune.model import lora

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


def _tuned(architecture, num_key_value_heads=2, rank=4, dora=False):
    """A tiny model with LoRA (or DoRA) whose factors are all random and nonzero."""
    loaded = _base(architecture, num_key_value_heads)
    model.enable_lora(loaded, rank, dora=dora)
    rng = np.random.default_rng(1)
    for variable in loaded.causal_lm.trainable_variables:
        if variable.path.endswith("lora_magnitude"):
            scale = rng.uniform(0.5, 1.5, variable.shape)
            variable.assign((np.asarray(variable.numpy()) * scale).astype(np.float32))
        else:
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


def test_lora_update_follows_the_layer_forward_pass():
    tuned = _tuned("gemma1", rank=3)
    layer = tuned.backbone.get_layer("decoder_block_0").attention.query_dense
    layer.lora_alpha = 6  # scale 2: the update must follow alpha / rank
    x = np.random.default_rng(0).normal(size=(1, 5, 32)).astype(np.float32)
    kernel = np.asarray(layer._kernel.numpy())
    expected = np.asarray(layer(x))
    merged = np.einsum("btd,ndh->btnh", x, kernel + np.asarray(lora.update(layer)))
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


def _hf_logits(hf_model, token_ids):
    import torch

    with torch.no_grad():
        return hf_model(torch.tensor(token_ids, dtype=torch.long)).logits.numpy()


def _hf_load(directory):
    transformers = pytest.importorskip("transformers")
    torch = pytest.importorskip("torch")
    hf_model, info = transformers.AutoModelForCausalLM.from_pretrained(
        str(directory), dtype=torch.float32, output_loading_info=True
    )
    assert not any(info.values()), info  # no missing, unexpected or mismatched weights
    return hf_model.eval()


HF_CLASSES = {
    "gemma1": "GemmaForCausalLM",
    "gemma2": "Gemma2ForCausalLM",
    "gemma3": "Gemma3ForCausalLM",
}


@pytest.mark.parametrize("architecture,kv_heads", CASES)
def test_hf_export_of_a_tuned_model_matches_its_logits(tmp_path, architecture, kv_heads):
    from gemma_tune.export import hf_export

    tuned = _tuned(architecture, kv_heads)
    token_ids = _token_ids()
    expected = _keras_logits(tuned, token_ids)
    hf_export.save(tuned, str(tmp_path))  # LoRA enabled: merged, not dropped
    assert merge.has_lora(tuned.backbone)  # the caller's model is left as it was
    hf_model = _hf_load(tmp_path)
    assert type(hf_model).__name__ == HF_CLASSES[architecture]
    assert hf_model.config.num_key_value_heads == kv_heads
    logits = _hf_logits(hf_model, token_ids)
    print(f"{architecture} kv={kv_heads}: max |HF - Keras| {np.abs(logits - expected).max():.2e}")
    np.testing.assert_allclose(logits, expected, atol=1e-4, rtol=0)


def test_hf_export_in_bfloat16(tmp_path):
    pytest.importorskip("torch")  # safe_open(..., "pt") reads the bfloat16 tensors with torch
    from safetensors import safe_open

    from gemma_tune.export import hf_export

    tuned = _tuned("gemma3")
    token_ids = _token_ids()
    expected = _keras_logits(tuned, token_ids)
    hf_export.save(tuned, str(tmp_path), "bfloat16")
    with safe_open(str(tmp_path / hf_export.WEIGHTS_FILE), "pt") as f:
        assert {str(f.get_tensor(name).dtype) for name in f.keys()} == {"torch.bfloat16"}
    assert json.loads((tmp_path / "config.json").read_text())["torch_dtype"] == "bfloat16"
    # Weights rounded once to bfloat16 (8 bits of mantissa), computed in float32.
    logits = _hf_logits(_hf_load(tmp_path), token_ids)
    assert np.abs(logits - expected).max() < 0.02 * np.abs(expected).max()


def test_hf_configs_carry_each_generation_s_architecture():
    from gemma_tune.export import hf_export

    gemma2 = _base("gemma2")
    config = hf_export.config_dict(gemma2.backbone, gemma2.tokenizer)
    assert config["model_type"] == "gemma2"
    assert config["attn_logit_softcapping"] == 50.0 and config["final_logit_softcapping"] == 30.0
    assert config["sliding_window"] == 16 and config["query_pre_attn_scalar"] == 8
    assert config["layer_types"] == ["sliding_attention", "full_attention"]

    gemma3 = _base("gemma3")
    config = hf_export.config_dict(gemma3.backbone, gemma3.tokenizer, "bfloat16")
    assert config["architectures"] == ["Gemma3ForCausalLM"]
    assert config["model_type"] == "gemma3_text" and config["torch_dtype"] == "bfloat16"
    assert config["layer_types"] == ["sliding_attention", "sliding_attention"]
    assert config["rope_local_base_freq"] == 10_000.0 and config["rope_theta"] == 1_000_000.0
    assert config["final_logit_softcapping"] is None

    gemma1 = _base("gemma1")
    config = hf_export.config_dict(gemma1.backbone, gemma1.tokenizer)
    assert config["model_type"] == "gemma" and "layer_types" not in config
    assert (config["bos_token_id"], config["eos_token_id"], config["pad_token_id"]) == (2, 1, 0)


def test_hf_state_dict_refuses_unmerged_lora():
    from gemma_tune.export import hf_export

    with pytest.raises(ValueError, match="merge it first"):
        hf_export.state_dict(_tuned("gemma1").backbone)


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

    tokenizer = _tokenizer(architecture)
    hf_export.save_tokenizer(tokenizer, str(tmp_path))
    hf_tokenizer = transformers.AutoTokenizer.from_pretrained(str(tmp_path))
    for text in TEXTS:
        assert hf_tokenizer(text, add_special_tokens=False)["input_ids"] == _ids(tokenizer, text)
    assert hf_tokenizer("the cat")["input_ids"][0] == 2  # <bos> added, as Gemma expects
    for marker in testing.TURN_MARKERS:
        assert hf_tokenizer.convert_tokens_to_ids(marker) == tokenizer.token_to_id(marker)


def test_hf_chat_template_matches_ours(tmp_path):
    transformers = pytest.importorskip("transformers")
    from gemma_tune.data import example
    from gemma_tune.export import hf_export
    from gemma_tune.training import template

    tokenizer = _tokenizer("gemma3")
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


ALL_TARGETS = list(model.LORA_TARGETS)


def _peft_logits(base_dir, adapter_dir, token_ids):
    peft = pytest.importorskip("peft")
    tuned = peft.PeftModel.from_pretrained(_hf_load(base_dir), str(adapter_dir))
    return _hf_logits(tuned.eval(), token_ids)


@pytest.mark.parametrize("architecture,kv_heads", CASES)
def test_peft_adapter_on_the_exported_base_matches_the_tuned_logits(
    tmp_path, architecture, kv_heads
):
    from gemma_tune.export import hf_export, peft_export

    tuned = _tuned(architecture, kv_heads)
    token_ids = _token_ids()
    expected = _keras_logits(tuned, token_ids)
    hf_export.save(_base(architecture, kv_heads), str(tmp_path / "base"))
    peft_export.save(tuned, str(tmp_path / "adapter"), str(tmp_path / "base"))
    logits = _peft_logits(tmp_path / "base", tmp_path / "adapter", token_ids)
    print(f"{architecture} kv={kv_heads}: max |PEFT - Keras| {np.abs(logits - expected).max():.2e}")
    np.testing.assert_allclose(logits, expected, atol=1e-4, rtol=0)


@pytest.mark.parametrize("architecture,kv_heads", [("gemma1", 2), ("gemma3", 1)])
def test_dora_exports_to_hf_and_peft_with_the_tuned_logits(tmp_path, architecture, kv_heads):
    from gemma_tune.export import hf_export, peft_export

    tuned = _tuned(architecture, kv_heads, dora=True)
    token_ids = _token_ids()
    expected = _keras_logits(tuned, token_ids)
    hf_export.save(tuned, str(tmp_path / "merged"))
    merged = _hf_logits(_hf_load(tmp_path / "merged"), token_ids)
    np.testing.assert_allclose(merged, expected, atol=1e-4, rtol=0)
    hf_export.save(_base(architecture, kv_heads), str(tmp_path / "base"))
    peft_export.save(tuned, str(tmp_path / "adapter"), str(tmp_path / "base"))
    config = json.loads((tmp_path / "adapter" / peft_export.CONFIG_FILE).read_text())
    assert config["use_dora"] is True
    logits = _peft_logits(tmp_path / "base", tmp_path / "adapter", token_ids)
    np.testing.assert_allclose(logits, expected, atol=1e-4, rtol=0)


def test_peft_adapter_represents_per_head_lora_exactly():
    from gemma_tune.export import peft_export

    config, tensors = peft_export.adapter(_tuned("gemma1", num_key_value_heads=1, rank=4).backbone)
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

    tuned = _base("gemma3", 1)
    tuned.backbone.enable_lora(3, target_layer_names=ALL_TARGETS)
    rng = np.random.default_rng(3)
    for variable in tuned.causal_lm.trainable_variables:
        variable.assign(rng.normal(0, 0.2, variable.shape).astype(np.float32))
    token_ids = _token_ids()
    expected = _keras_logits(tuned, token_ids)
    hf_export.save(_base("gemma3", 1), str(tmp_path / "base"))
    peft_export.save(tuned, str(tmp_path / "adapter"))
    config = json.loads((tmp_path / "adapter" / peft_export.CONFIG_FILE).read_text())
    assert len(config["target_modules"]) == 7
    logits = _peft_logits(tmp_path / "base", tmp_path / "adapter", token_ids)
    np.testing.assert_allclose(logits, expected, atol=1e-4, rtol=0)
    # The merged export of the same model agrees as well.
    hf_export.save(tuned, str(tmp_path / "merged"))
    merged = _hf_logits(_hf_load(tmp_path / "merged"), token_ids)
    np.testing.assert_allclose(merged, expected, atol=1e-4, rtol=0)


def test_peft_export_refuses_a_model_without_lora(tmp_path):
    from gemma_tune.export import peft_export

    with pytest.raises(ValueError, match="no LoRA layers"):
        peft_export.save(_base("gemma1"), str(tmp_path))


@pytest.fixture(scope="module")
def run_path(tmp_path_factory):
    """A real two-step tiny Gemma 3 run directory."""
    from gemma_tune import config as config_lib
    from gemma_tune import train

    overrides = [
        "model.dtype=float32",
        "lora.rank=2",
        "train.max_steps=2",
        "train.batch_size=2",
        "train.eval_batches=1",
        "samples.count=0",
        "samples.max_new_tokens=2",
        "train.eval_at_start=False",
        "eval.limit=0",
    ]
    config = config_lib.load("tiny:gemma3", overrides)
    return train.run(config, str(tmp_path_factory.mktemp("export_cli") / "run"))


def test_cli_exports_hf_and_peft_that_reproduce_the_run(run_path, tmp_path):
    import subprocess
    import sys

    from gemma_tune.export import exporter
    from gemma_tune.runs import tuned_run

    tuned = tuned_run.load_tuned(run_path, "float32")
    token_ids = _token_ids()
    expected = _keras_logits(tuned.loaded, token_ids)
    out = tmp_path / "hf"
    result = subprocess.run(
        [sys.executable, "-m", "gemma_tune.export", f"--run={run_path}", "--to=hf", f"--out={out}"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.strip().splitlines()
    assert lines[-2] == f"Exported to {out}"
    assert "AutoModelForCausalLM.from_pretrained" in lines[-1]
    assert "LoRA rank 2 merged" in result.stdout
    np.testing.assert_allclose(_hf_logits(_hf_load(out), token_ids), expected, atol=1e-4, rtol=0)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging left

    exporter.export(run_path, "hf", str(tmp_path / "base"), base_only=True)
    exporter.export(run_path, "peft", str(tmp_path / "adapter"), base_model=str(tmp_path / "base"))
    base_logits = _hf_logits(_hf_load(tmp_path / "base"), token_ids)
    assert np.abs(base_logits - expected).max() > 1e-3  # two steps of training changed the model
    logits = _peft_logits(tmp_path / "base", tmp_path / "adapter", token_ids)
    np.testing.assert_allclose(logits, expected, atol=1e-4, rtol=0)


def test_cli_keras_export_loads_with_model_load(run_path, tmp_path):
    from gemma_tune.export import exporter
    from gemma_tune.runs import tuned_run

    expected = _keras_logits(tuned_run.load_tuned(run_path, "float32").loaded, _token_ids())
    exporter.export(run_path, "keras", str(tmp_path / "keras"))
    reloaded = model.load(str(tmp_path / "keras"), "float32")
    np.testing.assert_allclose(_keras_logits(reloaded, _token_ids()), expected, atol=2e-5, rtol=0)


def test_cli_refuses_a_non_empty_out_unless_overwrite(run_path, tmp_path):
    from gemma_tune.export import exporter

    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="not empty; pass --overwrite"):
        exporter.export(run_path, "peft", str(out))
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    exporter.export(run_path, "peft", str(out), overwrite=True)
    assert sorted(p.name for p in out.iterdir()) == [
        "adapter_config.json",
        "adapter_model.safetensors",
    ]
    assert [p.name for p in tmp_path.iterdir()] == ["out"]  # nothing left beside it


def test_cli_refuses_options_that_make_no_sense(run_path, tmp_path):
    from gemma_tune.export import exporter

    with pytest.raises(ValueError, match="--base_only"):
        exporter.export(run_path, "peft", str(tmp_path / "a"), base_only=True)
    with pytest.raises(ValueError, match="float32"):
        exporter.export(run_path, "peft", str(tmp_path / "a"), dtype="bfloat16")
    with pytest.raises(FileNotFoundError, match="not a run directory"):
        exporter.export(str(tmp_path), "hf", str(tmp_path / "a"))
    assert not (tmp_path / "a").exists()


def test_a_failed_export_leaves_out_untouched(tmp_path):
    from gemma_tune.export import exporter

    out = tmp_path / "out"
    out.mkdir()
    (out / "old.txt").write_text("previous export")

    def fail(directory):
        (tmp_path / "seen").write_text(directory)
        open(f"{directory}/half.bin", "w").close()
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        exporter.write_atomically(str(out), fail)
    assert [p.name for p in out.iterdir()] == ["old.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "seen"]
