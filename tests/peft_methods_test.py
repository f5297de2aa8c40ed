"""LoRA options, DoRA, QLoRA (int8/int4 bases), full fine-tuning and rematerialization: each
trains, DoRA matches its formula computed directly in NumPy, merging changes nothing, and
quantized or DoRA runs save, reload and resume exactly."""

import json
import os
import re
import shutil

import jax.numpy as jnp
import keras
import numpy as np
import pytest

from gemma_tune import config as config_lib
from gemma_tune import model, testing, train
from gemma_tune.data import example as ex
from gemma_tune.export import merge
from gemma_tune.model import lora, quantize
from gemma_tune.runs import tuned_run
from gemma_tune.training import batching, loop, optimizer, template, trainer

IDS = np.array([[2, 40, 41, 42, 43, 44, 45, 46, 47, 48, 49, 50]])


def _inputs(ids=IDS):
    return {"token_ids": ids, "padding_mask": np.ones_like(ids, bool)}


def _randomize_adapters(loaded, seed=0):
    """Gives every adapter variable (B starts at zero) random values, so tests see its effect."""
    rng = np.random.default_rng(seed)
    for variable in loaded.causal_lm.trainable_variables:
        value = np.asarray(variable.numpy())
        if variable.path.endswith("lora_magnitude"):
            value = value * rng.uniform(0.5, 1.5, value.shape)
        else:
            value = rng.normal(0.0, 0.3, value.shape)
        variable.assign(value.astype(np.float32))


def _adapted(
    preset,
    method="dora",
    quantized="none",
    targets=("all",),
    rank=3,
    alpha=6.0,
    layout="per_head",
):
    loaded = model.load(preset, "float32", seed=0)
    quantize.quantize(loaded.backbone, quantized)
    model.enable_lora(loaded, rank, alpha, list(targets), dora=method == "dora", layout=layout)
    return loaded


def _dora_reference(layer, x, w0, a, b, m, scale):
    """DoRA straight from the paper: W' = m * (W0 + s A B) / ||W0 + s A B||_c; y = x W'."""
    merged = w0 + scale * _reference_product(layer, a, b)
    axes = lora.input_axes(layer)
    norm = np.sqrt(np.sum(merged.astype(np.float64) ** 2, axis=axes, keepdims=True))
    w = merged * (np.expand_dims(m, axes) / norm)
    return np.einsum(layer.equation, x, w), w


def _reference_product(layer, a, b):
    """A B as a kernel: per_head is a matmul over A's last axis (Keras' LoRA); peft is A over
    the input axes times B over the output axes, moved into the kernel's axis order."""
    if lora.layout(layer) == "per_head":
        return np.matmul(a, b)
    inputs = list(lora.input_axes(layer))
    outputs = [axis for axis in range(len(lora.kernel_shape(layer))) if axis not in inputs]
    return np.tensordot(a, b, axes=1).transpose(np.argsort(inputs + outputs))


@pytest.mark.parametrize("layout", ["per_head", "peft"])
@pytest.mark.parametrize("name", ["query", "attention_output", "ffw_linear", "ffw_gating"])
def test_dora_forward_and_merged_kernel_match_a_numpy_reference(name, layout):
    loaded = _adapted("tiny:gemma3", layout=layout)
    _randomize_adapters(loaded)
    layer = next(
        layer for layer in loaded.backbone._flatten_layers(include_self=False) if layer.name == name
    )
    w0 = np.asarray(layer._kernel.numpy(), np.float64)
    a = np.asarray(layer.lora_kernel_a.numpy(), np.float64)
    b = np.asarray(layer.lora_kernel_b.numpy(), np.float64)
    m = np.asarray(layer.lora_magnitude.numpy(), np.float64)
    in_spec = layer.equation.split(",")[0]
    rng = np.random.default_rng(1)
    shape = {"btd": (2, 5, w0.shape[lora.input_axes(layer)[0]]), "btnh": (2, 5, *w0.shape[:2])}
    x = rng.normal(size=shape.get(in_spec, (2, 5, w0.shape[0])))
    expected, expected_kernel = _dora_reference(layer, x, w0, a, b, m, 2.0)
    got = np.asarray(layer(x.astype(np.float32)))
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(lora.merged_kernel(layer), expected_kernel, rtol=1e-5, atol=1e-6)
    # The magnitude matters: DoRA is not LoRA.
    lora_only = np.einsum(layer.equation, x, w0 + 2.0 * _reference_product(layer, a, b))
    assert np.abs(lora_only - expected).max() > 1e-2


