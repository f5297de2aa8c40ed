"""LoRA on the vision tower (`lora.vision_targets`, `model.vision_lora`) of
`tiny:gemma3_vision`: exactly the chosen encoder layers get trainable adapters, bad settings
are refused naming the option, merging (what `--to=hf` and `--to=keras` write) folds the
adapters in, `--to=peft` refuses them, and a run trains, saves, rebuilds and resumes exactly
with them. The `--to=hf` logits check with vision adapters is `tests/export_vision_test.py`."""

import json
import os
import shutil

import ml_collections
import numpy as np
import pytest

from gemma_tune import config as config_lib
from gemma_tune import model, train
from gemma_tune.bundled import make_vision_data
from gemma_tune.data import sources
from gemma_tune.export import exporter, hub, merge, peft_export
from gemma_tune.model import adapters, tuning, vision, vision_lora
from gemma_tune.runs import tuned_run
from gemma_tune.training import batching, template

ENCODER_LAYERS = {
    "attention": {"query_proj", "key_proj", "value_proj", "out_proj"},
    "projector": {"vision_input_projection"},
}


def settings(vision_targets, method="lora", dropout=0.0):
    return ml_collections.ConfigDict(
        {"rank": 4, "alpha": 0.0, "targets": ["query", "value"], "dropout": dropout,
         "layout": "peft", "vision_targets": list(vision_targets)}
    )  # fmt: skip


def tuned(vision_targets, method="lora", dropout=0.0):
    loaded = model.load("tiny:gemma3_vision", dtype="float32")
    tuning.enable_tuning(loaded, method, settings(vision_targets, method, dropout))
    return loaded


@pytest.mark.parametrize(
    "vision_targets", [["attention"], ["projector"], ["attention", "projector"]]
)
def test_the_chosen_encoder_layers_and_only_those_get_trainable_adapters(vision_targets):
    loaded = tuned(vision_targets)
    encoder = vision.encoder_of(loaded.backbone)
    encoder_paths = {w.path for w in encoder.weights}
    trainable = {v.path for v in loaded.backbone.trainable_variables}
    in_encoder = trainable & encoder_paths
    expected_layers = set().union(*(ENCODER_LAYERS[t] for t in vision_targets))
    assert {path.split("/")[-2] for path in in_encoder} == expected_layers
    assert {path.split("/")[-1] for path in in_encoder} == {"lora_kernel_a", "lora_kernel_b"}
    assert trainable - in_encoder  # the language model's adapters too
    assert all("lora_kernel" in path for path in trainable)
    assert vision_lora.targets_of(loaded.backbone) == vision_targets
    metadata = adapters.lora_settings(loaded.causal_lm)
    assert metadata["vision_targets"] == vision_targets
    assert metadata["targets"] == ["query", "value"]
    # A fresh adapter is the base model: B starts at zero.
    assert all(
        not np.asarray(v.numpy()).any()
        for v in loaded.backbone.trainable_variables
        if v.path in in_encoder and v.path.endswith("lora_kernel_b")
    )


def test_without_vision_targets_the_encoder_has_no_adapter():
    loaded = tuned([])
    assert vision_lora.targets_of(loaded.backbone) == []
    assert "vision_targets" not in adapters.lora_settings(loaded.causal_lm)


def test_bad_vision_target_settings_are_refused_naming_the_option(capsys):
    text_only = model.load("tiny:gemma3", dtype="float32")
    with pytest.raises(
        ValueError, match=r"lora.vision_targets=\['attention'\]: tiny:gemma3 has no"
    ):
        tuning.enable_tuning(text_only, "lora", settings(["attention"]))
    with pytest.raises(ValueError, match="lora.vision_targets applies to method=lora"):
        tuned(["projector"], method="full")
    with pytest.raises(ValueError, match="DoRA on the vision tower is not supported"):
        tuned(["attention"], method="dora")
    with pytest.raises(ValueError, match=r"lora.vision_targets=\['mlp'\]: must be a list of any"):
        config_lib.load("tiny_vision", ['lora.vision_targets=["mlp"]'])
    config = config_lib.load("tiny_vision", ["method=dora", 'lora.vision_targets=["attention"]'])
    with pytest.raises(ValueError, match="DoRA on the vision tower"):
        tuning.check_tuning(config)
    tuned(["attention"], dropout=0.1)  # dropout acts on the language model's adapters only
    assert "the vision tower's take no dropout (skipped there)" in capsys.readouterr().out


def _randomize(loaded):
    rng = np.random.default_rng(3)
    for variable in loaded.causal_lm.trainable_variables:
        variable.assign(rng.normal(0, 0.2, variable.shape).astype(np.float32))


