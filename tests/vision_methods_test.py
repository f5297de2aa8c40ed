"""Every tuning method on image rows of `tiny:gemma3_vision` (DoRA, QLoRA int8 and int4, full
fine-tuning; DoRA, QLoRA int4 and full on `tiny:gemma4_vision` too), the vision encoder frozen
and float in each, and LoRA (on the language model and
the vision tower) on a CPU mesh matching one device. Exact resume on image rows:
`tests/vision_run_test.py` and `tests/vision_lora_test.py`."""

import json
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest

from gemma_tune.bundled import make_vision_data
from gemma_tune.data import example, sources
from gemma_tune.model import prepare, quantize, vision
from gemma_tune.training import batching, template, trainer

LENGTH = 96
TRAIN = os.path.join(make_vision_data.OUTPUT, "train.jsonl")


def _rows(count):
    return sources.read_file(TRAIN, images=True).examples[:count]


# Rows of the bundled image questions fit 96 tokens with Gemma 3's 16 image tokens, 128 with
# Gemma 4's 64.
LENGTHS = {"gemma3_vision": LENGTH, "gemma4_vision": 128}


@pytest.mark.slow  # 15-35 s each on 2 shared CPU cores: two compiled train steps
@pytest.mark.parametrize(
    "architecture, method, base, learning_rate",
    [
        ("gemma3_vision", "dora", "none", 3e-2),
        ("gemma3_vision", "lora", "int8", 3e-2),
        ("gemma3_vision", "lora", "int4", 3e-2),
        ("gemma3_vision", "full", "none", 1e-2),
        ("gemma4_vision", "dora", "none", 3e-2),
        ("gemma4_vision", "lora", "int4", 3e-2),
        ("gemma4_vision", "full", "none", 1e-2),
    ],
)
def test_each_method_trains_on_image_and_text_rows_and_leaves_the_encoder_as_it_was(
    architecture, method, base, learning_rate
):
    settings = prepare.Tuning(method=method, rank=4, quantize=base)
    loaded = prepare.prepare(f"tiny:{architecture}", settings, dtype="float32").loaded
    length = LENGTHS[architecture]
    assert quantize.mode_of(loaded.backbone) == base
    encoder = vision.encoder_of(loaded.backbone)
    # QLoRA quantizes the language model only: the encoder's layers keep float kernels.
    assert all(
        getattr(layer, "quantization_mode", None) is None for layer in encoder._flatten_layers()
    )
    before = [np.array(w.value) for w in encoder.weights]
    trainable = {v.path: np.array(v.value) for v in loaded.backbone.trainable_variables}
    assert trainable and not set(trainable) & {w.path for w in encoder.weights}

    text_row = example.Example(
        turns=(example.Turn(example.USER, "What color is the sky?"),
               example.Turn(example.MODEL, "Answer: blue")),
    )  # fmt: skip
    chat = template.ChatTemplate(loaded.tokenizer, False, vision.image_inputs(loaded))
    encoded = [chat.encode(row, length) for row in [*_rows(3), text_row]]
    assert not any(item.truncated for item in encoded)
    tuner = trainer.Trainer(loaded.causal_lm, keras.optimizers.AdamW(learning_rate))
    mixed = batching.train_batch(encoded, np.arange(4), 0, 4, 1, length, 0)
    text_only = {k: v[None] for k, v in batching.pack([encoded[3]], length, 0, 1).items()}
    assert vision.VISION_INDICES in mixed and vision.VISION_INDICES not in text_only
    losses = []
    for _ in range(3):
        losses.append(tuner.train_step(mixed)["loss"])
        losses.append(tuner.train_step(text_only)["loss"])
    assert np.isfinite(losses).all() and losses[-2] < losses[0] and losses[-1] < losses[1]
    tuner.sync_to_model()
    for weight, value in zip(encoder.weights, before, strict=True):
        np.testing.assert_array_equal(np.array(weight.value), value, err_msg=weight.path)
    changed = [
        path for path, value in trainable.items() if not np.array_equal(_value(loaded, path), value)
    ]
    assert changed


def _value(loaded, path):
    (variable,) = [v for v in loaded.backbone.trainable_variables if v.path == path]
    return np.array(variable.value)


# LoRA on image rows (`lora.vision_targets` given as JSON), once on one device and once on a
# 2 x 2 mesh of fake CPU devices (every weight split, `sharding.MIN_SHARDED_SIZE = 0`),
# printing both runs' losses as JSON.
_SHARDED = textwrap.dedent(
    """
    import json, os, sys
    import jax, keras, numpy as np
    from gemma_tune.data import sources
    from gemma_tune.model import prepare, vision
    from gemma_tune.training import batching, sharding, template, trainer

    sharding.MIN_SHARDED_SIZE = 0
    rows = sources.read_file(sys.argv[1], images=True).examples[:12]

    def fit(mesh):
        settings = prepare.Tuning(rank=4, vision_targets=tuple(json.loads(sys.argv[2])))
        loaded = prepare.prepare("tiny:gemma3_vision", settings, dtype="float32").loaded
        chat = template.ChatTemplate(loaded.tokenizer, False, vision.image_inputs(loaded))
        encoded = [chat.encode(row, 96) for row in rows]
        tuner = trainer.Trainer(loaded.causal_lm, keras.optimizers.AdamW(3e-2), mesh=mesh)
        losses = [
            tuner.train_step(batching.train_batch(encoded, np.arange(12), step, 4, 1, 96, 0))[
                "loss"
            ]
            for step in range(3)
        ]
        specs = {str(getattr(a.sharding, "spec", "")) for a in [*tuner.frozen, *tuner.trainable]}
        return {"losses": losses, "split": any("model" in spec for spec in specs)}

    print(json.dumps({"devices": len(jax.devices()), "single": fit(None),
                      "sharded": fit(sharding.make_mesh(2, 2))}))
    """
)


def sharded_losses(vision_targets=()) -> dict:
    """Runs `_SHARDED` with 4 fake CPU devices (LoRA rank 4, `lora.vision_targets`
    `vision_targets`); returns its JSON results."""
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4")
    env["JAX_PLATFORMS"] = "cpu"
    result = subprocess.run(
        [sys.executable, "-c", _SHARDED, TRAIN, json.dumps(list(vision_targets))],
        capture_output=True, text=True, timeout=600, env=env,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.slow  # ~55 s on 2 shared CPU cores: two runs of three compiled steps
def test_lora_on_image_rows_on_a_cpu_mesh_matches_one_device():
    # With LoRA on the vision tower too (lora.vision_targets), split over the mesh as well.
    results = sharded_losses(["attention", "projector"])
    assert results["devices"] == 4 and results["sharded"]["split"]
    single, sharded = results["single"]["losses"], results["sharded"]["losses"]
    assert sharded == pytest.approx(single, rel=2e-5)
    assert single[-1] < single[0]
