"""LoRA options: target projections by name or group, alpha scaling, and adapters that
remember both."""

import json

import numpy as np
import pytest

from gemma_tune import model
from gemma_tune.model import adapters, keras_compat
from gemma_tune.runs import tuned_run


def test_targets_expand_groups_and_refuse_unknown_names():
    assert model.lora_target_names(None) == ["query", "value"]
    assert model.lora_target_names(["attention"]) == [
        "query",
        "key",
        "value",
        "attention_output",
    ]
    assert model.lora_target_names(["ffw_linear", "query"]) == ["query", "ffw_linear"]
    assert model.lora_target_names(["all"]) == list(model.LORA_TARGETS)
    with pytest.raises(ValueError, match="unknown target 'q_proj'.*ffw_gating"):
        model.lora_target_names(["q_proj"])


def _lora_paths(loaded):
    return sorted(v.path for v in loaded.causal_lm.trainable_variables)


def test_every_target_gets_factors_and_nothing_else_trains(architecture):
    loaded = model.load(f"tiny:{architecture}", "float32")
    model.enable_lora(loaded, 2, targets=["all"])
    paths = _lora_paths(loaded)
    assert all("lora_kernel" in path for path in paths)
    layer_names = [layer.name for layer in keras_compat.all_layers(loaded.backbone)]
    for target in ("query", "key", "value", "attention_output", "ffw_gating", "ffw_linear"):
        # Every block has each projection, but Gemma 4's KV-shared and K=V blocks lack some.
        present = layer_names.count(target)
        assert present == 2 or (architecture.startswith("gemma4") and present > 0), target
        assert sum(f"/{target}/" in path for path in paths) == present * 2, target  # A and B
    default = model.load(f"tiny:{architecture}", "float32")
    model.enable_lora(default, 2)
    assert {path.split("/")[-2] for path in _lora_paths(default)} == {"query", "value"}


def _logits(loaded):
    ids = np.array([[2, 10, 20, 30, 40, 50, 60, 70]], np.int32)
    return np.asarray(loaded.causal_lm({"token_ids": ids, "padding_mask": np.ones_like(ids, bool)}))


def test_alpha_scales_the_update():
    base = _logits(model.load("tiny:gemma3", "float32"))
    deltas = {}
    for alpha in (4.0, 8.0):
        loaded = model.load("tiny:gemma3", "float32")
        model.enable_lora(loaded, 4, alpha=alpha, targets=["ffw_linear"])
        rng = np.random.default_rng(0)
        for variable in loaded.causal_lm.trainable_variables:
            variable.assign(rng.normal(0, 1e-2, variable.shape).astype(np.float32))
        deltas[alpha] = _logits(loaded) - base
    # The update is small, so the logits move almost linearly in it: alpha 8 moves them twice
    # as far (measured: within 0.3% of the largest change; alpha ignored would be off by 50%).
    scale = np.abs(deltas[4.0]).max()
    assert scale > 1e-3
    assert np.abs(deltas[8.0] - 2 * deltas[4.0]).max() < 0.02 * scale


def test_an_adapter_remembers_rank_alpha_and_targets(tmp_path):
    tuned = model.load("tiny:gemma2", "float32")
    model.enable_lora(tuned, 3, alpha=12.0, targets=["attention", "ffw_gating"])
    rng = np.random.default_rng(1)
    for variable in tuned.causal_lm.trainable_variables:
        variable.assign(rng.normal(0, 0.05, variable.shape).astype(np.float32))
    metadata = {"base_preset": "tiny:gemma2", **adapters.lora_settings(tuned.causal_lm)}
    adapters.save(tuned.causal_lm, str(tmp_path), metadata)
    saved = json.loads((tmp_path / adapters.METADATA_FILE).read_text())
    assert saved["rank"] == 3 and saved["alpha"] == 12.0
    assert saved["targets"] == ["attention_output", "ffw_gating", "key", "query", "value"]

    rebuilt = tuned_run.load_base("tiny:gemma2", str(tmp_path), "float32")
    adapters.load(rebuilt.causal_lm, str(tmp_path))
    np.testing.assert_allclose(_logits(rebuilt), _logits(tuned), rtol=1e-6, atol=1e-6)


def test_the_layout_is_described_and_an_unknown_one_refused():
    from gemma_tune import config as config_lib

    assert model.describe_tuning(config_lib.load("tiny", ["lora.layout=per_head"])) == (
        "LoRA rank 8 on query, value, per_head layout"
    )
    assert "layout" not in model.describe_tuning(config_lib.load("tiny", []))
    # A run whose config predates lora.layout was per_head, and is described (and loaded) so.
    legacy = config_lib.load("tiny", [])
    with legacy.unlocked():
        del legacy.lora["layout"]
    assert model.describe_tuning(legacy).endswith("per_head layout")
    with pytest.raises(ValueError, match="lora.layout: unknown 'sideways'; choose from per_head"):
        model.enable_lora(model.load("tiny:gemma1", "float32"), 2, layout="sideways")


def test_an_adapter_in_another_layout_is_refused_before_loading(tmp_path):
    from gemma_tune.model import prepare

    tuned = model.load("tiny:gemma2", "float32")
    model.enable_lora(tuned, 2, layout="per_head")
    metadata = {"base_preset": "tiny:gemma2", **adapters.lora_settings(tuned.causal_lm)}
    adapters.save(tuned.causal_lm, str(tmp_path), metadata)
    with pytest.raises(ValueError, match="'per_head' layout and this run asks for 'peft'"):
        prepare.prepare(
            "tiny:gemma2", prepare.Tuning(rank=2, layout="peft"), adapter_dir=str(tmp_path)
        )
    rebuilt = prepare.prepare(
        "tiny:gemma2", prepare.Tuning(rank=2, layout="per_head"), adapter_dir=str(tmp_path)
    )
    assert rebuilt.adapter_metadata["layout"] == "per_head"