def _image_batch(loaded):
    path = os.path.join(make_vision_data.OUTPUT, "train.jsonl")
    rows = sources.read_file(path, images=True).examples[:2]
    chat = template.ChatTemplate(loaded.tokenizer, False, vision.image_inputs(loaded))
    return batching.pack([chat.encode(row, 96) for row in rows], 96, 0, 2)


def _logits(loaded, batch):
    inputs = loaded.family.backbone_inputs(batch["token_ids"], batch["padding_mask"])
    inputs.update(vision.backbone_inputs(loaded.backbone, batch))
    return np.asarray(loaded.causal_lm(inputs))


def test_merging_folds_the_vision_adapters_in_and_peft_refuses_them():
    loaded = tuned(["attention", "projector"])
    _randomize(loaded)
    batch = _image_batch(loaded)
    expected = _logits(loaded, batch)
    merged = merge.merge_lora(loaded)  # what --to=hf and --to=keras write
    assert not merge.has_lora(merged.backbone)
    np.testing.assert_allclose(_logits(merged, batch), expected, atol=1e-4, rtol=0)
    # Without the vision adapters the logits differ: they were folded in, not dropped.
    plain = model.load("tiny:gemma3_vision", dtype="float32")
    model.enable_lora(plain, 4, targets=["query", "value"])
    language = {v.path: v for v in loaded.causal_lm.trainable_variables}
    for variable in plain.causal_lm.trainable_variables:
        variable.assign(language[variable.path].numpy())
    assert np.abs(_logits(plain, batch) - expected).max() > 1e-3
    with pytest.raises(ValueError, match=r"--to=peft: this run has LoRA on the vision tower"):
        peft_export.adapter(loaded.backbone)


SETTINGS = [
    'lora.vision_targets=["attention", "projector"]',
    "train.epochs=1",
    "train.max_steps=6",
    "train.checkpoint_every=3",
    "train.keep_checkpoints=3",
    "train.log_every=1",
    "train.eval_every=0",
    "train.eval_at_start=false",
    "train.eval_batches=1",
    "eval.limit=0",
    "samples.count=0",
]


def _losses(path):
    with open(os.path.join(path, "metrics.jsonl")) as f:
        return [json.loads(line)["loss"] for line in f if '"loss"' in line]


@pytest.mark.slow  # ~60 s on 2 shared CPU cores: two short runs and a rebuild
def test_a_run_with_vision_adapters_trains_rebuilds_and_resumes_exactly(tmp_path):
    finished = str(tmp_path / "finished")
    train.run(config_lib.load("tiny_vision", SETTINGS), finished)
    losses = _losses(finished)
    assert len(losses) == 6 and losses[-1] < losses[0]

    # The state a crash after step 4 leaves: checkpoint 3, no result, no adapter.
    crashed = str(tmp_path / "crashed")
    shutil.copytree(finished, crashed)
    os.remove(os.path.join(crashed, "result.json"))
    shutil.rmtree(os.path.join(crashed, "adapter"))
    shutil.rmtree(os.path.join(crashed, "checkpoints", "step-000006"))
    train.run(config_lib.load("tiny_vision", SETTINGS), crashed)
    np.testing.assert_allclose(_losses(crashed), losses, rtol=1e-6)
    with np.load(os.path.join(finished, "adapter", "adapter.npz")) as a:
        with np.load(os.path.join(crashed, "adapter", "adapter.npz")) as b:
            assert sorted(a.files) == sorted(b.files)
            assert any("vision_input_projection/lora_kernel_b" in name for name in a.files)
            for name in a.files:
                np.testing.assert_allclose(b[name], a[name], rtol=1e-6, atol=1e-7)

    out = str(tmp_path / "peft")
    with pytest.raises(ValueError, match=r"--to=peft: .*lora.vision_targets=attention,projector"):
        exporter.export(finished, "peft", out)
    assert not os.path.exists(out)
    card = hub.model_card(finished, "hf", "org/name")
    assert "on query, value and the vision tower's attention, projector" in card

    rebuilt = tuned_run.load_tuned(finished, "float32")
    assert rebuilt.adapter_metadata["vision_targets"] == ["attention", "projector"]
    assert vision_lora.targets_of(rebuilt.loaded.backbone) == ["attention", "projector"]
    # The rebuilt model carries the trained adapters, the vision tower's included.
    with np.load(os.path.join(finished, "adapter", "adapter.npz")) as saved:
        variables = {v.path: v for v in rebuilt.loaded.causal_lm.trainable_variables}
        assert sorted(variables) == sorted(saved.files)
        for name in saved.files:
            np.testing.assert_array_equal(np.asarray(variables[name].numpy()), saved[name])
