"""Gemma 4 specifics: the MLP that reads its kernels directly (DoRA, QLoRA and dropout there),
projections some blocks lack, positions that restart per packed example, the system turn, and
text-only models only.

The tests parametrised over `testing.ARCHITECTURES` (generation, packing, training, families,
keras_compat) cover Gemma 4 dense and MoE too.
"""

import numpy as np
import pytest

from gemma_tune import model
from gemma_tune.data import example as ex
from gemma_tune.export import merge
from gemma_tune.model import families, quantize
from gemma_tune.training import packing, template

MLP = ("ffw_gating", "ffw_gating_2", "ffw_linear")


def _ids():
    rng = np.random.default_rng(7)
    ids = rng.integers(6, 320, (2, 24)).astype(np.int32)
    ids[:, 0] = 2  # <bos>
    return ids


def _logits(loaded, token_ids):
    inputs = loaded.family.backbone_inputs(token_ids, np.ones_like(token_ids, bool))
    return np.asarray(loaded.causal_lm(inputs))


def _randomize_adapters(loaded, seed=1):
    rng = np.random.default_rng(seed)
    for variable in loaded.causal_lm.trainable_variables:
        if not variable.path.endswith("lora_magnitude"):
            variable.assign(rng.normal(0, 0.2, variable.shape).astype(np.float32))


def _mlp_layers(loaded):
    return [
        getattr(block, name)
        for block in loaded.backbone.transformer_layers
        for name in ("gating_ffw", "gating_ffw_2", "ffw_linear")
    ]


@pytest.mark.parametrize("architecture", ["gemma4", "gemma4_moe"])
def test_dora_on_the_mlp_follows_its_magnitude_and_equals_the_merged_model(architecture):
    loaded = model.load(f"tiny:{architecture}", "float32")
    model.enable_lora(loaded, 4, targets=["mlp"], dora=True)
    _randomize_adapters(loaded)
    token_ids = _ids()
    before = _logits(loaded, token_ids)
    for layer in _mlp_layers(loaded):
        magnitude = np.asarray(layer.lora_magnitude.numpy())
        layer.lora_magnitude.assign(magnitude * np.linspace(0.5, 1.5, magnitude.size))
    after = _logits(loaded, token_ids)
    # The block multiplies by `kernel` itself: before the adapted kernel carried DoRA's
    # rescaling, the magnitude changed nothing here (exactly 0.0).
    assert np.abs(after - before).max() > 0.1
    merged = merge.merge_lora(loaded)
    np.testing.assert_allclose(_logits(merged, token_ids), after, atol=2e-5, rtol=0)


@pytest.mark.parametrize(
    "targets, mode",
    [
        # 10-26 s each: in the slow suite, which CI runs too (the DoRA test above covers the
        # kernel-read MLP by default).
        pytest.param(["mlp"], "int4", marks=pytest.mark.slow),
        pytest.param(["mlp"], "int8", marks=pytest.mark.slow),
        pytest.param(["query"], "int4", marks=pytest.mark.slow),
        pytest.param(["query"], "int8", marks=pytest.mark.slow),
    ],
)
def test_qlora_computes_what_the_dequantized_float_model_computes(targets, mode):
    loaded = model.load("tiny:gemma4", "float32")
    float_logits = _logits(loaded, _ids())
    quantize.quantize(loaded.backbone, mode)
    model.enable_lora(loaded, 4, targets=targets, dora=True)
    _randomize_adapters(loaded)
    token_ids = _ids()
    tuned = _logits(loaded, token_ids)
    # `merge_lora` dequantizes every kernel and folds the adapters in: a float model. With
    # ["query"] the MLP is quantized but not adapted, and must still read dequantized kernels.
    merged = merge.merge_lora(loaded)
    np.testing.assert_allclose(_logits(merged, token_ids), tuned, atol=5e-5, rtol=0)
    assert np.abs(tuned - float_logits).max() > 0.1  # the adapters do change the model


def test_lora_dropout_on_the_kernel_read_mlp_is_refused_naming_the_targets():
    loaded = model.load("tiny:gemma4", "float32")
    with pytest.raises(ValueError, match=r"lora.dropout=0.1 cannot apply to ffw_gating, .*Gemma 4"):
        model.enable_lora(loaded, 4, targets=["all"], dropout=0.1)
    # Refused before any layer was adapted.
    assert not any("lora" in v.path for v in loaded.causal_lm.weights)
    model.enable_lora(loaded, 4, targets=["attention"], dropout=0.1)  # called layers: fine


def test_projections_some_blocks_lack_are_counted_in_the_log(capsys):
    loaded = model.load("tiny:gemma4", "float32")
    model.enable_lora(loaded, 2, targets=["attention"])
    out = capsys.readouterr().out
    # Blocks 2 and 3 are KV-shared (no key, no value); blocks 1 and 3 are global with K=V.
    assert "2 of 4 decoder blocks of this Gemma 4 model have no 'key' layer" in out
    assert "adapted in the other 2" in out
    assert "3 of 4 decoder blocks of this Gemma 4 model have no 'value' layer" in out
    assert "'query'" not in out


