"""Training on tiny Gemma 1, 2 and 3: loss falls, runs are reproducible, accumulation is exact."""

import numpy as np
import pytest

from gemma_tune import config as config_lib
from gemma_tune import model
from gemma_tune.data import example as ex
from gemma_tune.training import batching, loop, optimizer, template, trainer


def _examples(count):
    rows = [
        ("What color is the sky? It is red.", "Answer: red"),
        ("Repeat after me: the cat sees old books.", "the cat sees old books."),
        ("What color is the sky? It is blue.", "Answer: blue"),
        ("Repeat after me: a dog finds warm bread.", "a dog finds warm bread."),
    ]
    return [ex.Example(turns=(ex.Turn("user", q), ex.Turn("model", a))) for q, a in rows[:count]]


def _setup(architecture, overrides=()):
    config = config_lib.load(f"tiny:{architecture}", list(overrides))
    loaded = model.load(config.model.preset, "float32", seed=config.seed)
    chat_template = template.ChatTemplate(loaded.tokenizer)
    model.enable_lora(loaded, config.lora.rank)
    return config, loaded, chat_template


def _train(architecture, overrides, examples, steps):
    config, loaded, chat_template = _setup(
        architecture, [*overrides, f"train.max_steps={steps}", "train.log_every=1"]
    )
    encoded = [chat_template.encode(e, config.sequence_length) for e in examples]
    tuner = trainer.Trainer(
        loaded.causal_lm, optimizer.make(config.train, steps), config.train.grad_clip_norm
    )
    logged = []
    loop.fit(tuner, encoded, [], config, chat_template.pad_id, logged.append)
    return [r["loss"] for r in logged if "loss" in r], tuner, loaded


def test_loss_falls_when_overfitting(architecture):
    losses, _, _ = _train(
        architecture,
        [
            "train.learning_rate=0.05",
            "train.epochs=100",
            "train.batch_size=2",
            "train.warmup_steps=0",
            "train.schedule=constant",
            "lora.rank=16",
        ],
        _examples(2),
        steps=40,
    )
    assert np.mean(losses[-5:]) < 0.5 * np.mean(losses[:3])


def test_same_seed_gives_same_losses():
    first, _, _ = _train("gemma1", ["train.epochs=10"], _examples(4), steps=6)
    second, _, _ = _train("gemma1", ["train.epochs=10"], _examples(4), steps=6)
    np.testing.assert_allclose(first, second, rtol=1e-6)


def test_length_buckets_give_the_same_losses_with_narrower_batches():
    settings = ["train.epochs=10", "train.batch_size=2", "train.learning_rate=0.01"]
    full, _, _ = _train("gemma3", settings, _examples(4), steps=6)
    bucketed, tuner, _ = _train(
        "gemma3", [*settings, "train.length_bucket=16"], _examples(4), steps=6
    )
    np.testing.assert_allclose(bucketed, full, rtol=1e-5)
    # One compiled step per width used, fewer than the steps taken.
    assert 1 <= tuner._train_step._cache_size() < 6


def test_gradient_accumulation_equals_a_bigger_batch():
    """Two micro-batches of 1 give the same update as one batch of 2 (token-weighted)."""
    results = []
    for batch_size, accumulation in [(2, 1), (1, 2)]:
        config, loaded, chat_template = _setup(
            "gemma1",
            [
                f"train.batch_size={batch_size}",
                f"train.grad_accum_steps={accumulation}",
                "train.shuffle=false",
            ],
        )
        encoded = [chat_template.encode(e, config.sequence_length) for e in _examples(2)]
        tuner = trainer.Trainer(loaded.causal_lm, optimizer.make(config.train, 1), 0.0)
        batch = batching.train_batch(
            encoded,
            np.arange(2),
            0,
            batch_size,
            accumulation,
            config.sequence_length,
            chat_template.pad_id,
        )
        metrics = tuner.train_step(batch)
        results.append((metrics["loss"], [np.asarray(w) for w in tuner.trainable]))
    assert results[0][0] == pytest.approx(results[1][0], rel=1e-5)
    for a, b in zip(results[0][1], results[1][1], strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def test_only_lora_weights_change():
    _, tuner, loaded = _train("gemma3", ["train.learning_rate=0.01"], _examples(2), steps=3)
    trainable_paths = {v.path for v in loaded.causal_lm.trainable_variables}
    assert trainable_paths and all("lora" in path for path in trainable_paths)
    assert any(np.abs(np.asarray(v)).sum() > 0 for v in tuner.trainable)


def test_learning_rate_schedule_warms_up_then_decays():
    schedule = optimizer.WarmupDecay(peak=1.0, warmup_steps=4, total_steps=20, kind="cosine")
    values = [float(schedule(step)) for step in range(20)]
    assert values[0] == pytest.approx(0.25)
    assert values[3] == pytest.approx(1.0)
    assert values[19] < 0.02
    assert all(a >= b for a, b in zip(values[3:], values[4:], strict=False))


def test_trainer_loss_equals_the_causal_lm_logits_loss(architecture):
    """The step's selective, chunked LM head gives the loss of KerasHub's own logits."""
    from gemma_tune.training import loss

    config, loaded, chat_template = _setup(architecture)
    encoded = [chat_template.encode(e, config.sequence_length) for e in _examples(4)]
    tuner = trainer.Trainer(
        loaded.causal_lm,
        optimizer.make(config.train, 1),
        0.0,
        max_targets_per_row=batching.max_targets_per_row(encoded),
        logits_chunk_size=16,
    )
    batch = batching.pack(encoded, config.sequence_length, chat_template.pad_id, 4)
    ours = tuner.evaluate([batch])
    logits = loaded.causal_lm(
        loaded.family.backbone_inputs(batch["token_ids"], batch["padding_mask"])
    )
    loss_sum, weight_sum, correct = loss.weighted_sums(
        logits, batch["target_ids"], batch["target_weights"]
    )
    assert ours["loss"] == pytest.approx(float(loss_sum / weight_sum), rel=1e-5)
    assert ours["accuracy"] == pytest.approx(float(correct / weight_sum), rel=1e-6)