def test_a_fresh_dora_adapter_is_exactly_the_base():
    base = model.load("tiny:gemma2", "float32", seed=0)
    expected = np.asarray(base.causal_lm(_inputs()))
    adapted = _adapted("tiny:gemma2")
    np.testing.assert_array_equal(np.asarray(adapted.causal_lm(_inputs())), expected)


@pytest.mark.parametrize(
    "method, quantized, layout",
    [
        ("lora", "none", "per_head"),
        ("dora", "none", "per_head"),
        ("dora", "none", "peft"),
        pytest.param("lora", "int8", "per_head", marks=pytest.mark.slow),  # ~25 s each: slow
        pytest.param("dora", "int4", "per_head", marks=pytest.mark.slow),
        pytest.param("lora", "int4", "peft", marks=pytest.mark.slow),
        pytest.param("dora", "int8", "peft", marks=pytest.mark.slow),
    ],
)
def test_merged_equals_unmerged(method, quantized, layout):
    loaded = _adapted("tiny:gemma3", method, quantized, layout=layout)
    _randomize_adapters(loaded)
    unmerged = np.asarray(loaded.causal_lm(_inputs()))
    merged = merge.merge_lora(loaded)
    assert not merge.has_lora(merged.backbone)
    np.testing.assert_allclose(
        np.asarray(merged.causal_lm(_inputs())), unmerged, rtol=1e-4, atol=1e-4
    )


@pytest.mark.slow  # ~36 s; CI runs the slow suite too
def test_quantized_base_is_weight_only_and_close_to_float():
    float_model = model.load("tiny:gemma3", "float32", seed=0)
    expected = np.asarray(float_model.causal_lm(_inputs()))
    for mode, tolerance in (("int8", 0.05), ("int4", 0.5)):
        loaded = model.load("tiny:gemma3", "float32", seed=0)
        quantize.quantize(loaded.backbone, mode)
        assert quantize.mode_of(loaded.backbone) == mode
        assert loaded.backbone.token_embedding.quantization_mode == "int8"
        kernels = [v for v in loaded.backbone.weights if v.path.endswith("query/kernel")]
        assert kernels and all(v.dtype == "int8" for v in kernels)
        got = np.asarray(loaded.causal_lm(_inputs()))
        assert np.abs(got - expected).max() < tolerance * np.abs(expected).max()


def _examples():
    rows = [
        ("What color is the sky? It is red.", "Answer: red"),
        ("Repeat after me: the cat sees old books.", "the cat sees old books."),
    ]
    return [ex.Example(turns=(ex.Turn("user", q), ex.Turn("model", a))) for q, a in rows]


def _fit(overrides, steps=30, examples=None):
    config = config_lib.load(
        "tiny:gemma3",
        [
            "train.learning_rate=0.03",
            "train.epochs=100",
            "train.batch_size=2",
            f"train.max_steps={steps}",
            "train.log_every=1",
            "lora.rank=8",
            *overrides,
        ],
    )
    loaded = model.load(config.model.preset, config.model.dtype, seed=config.seed)
    quantize.quantize(loaded.backbone, config.model.quantize)
    keras.utils.set_random_seed(config.seed)
    model.enable_tuning(loaded, config.method, config.lora)
    model.enable_remat(loaded, model.remat_mode(config.train.remat))
    chat_template = template.ChatTemplate(loaded.tokenizer)
    encoded = [chat_template.encode(e, config.sequence_length) for e in examples or _examples()]
    tuner = trainer.Trainer(
        loaded.causal_lm,
        optimizer.make(config.train, steps),
        max_targets_per_row=batching.max_targets_per_row(encoded),
    )
    logged = []
    loop.fit(tuner, encoded, [], config, chat_template.pad_id, logged.append)
    return [r["loss"] for r in logged if "loss" in r], tuner


