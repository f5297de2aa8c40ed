"""Packing: rows hold every example once, and a packed batch trains exactly like the same
examples each in its own row (loss and gradient), because attention stays within an example."""

import json
import subprocess
import sys

import jax
import numpy as np
import pytest

from gemma_tune import config as config_lib
from gemma_tune import model, testing
from gemma_tune.data import example as ex
from gemma_tune.training import batching, optimizer, packing, template, trainer


def _encoded(lengths, seed=0):
    rng = np.random.default_rng(seed)
    items = []
    for n in lengths:
        weights = (rng.random(n) < 0.5).astype(np.float32)
        weights[0] = 0.0
        items.append(template.Encoded(rng.integers(3, 300, n).astype(np.int32), weights, n))
    return items


def test_combine_keeps_every_example_once_within_the_row_length():
    lengths = [5, 30, 12, 33, 7, 20, 3, 16, 9, 25]
    items = _encoded(lengths)
    rows = packing.combine(items, sequence_length=32)
    assert all(len(row.token_ids) <= 33 for row in rows)
    pieces = []
    for row in rows:
        assert row.segment_ids[0] == 1 and np.all(np.diff(row.segment_ids) >= 0)
        for segment in np.unique(row.segment_ids):
            keep = row.segment_ids == segment
            pieces.append((tuple(row.token_ids[keep]), tuple(row.target_weights[keep])))
    expected = [(tuple(i.token_ids), tuple(i.target_weights)) for i in items]
    assert sorted(pieces) == sorted(expected)
    assert len(rows) == 5  # 160 tokens, 33 per row: 5 is the floor
    assert packing.fill(rows, 32) == pytest.approx(160 / (5 * 33))
    with pytest.raises(ValueError, match="example 3 has 33 tokens, more than 17"):
        packing.combine(items, sequence_length=16)


def _examples():
    rows = [
        ("Hi", "Hello."),
        ("What color is the sky? It is blue.", "Answer: blue"),
        ("Repeat after me: the cat sees old books.", "the cat sees old books."),
        ("Name a fruit.", "An apple."),
        ("Repeat after me: a dog finds warm bread.", "a dog finds warm bread."),
    ]
    return [ex.Example(turns=(ex.Turn("user", q), ex.Turn("model", a))) for q, a in rows]


@pytest.mark.parametrize(
    "architecture",
    [
        # The tiny Gemma 4s take 35-50 s each here (4 layers, per-layer inputs, experts): in
        # the slow suite, which CI runs too (gemma4_test checks the restarted positions).
        pytest.param(name, marks=pytest.mark.slow) if name.startswith("gemma4") else name
        for name in testing.ARCHITECTURES
    ],
)
def test_packed_batch_gives_the_loss_and_gradient_of_separate_rows(architecture):
    config = config_lib.load(f"tiny:{architecture}", ["sequence_length=128"])
    loaded = model.load(config.model.preset, "float32", seed=config.seed)
    chat_template = template.ChatTemplate(loaded.tokenizer)
    model.enable_lora(loaded, 4)
    encoded = [chat_template.encode(e, 128) for e in _examples()]
    rows = packing.combine(encoded, 128)
    assert len(rows) < len(encoded)
    tuner = trainer.Trainer(loaded.causal_lm, optimizer.make(config.train, 1), 0.0)
    # Nonzero LoRA B, so the gradient flows through the adapters' A as well.
    rng = np.random.default_rng(0)
    trainable = [v + 0.05 * rng.standard_normal(v.shape) for v in map(np.asarray, tuner.trainable)]

    def sums(batch):
        def loss_sum(weights):
            sums = tuner._sums(weights, tuner.frozen, batch, training=False)
            return sums["loss"], sums["target_tokens"]

        (total, count), grads = jax.value_and_grad(loss_sum, has_aux=True)(trainable)
        return float(total), float(count), [np.asarray(g) for g in grads]

    pad = chat_template.pad_id
    separate = sums(batching.pack(encoded, 128, pad, len(encoded)))
    packed_batch = batching.pack(rows, 128, pad, len(rows))
    packed = sums(packed_batch)
    assert packed[1] == separate[1]  # the same target tokens
    assert packed[0] == pytest.approx(separate[0], rel=1e-5)
    # The MoE block multiplies every token of the batch by every expert in one flattened GEMM
    # ([rows * length, hidden]), whose float32 rounding follows the batch's shape: a gradient
    # entry near zero moved by 5e-6 (measured), hence a looser absolute tolerance there.
    atol = 1e-5 if architecture == "gemma4_moe" else 1e-6
    for got, want in zip(packed[2], separate[2], strict=True):
        np.testing.assert_allclose(got, want, rtol=2e-4, atol=atol)
    # Without the segments, later examples would see earlier ones: the same comparison fails.
    leaky = sums({k: v for k, v in packed_batch.items() if k != "segment_ids"})
    assert leaky[0] != pytest.approx(separate[0], rel=1e-5) or not all(
        np.allclose(got, want, rtol=2e-4, atol=1e-6)
        for got, want in zip(leaky[2], separate[2], strict=True)
    )


@pytest.mark.slow  # >15 s on a 2-core AVX2 CPU: slow suite (CI runs it)
def test_packed_training_run_takes_fewer_steps(tmp_path):
    run_path = tmp_path / "run"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "gemma_tune.train",
            "--experiment=tiny:gemma3",
            f"--workdir={run_path}",
            "--set",
            "train.packing=true",
            "--set",
            "sequence_length=256",
            "--set",
            "train.epochs=3",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    packed_line = next(line for line in result.stderr.splitlines() if line.startswith("Packed "))
    examples, rows = [int(word) for word in packed_line.split() if word.isdigit()][:2]
    assert rows < examples
    config = json.loads((run_path / "config.json").read_text())
    assert config["train"]["packing"] is True
    per_step = config["train"]["batch_size"] * config["train"]["grad_accum_steps"]
    assert json.loads((run_path / "result.json").read_text())["steps"] == 3 * -(-rows // per_step)
    records = [json.loads(line) for line in (run_path / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in records if "loss" in r]
    assert losses[-1] < losses[0]
