"""Data and model parallel training on 8 fake CPU devices gives the single-device losses.

Each case runs in a subprocess, because the fake devices must be configured before JAX starts
(`XLA_FLAGS=--xla_force_host_platform_device_count=8`).
"""

import json
import os
import subprocess
import sys
import textwrap

import pytest

from gemma_tune.training import sharding

CASES = [
    ("gemma1", 2, 4, 2),  # 4 query heads, 2 kv heads: kv heads do not divide the model axis
    ("gemma1", 1, 8, 1),  # one kv head (multi-query attention), pure model parallel
    ("gemma2", 8, 1, 2),  # pure data parallel
    ("gemma3", 2, 4, 2),  # Gemma 3: KerasHub has no layout for it
]
# Gemma 4 (position ids, KV-shared layers, per-layer inputs; 3-D expert weights in the MoE)
# ~2 minutes together, in the slow suite, which CI runs too.
# LoRA factors in PEFT's layout (lora.layout=peft; ~1 minute): slow suite as well.
SLOW_CASES = [
    ("gemma4", 2, 4, 2),
    ("gemma4_moe", 2, 4, 2),
    ("gemma3-peft", 2, 4, 2),
]

# Trains each case twice in one process with 8 fake devices: without a mesh (everything on one
# device) and on the case's mesh, printing both runs' losses as JSON.
_TRAIN = textwrap.dedent(
    """
    import json, sys
    import jax
    import keras
    from gemma_tune import config, model, testing
    from gemma_tune.training import batching, loop, optimizer, sharding, template
    from gemma_tune.training import trainer
    from gemma_tune.data import example

    sharding.MIN_SHARDED_SIZE = 0  # tiny weights are small: split them all, to test the layout
    settings = ["train.batch_size=8", "train.eval_batch_size=8", "train.learning_rate=0.03",
                "train.max_steps=4", "train.log_every=1", "sequence_length=64"]

    def fit(case, kv_heads, mesh):
        architecture, _, layout = case.partition("-")
        cfg = config.load(f"tiny:{architecture}", settings)
        tokenizer = testing.tiny_tokenizer(architecture)
        backbone = testing.tiny_backbone(
            architecture, tokenizer.vocabulary_size(), seed=0, num_key_value_heads=kv_heads
        )
        loaded = model.LoadedModel(model.causal_lm_for(backbone), tokenizer, architecture)
        keras.utils.set_random_seed(0)
        model.enable_lora(loaded, 4, layout=layout or "per_head")
        chat = template.ChatTemplate(tokenizer)
        turns = [
            (example.Turn("user", row["instruction"]), example.Turn("model", row["response"]))
            for row in testing.tiny_conversations(32)
        ]
        encoded = [chat.encode(example.Example(turns=pair), 64) for pair in turns]
        tuner = trainer.Trainer(
            loaded.causal_lm, optimizer.make(cfg.train, 4), 1.0,
            max_targets_per_row=batching.max_targets_per_row(encoded), mesh=mesh,
        )
        records = []
        loop.fit(tuner, encoded[:24], encoded[24:], cfg, chat.pad_id, records.append)
        return {
            "losses": [r["loss"] for r in records if "loss" in r],
            "val": [r["val_loss"] for r in records if "val_loss" in r],
            "layouts": sorted({str(getattr(a.sharding, "spec", "")) for a in tuner.frozen}),
            "lora_layouts": sorted(
                {str(getattr(a.sharding, "spec", "")) for a in tuner.trainable}
            ),
        }

    results = {"devices": len(jax.devices())}
    for architecture, data, model_parallel, kv_heads in json.loads(sys.argv[1]):
        key = f"{architecture}-{data}-{model_parallel}-{kv_heads}"
        results[key] = {
            "single": fit(architecture, kv_heads, None),
            "sharded": fit(architecture, kv_heads, sharding.make_mesh(data, model_parallel)),
        }
    print(json.dumps(results))
    """
)


def _train(cases) -> dict:
    """Runs `_TRAIN` on `cases` with 8 fake CPU devices; returns its JSON results."""
    env = dict(os.environ)
    env["XLA_FLAGS"] = "--xla_force_host_platform_device_count=8"
    env["JAX_PLATFORMS"] = "cpu"
    result = subprocess.run(
        [sys.executable, "-c", _TRAIN, json.dumps(cases)],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def results():
    return _train(CASES)


@pytest.fixture(scope="module")
def slow_results():
    return _train(SLOW_CASES)


@pytest.mark.slow  # >15 s on a 2-core AVX2 CPU: slow suite (CI runs it)
@pytest.mark.parametrize("architecture, data, model_parallel, kv_heads", CASES)
def test_sharded_training_matches_one_device(results, architecture, data, model_parallel, kv_heads):
    _check_case(results, architecture, data, model_parallel, kv_heads)


@pytest.mark.slow
@pytest.mark.parametrize("architecture, data, model_parallel, kv_heads", SLOW_CASES)
def test_sharded_gemma4_and_peft_layout_training_matches_one_device(
    slow_results, architecture, data, model_parallel, kv_heads
):
    _check_case(slow_results, architecture, data, model_parallel, kv_heads)


def _check_case(results, architecture, data, model_parallel, kv_heads) -> None:
    """The sharded run's losses equal the single-device run's, and weights were split."""
    assert results["devices"] == 8
    case = results[f"{architecture}-{data}-{model_parallel}-{kv_heads}"]
    single, sharded = case["single"], case["sharded"]
    assert single["layouts"] == [""]  # no mesh: plain single-device arrays
    assert len(sharded["losses"]) == len(single["losses"]) == 4
    assert sharded["losses"] == pytest.approx(single["losses"], rel=2e-5)
    assert sharded["val"] == pytest.approx(single["val"], rel=2e-5)
    assert single["losses"][-1] < single["losses"][0]
    if model_parallel > 1:
        assert any("model" in layout for layout in sharded["layouts"])
        assert any("model" in layout for layout in sharded["lora_layouts"])


def test_layout_rule_splits_large_weights_on_a_dimension_the_axis_divides():
    assert sharding.weight_spec((256_000, 2048), 4) == sharding.PartitionSpec("model", None)
    # (kv heads, hidden, head dim) with one kv head: split the hidden dimension.
    assert sharding.weight_spec((1, 2048, 256), 8) == sharding.PartitionSpec(None, "model", None)
    assert sharding.weight_spec((65536, 3), 8) == sharding.PartitionSpec("model", None)
    assert sharding.weight_spec((2048,), 8) == sharding.PartitionSpec()  # small: replicated
    assert sharding.weight_spec((999, 997), 8) == sharding.PartitionSpec()  # nothing divides


def test_a_mesh_that_does_not_fit_is_refused_with_the_fix():
    with pytest.raises(sharding.MeshError, match="at most the 1 available devices"):
        sharding.make_mesh(2, 1)
    assert sharding.make_mesh(-1, 1) is None and sharding.make_mesh(1, 1) is None