@pytest.mark.parametrize(
    "overrides",
    [
        ["lora.dropout=0.1"],
        ["method=dora"],
        pytest.param(["model.quantize=int8"], marks=pytest.mark.slow),  # ~28 s each: slow
        pytest.param(["model.quantize=int4", "method=dora"], marks=pytest.mark.slow),
        ["method=full", "train.learning_rate=0.003"],
        ["model.dtype=bfloat16", "method=dora", "train.remat=true"],
        pytest.param(["lora.layout=peft", "lora.dropout=0.1"], marks=pytest.mark.slow),
    ],
    ids=[
        "lora-dropout",
        "dora",
        "qlora-int8",
        "qdora-int4",
        "full",
        "bf16-dora-remat",
        "peft-layout-dropout",
    ],
)
def test_each_method_learns(overrides):
    losses, tuner = _fit(overrides)
    assert np.mean(losses[-5:]) < 0.5 * np.mean(losses[:3]), losses


# ~10-20 s each: slow suite (CI runs it). Gemma 4's MLP reads its kernels directly, so each
# method there goes through the adapted layer's `kernel`.
@pytest.mark.slow
@pytest.mark.parametrize(
    "architecture,overrides",
    [
        ("gemma4", ["method=dora", 'lora.targets=["all"]']),
        ("gemma4", ["model.quantize=int8", 'lora.targets=["all"]']),
        ("gemma4", ["model.quantize=int4", "method=dora", 'lora.targets=["mlp"]']),
        ("gemma4", ["method=full", "train.learning_rate=0.003"]),
        ("gemma4_moe", ['lora.targets=["all"]']),
        ("gemma4_moe", ["model.quantize=int8", "method=dora", 'lora.targets=["mlp"]']),
        ("gemma4", ["lora.layout=peft", "model.quantize=int4", 'lora.targets=["all"]']),
        ("gemma4_moe", ["lora.layout=peft", "method=dora", 'lora.targets=["all"]']),
    ],
    ids=[
        "dora-all",
        "qlora-int8-all",
        "qdora-int4-mlp",
        "full",
        "moe-lora-all",
        "moe-int8-mlp",
        "peft-layout-qlora-int4-all",
        "moe-peft-layout-dora-all",
    ],
)
def test_each_method_learns_on_gemma4(architecture, overrides):
    losses, _ = _fit([f"model.preset=tiny:{architecture}", *overrides])
    assert np.mean(losses[-5:]) < 0.5 * np.mean(losses[:3]), losses


def test_full_fine_tuning_trains_every_weight():
    _, tuner = _fit(["method=full", "train.learning_rate=0.003"], steps=2)
    backbone = tuner.backbone
    assert not backbone.non_trainable_variables
    fresh = model.load("tiny:gemma3", "float32", seed=0).backbone
    tuner.sync_to_model()
    changed = [
        not np.array_equal(a.numpy(), b.numpy())
        for a, b in zip(backbone.weights, fresh.weights, strict=True)
    ]
    assert sum(changed) >= 0.9 * len(changed)


@pytest.mark.slow  # >12 s on a 2-core AVX2 CPU: slow suite (CI runs it)
def test_dropout_draws_new_masks_each_step_reproducibly_and_only_while_training():
    dropped, _ = _fit(["lora.dropout=0.5"], steps=6)
    again, _ = _fit(["lora.dropout=0.5"], steps=6)
    plain, tuner = _fit([], steps=6)
    assert dropped == again
    assert dropped[0] == plain[0]  # B starts at zero, so no mask changes the first loss ...
    assert dropped[1:] != plain[1:]  # ... but the updates differ from there on.
    # Evaluation (training=False) ignores dropout: the same weights give the same outputs.
    with_dropout = _adapted("tiny:gemma3", "lora", targets=("query",), rank=2)
    model_ids = [v.path for v in with_dropout.backbone.non_trainable_variables]
    assert not any(p.endswith(lora.DROPOUT_SEED) for p in model_ids)
    layer = next(
        layer for layer in with_dropout.backbone._flatten_layers() if layer.name == "query"
    )
    layer.lora_dropout = 0.5
    layer._tracker.unlock()
    layer.lora_dropout_seed = layer.add_weight(
        name=lora.DROPOUT_SEED, shape=(2,), dtype="int32", trainable=False, initializer="zeros"
    )
    x = np.random.default_rng(0).normal(size=(1, 4, 32)).astype(np.float32)
    _randomize_adapters(with_dropout)
    assert np.array_equal(np.asarray(layer(x, training=False)), np.asarray(layer(x)))
    first = np.asarray(layer(x, training=True))
    assert not np.allclose(first, np.asarray(layer(x)))
    assert np.array_equal(np.asarray(layer(x, training=True)), first)  # same counter, same mask
    layer.lora_dropout_seed.assign(np.array([0, 1], np.int32))  # what the trainer does per step
    assert not np.allclose(np.asarray(layer(x, training=True)), first)