def test_packed_positions_restart_with_every_example():
    segment_ids = np.array([[1, 1, 1, 2, 2, 3, 0, 0], [1, 1, 1, 1, 1, 1, 1, 1]], np.int32)
    positions = np.asarray(packing.positions(segment_ids))
    assert positions.tolist() == [[0, 1, 2, 0, 1, 0, 0, 1], list(range(8))]
    assert packing.positions(None) is None


def test_a_system_prompt_is_its_own_turn_without_loss():
    loaded = model.load("tiny:gemma4", "float32")
    chat_template = template.ChatTemplate(loaded.tokenizer)
    item = ex.Example(
        turns=(ex.Turn(ex.USER, "Hi"), ex.Turn(ex.MODEL, "Hello.")), system=" Be brief. "
    )
    assert chat_template.prompt_text(item) == (
        "<|turn>system\nBe brief.<turn|>\n<|turn>user\nHi<turn|>\n<|turn>model\n"
    )
    encoded = chat_template.encode(item, 64)
    trained = encoded.token_ids[encoded.target_weights > 0]
    assert chat_template.decode(trained) == "Hello."
    assert chat_template.stop_token_ids[0] == loaded.tokenizer.token_to_id("<turn|>")


def test_the_hf_chat_template_writes_what_we_train_on():
    jinja2 = pytest.importorskip("jinja2")
    loaded = model.load("tiny:gemma4", "float32")
    chat_template = template.ChatTemplate(loaded.tokenizer)
    item = ex.Example(
        turns=(ex.Turn(ex.USER, "Hi"), ex.Turn(ex.MODEL, "Hello.")), system=" Be brief. "
    )
    messages = [{"role": "system", "content": " Be brief. "}, {"role": "user", "content": "Hi"}]
    rendered = (
        jinja2.Environment()
        .from_string(loaded.family.hf_chat_template)
        .render(messages=messages, bos_token="", add_generation_prompt=True)
    )
    assert rendered == chat_template.prompt_text(item)


def test_a_gemma4_with_an_audio_encoder_is_refused():
    loaded = model.load("tiny:gemma4", "float32")
    backbone = loaded.backbone
    backbone.audio_encoder = object()  # stands for an encoder: only its presence matters
    try:
        with pytest.raises(ValueError, match="Gemma 4 with an audio encoder is not supported"):
            families.of_backbone(backbone)
    finally:
        backbone.audio_encoder = None
    assert families.of_backbone(backbone) is families.by_name("gemma4")


def test_peft_export_of_gemma4_gives_k_eq_v_layers_their_own_key_rank():
    from gemma_tune.export import peft_export

    loaded = model.load("tiny:gemma4", "float32")
    model.enable_lora(loaded, 2, targets=["query", "key"], layout="per_head")
    config, tensors = peft_export.adapter(loaded.backbone)
    # Sliding layer 0 has 2 key heads (PEFT rank 2 x 2); global K=V layer 1 has one (rank 2);
    # layers 2 and 3 share keys and values and have no key projection at all.
    assert tensors["base_model.model.model.layers.0.self_attn.k_proj.lora_A.weight"].shape[0] == 4
    assert tensors["base_model.model.model.layers.1.self_attn.k_proj.lora_A.weight"].shape[0] == 2
    assert not any("layers.2.self_attn.k_proj" in name for name in tensors)
    assert config["r"] == 8  # q_proj: 4 heads x rank 2
    assert config["rank_pattern"] == {
        r"model\.layers\.0\.self_attn\.k_proj": 4,
        r"model\.layers\.1\.self_attn\.k_proj": 2,
    }


# ~40 s each (a subprocess run of the tiny experiment, base and tuned samples): slow suite.
@pytest.mark.slow
@pytest.mark.parametrize(
    "architecture,overrides",
    [("gemma4", []), ("gemma4_moe", ["train.packing=true"])],
    ids=["dense", "moe-packed"],
)
def test_the_tiny_experiment_trains_gemma4_from_the_command_line(tmp_path, architecture, overrides):
    import json
    import subprocess
    import sys

    run_path = tmp_path / "run"
    sets = [arg for override in overrides for arg in ("--set", override)]
    command = [
        sys.executable,
        "-m",
        "gemma_tune.train",
        "--experiment=tiny",
        f"--workdir={run_path}",
    ]
    result = subprocess.run(
        [*command, "--set", f"model.preset=tiny:{architecture}", *sets],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    records = [json.loads(line) for line in (run_path / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in records if "loss" in r]
    assert np.mean(losses[-3:]) < 0.7 * np.mean(losses[:3]), losses
    config = json.loads((run_path / "config.json").read_text())
    assert config["model"]["preset"] == f"tiny:{architecture}"
    assert config["train"]["packing"] == ("train.packing=true" in overrides)
    assert (run_path / "report.html").exists() and (run_path / "adapter" / "adapter.npz").exists()