def _deep_tuner(remat: str):
    """An 8-layer tiny Gemma 3 with LoRA, where activations dominate a step's memory."""
    tokenizer = testing.tiny_tokenizer("gemma3")
    backbone = testing.tiny_backbone("gemma3", tokenizer.vocabulary_size(), num_layers=8)
    loaded = model.LoadedModel(model.causal_lm_for(backbone), tokenizer, "tiny:gemma3")
    keras.utils.set_random_seed(0)
    model.enable_lora(loaded, 4)
    model.enable_remat(loaded, remat)
    config = config_lib.load("tiny:gemma3", ["train.learning_rate=0.01"])
    return trainer.Trainer(loaded.causal_lm, optimizer.make(config.train, 10))


# (mode, least and most FLOPs over no remat, most temporary memory over no remat). Measured
# on this tiny model: full 1.37x the FLOPs and 0.29x the memory, matmuls 1.14x and 0.43x
# (on Gemma 3 270M at 8 x 256 tokens: full 1.48x and 0.13x, matmuls 1.02x and 0.60x).
REMAT_EXPECTATIONS = [("full", 1.2, 1.6, 0.4), ("matmuls", 1.0, 1.25, 0.8)]


@pytest.mark.slow  # >12 s on a 2-core AVX2 CPU: slow suite (CI runs it)
@pytest.mark.parametrize("mode, least_flops, most_flops, most_memory", REMAT_EXPECTATIONS)
def test_remat_recomputes_the_blocks_and_gives_the_same_step(
    mode, least_flops, most_flops, most_memory
):
    rng = np.random.default_rng(0)
    batch = {
        "token_ids": rng.integers(4, 300, (1, 4, 256)).astype(np.int32),
        "padding_mask": np.ones((1, 4, 256), bool),
        "target_ids": rng.integers(4, 300, (1, 4, 256)).astype(np.int32),
        "target_weights": np.ones((1, 4, 256), np.float32),
    }
    plain, rematted = _deep_tuner("none"), _deep_tuner(mode)

    def compiled(tuner):
        return tuner._train_step.lower(
            tuner.trainable, tuner.optimizer_state, tuner.frozen, batch, jnp.int32(0)
        ).compile()

    # full: the backward pass recomputes every block's forward pass; matmuls: only the
    # elementwise work between the matrix products. Both keep less (gemma_tune.xla_flags).
    plain_step, remat_step = compiled(plain), compiled(rematted)
    ratio = remat_step.cost_analysis()["flops"] / plain_step.cost_analysis()["flops"]
    assert least_flops <= ratio <= most_flops, ratio
    memory = (
        remat_step.memory_analysis().temp_size_in_bytes
        / plain_step.memory_analysis().temp_size_in_bytes
    )
    assert memory <= most_memory, memory
    for _ in range(2):
        expected, got = plain.train_step(batch), rematted.train_step(batch)
        np.testing.assert_allclose(got["loss"], expected["loss"], rtol=1e-5)
        np.testing.assert_allclose(got["grad_norm"], expected["grad_norm"], rtol=1e-4)


def test_remat_settings_resolve():
    assert model.remat_mode("auto") == "matmuls"  # the tests run on a CPU
    assert [model.remat_mode(v) for v in (True, False, "true", "false")] == [
        "full",
        "none",
        "full",
        "none",
    ]
    assert model.remat_mode("full") == "full"
    with pytest.raises(ValueError, match="train.remat='some'"):
        model.remat_mode("some")
    config = config_lib.load("tiny:gemma3", ["train.remat=matmuls"])
    assert config.train.remat == "matmuls"
    with pytest.raises(ValueError, match="train.remat"):
        config_lib.load("tiny:gemma3", ["train.remat=some"])


@pytest.mark.parametrize(
    "overrides",
    [
        # The longest tiny-model test (~90 s): in the slow suite, which CI runs too.
        pytest.param(
            ["method=dora", "model.quantize=int4", "model.int4_block_size=16", "lora.dropout=0.1"],
            marks=pytest.mark.slow,
        ),
        pytest.param(
            ["method=dora", "model.quantize=int8", "lora.layout=peft", 'lora.targets=["all"]'],
            marks=pytest.mark.slow,
        ),
        ["method=full"],
    ],
    ids=["qdora-int4-dropout", "peft-layout-qdora-int8", "full"],
)
def test_runs_save_reload_and_resume_exactly(overrides, tmp_path):
    settings = [
        *overrides,
        "train.max_steps=6",
        "train.checkpoint_every=3",
        "train.keep_checkpoints=3",
        "train.log_every=1",
        "eval.limit=2",
        "samples.count=1",
        "samples.max_new_tokens=4",
    ]
    config = config_lib.load("tiny", settings)
    finished = str(tmp_path / "finished")
    train.run(config, finished)

    # The state a crash after step 4 leaves: checkpoint 3, no result, no adapter.
    crashed = str(tmp_path / "crashed")
    shutil.copytree(finished, crashed)
    for name in ("result.json", "adapter"):
        path = os.path.join(crashed, name)
        shutil.rmtree(path) if os.path.isdir(path) else os.remove(path)
    shutil.rmtree(os.path.join(crashed, "checkpoints", "step-000006"))
    train.run(config_lib.load("tiny", settings), crashed)

    def losses(path):
        with open(os.path.join(path, "metrics.jsonl")) as f:
            return [json.loads(line)["loss"] for line in f if '"loss"' in line]

    np.testing.assert_allclose(losses(crashed), losses(finished), rtol=1e-6)
    with np.load(os.path.join(finished, "adapter", "adapter.npz")) as a:
        with np.load(os.path.join(crashed, "adapter", "adapter.npz")) as b:
            assert sorted(a.files) == sorted(b.files)
            for name in a.files:
                np.testing.assert_allclose(b[name], a[name], rtol=1e-6, atol=1e-7)

    # The saved adapter rebuilds the tuned model: same logits as the trained one had.
    tuned = tuned_run.load_tuned(finished, "float32")
    metadata = tuned.adapter_metadata
    assert metadata["method"] == config.method
    assert metadata["quantize"] == config.model.quantize
    assert metadata.get("dora", False) == (config.method == "dora")
    if config.method != "full":
        assert metadata["layout"] == config.lora.layout
        query = tuned.loaded.backbone.get_layer("decoder_block_0").attention.query_dense
        assert lora.layout(query) == config.lora.layout
    if config.model.quantize == "int4":  # rebuilt with the run's groups (16 of the 32 inputs)
        assert metadata["int4_block_size"] == 16
        query = [
            layer for layer in tuned.loaded.backbone._flatten_layers() if layer.name == "query"
        ]
        assert query and all(layer._int4_block_size == 16 for layer in query)
    base = tuned_run.load_base(
        tuned.config["model"]["preset"], tuned_run.adapter_path(finished), "float32"
    )
    tuned_logits = np.asarray(tuned.loaded.causal_lm(_inputs()))
    base_logits = np.asarray(base.causal_lm(_inputs()))
    assert np.abs(tuned_logits - base_logits).max() > 1e-3
    merged = merge.merge_lora(tuned.loaded)
    np.testing.assert_allclose(
        np.asarray(merged.causal_lm(_inputs())), tuned_logits, rtol=1e-4, atol=1e-4
    )


def test_bad_method_settings_stop_the_cli(capsys):
    # Out-of-range values stop when the config is loaded, naming the key, value and range.
    for setting, message in (
        ("method=qlora", 'method="qlora": must be one of lora, dora, full'),
        ("model.quantize=int2", 'model.quantize="int2": must be one of none, int8, int4'),
        ("lora.dropout=1.0", "lora.dropout=1.0: must be"),
        ("lora.layout=hf", 'lora.layout="hf": must be one of per_head, peft'),
    ):
        with pytest.raises(ValueError, match=re.escape(message)):
            config_lib.load("tiny", [setting])
    with pytest.raises(ValueError, match="method=full trains every weight"):
        model.check_tuning(config_lib.load("tiny", ["method=full", "model.quantize=int8"]))
