"""Gemma 4 reading images (`tiny:gemma4_vision`): the image span Gemma 4's processors write,
its arrays (`pixel_values`, `pixel_position_ids`), loss on answers only, the image reaching the
answer's logits, the frozen vision encoder, generation seeing the image, and a Gemma 4 preset
with vision and audio encoders loading with its vision encoder and without the audio one.

    python -m pytest -q tests/gemma4_vision_test.py            # fast checks
    python -m pytest -q -m slow tests/gemma4_vision_test.py    # compiled passes
"""

import keras
import keras_hub
import numpy as np
import pytest
import vision_helpers
from vision_helpers import bundled_image, chat, with_image

from gemma_tune import model, testing
from gemma_tune.data import example
from gemma_tune.evaluation import generate
from gemma_tune.model import tuning, vision
from gemma_tune.model.families import gemma4, gemma4_vision
from gemma_tune.training import batching, trainer

LENGTH = 128
TOKENS = 64  # 64 x 64 pixels, 4 x 4 patches pooled 2 x 2


@pytest.fixture(scope="module")
def loaded():
    return model.load("tiny:gemma4_vision", dtype="float32")


@pytest.fixture(scope="module")
def bundled_rows():
    return vision_helpers.bundled_rows()


def test_tiny_gemma4_vision_has_the_image_tokens_an_encoder_and_reads_images(loaded):
    inputs = vision.image_inputs(loaded)
    assert (inputs.image_size, inputs.tokens_per_image) == (64, TOKENS)
    tokenizer = loaded.tokenizer
    assert [tokenizer.id_to_token(i) for i in (
        inputs.start_of_image_id, inputs.placeholder_id, inputs.end_of_image_id
    )] == ["<|image>", "<|image|>", "<image|>"]  # fmt: skip
    assert loaded.family.name == "gemma4"
    assert model.reads_images("tiny:gemma4_vision") and not model.reads_images("tiny:gemma4")
    assert vision.image_inputs(model.load("tiny:gemma4", dtype="float32")) is None
    assert sorted(loaded.backbone.input) == [
        "padding_mask", "pixel_position_ids", "pixel_values", "position_ids", "token_ids",
        "vision_indices", "vision_mask",
    ]  # fmt: skip


def test_a_real_gemma4_converter_gives_256_tokens_for_a_square_image():
    # KerasHub's and transformers' defaults: patches 16, pooling 3, at most 280 soft tokens.
    converter = keras_hub.layers.Gemma4ImageConverter(scale=1 / 255, offset=0.0)
    assert gemma4_vision.square_side(converter) == 768
    encoder = type("Encoder", (), {"pool_size": 3, "patch_size": 16})()
    backbone = type("Backbone", (), {"vision_encoder": encoder})()
    assert gemma4_vision.tokens_per_image(backbone, converter) == 256


def test_the_image_span_is_gemma4_s_and_never_carries_loss(loaded, bundled_rows):
    inputs = vision.image_inputs(loaded)
    row = bundled_rows[0]  # OpenAI parts: the image, then the question.
    for train_on_prompt in (False, True):
        encoded = chat(loaded, train_on_prompt).encode(row, LENGTH)
        (placed,) = encoded.images
        ids, weights = encoded.token_ids, encoded.target_weights
        start = placed.start
        # `<|turn>user\n<|image>` then the placeholders, `<image|>` and the question: no blank
        # lines around the span (transformers' Gemma4Processor writes none).
        assert loaded.tokenizer.detokenize(ids[: start - 1]) == "<|turn>user\n"
        assert ids[start - 1] == inputs.start_of_image_id
        assert (ids[start : start + TOKENS] == inputs.placeholder_id).all()
        assert ids[start + TOKENS] == inputs.end_of_image_id
        assert (ids == inputs.placeholder_id).sum() == TOKENS
        assert loaded.tokenizer.detokenize(ids[start + TOKENS + 1 :]).startswith(row.turns[0].text)
        assert (weights[start - 1 : start + TOKENS + 1] == 0).all()
        assert weights.sum() > 0


def test_batch_arrays_hold_patches_positions_indices_and_mask(loaded, bundled_rows):
    template_ = chat(loaded)
    text_row = example.Example(
        turns=(example.Turn(example.USER, "Hi?"), example.Turn(example.MODEL, "Hello"))
    )
    encoded = [template_.encode(row, LENGTH) for row in (bundled_rows[0], text_row)]
    batch = batching.pack(encoded, LENGTH, 0, 2)
    assert batch["pixel_values"].shape == (2, 1, 280, 48)  # 70 x 2 x 2 patches of 4 x 4 x 3
    positions = batch["pixel_position_ids"][0, 0]
    assert positions[:17].tolist() == [[x, 0] for x in range(16)] + [[0, 1]]
    assert (positions[256:] == -1).all()  # 256 real patches, padding marked -1
    assert (batch["pixel_values"][0, 0, 256:] == 0).all()
    assert batch["pixel_values"][0, 0, :256].min() >= 0 and batch["pixel_values"].max() <= 1
    # The first patch is the image's top-left 4 x 4 pixels, row by row, scaled to [0, 1].
    pixels = bundled_rows[0].turns[0].images[0].pixels().astype(np.float32) / 255
    np.testing.assert_allclose(
        batch["pixel_values"][0, 0, 0], pixels[:4, :4].reshape(-1), atol=2e-3
    )
    start = encoded[0].images[0].start
    assert batch["vision_indices"][0].tolist() == list(range(start, start + TOKENS))
    assert (batch["vision_indices"][1] == 0).all() and not batch["vision_mask"][1].any()
    assert batch["vision_mask"][0].sum() == TOKENS


@pytest.mark.slow  # ~20 s on 2 shared CPU cores: builds the MoE model, two forward passes
def test_the_moe_model_reads_images_too(bundled_rows):
    moe = model.load("tiny:gemma4_moe_vision", dtype="float32")
    assert moe.family.name == "gemma4_moe"
    encoded = chat(moe).encode(bundled_rows[0], LENGTH)
    batch = batching.pack([encoded], LENGTH, 0, 1)
    other = dict(batch, pixel_values=np.zeros_like(batch["pixel_values"]))
    answers = batch["target_weights"][0] > 0
    assert np.abs(logits(moe, batch)[0][answers] - logits(moe, other)[0][answers]).max() > 1e-3


def test_lora_leaves_the_vision_encoder_frozen():
    loaded = model.load("tiny:gemma4_vision", dtype="float32")
    tuning.enable_tuning(loaded, "lora", _lora_settings())
    encoder_paths = {w.path for w in vision.encoder_of(loaded.backbone).weights}
    trainable_paths = {v.path for v in loaded.backbone.trainable_variables}
    assert trainable_paths and not trainable_paths & encoder_paths


def _lora_settings():
    import ml_collections

    return ml_collections.ConfigDict(
        {"rank": 4, "alpha": 0.0, "targets": ["query", "ffw_gating"], "dropout": 0.0,
         "layout": "per_head"}
    )  # fmt: skip


def logits(loaded, batch):
    inputs = loaded.family.backbone_inputs(batch["token_ids"], batch["padding_mask"])
    inputs.update(vision.backbone_inputs(loaded.backbone, batch))
    return np.asarray(loaded.causal_lm(inputs))


def _image_rows(bundled_rows):
    return [with_image(bundled_rows[0], bundled_image(i)) for i in (0, 150)]


@pytest.mark.slow  # ~40 s on 2 shared CPU cores: a compiled validation pass, forward passes
def test_loss_ignores_image_targets_and_the_image_changes_the_answer(loaded, bundled_rows):
    template_ = chat(loaded)
    rows = _image_rows(bundled_rows)
    batch = batching.pack([template_.encode(row, LENGTH) for row in rows], LENGTH, 0, 2)
    tuner = trainer.Trainer(loaded.causal_lm, None)
    loss = tuner.evaluate([batch])["loss"]
    changed = dict(batch)
    placeholder = vision.image_inputs(loaded).placeholder_id
    changed["target_ids"] = np.where(batch["target_ids"] == placeholder, 100, batch["target_ids"])
    assert (changed["target_ids"] != batch["target_ids"]).sum() == 2 * TOKENS
    assert tuner.evaluate([changed])["loss"] == pytest.approx(loss, rel=1e-6)

    answers = batch["target_weights"] > 0
    two = logits(loaded, batch)
    same = dict(
        batch,
        pixel_values=np.repeat(batch["pixel_values"][:1], 2, axis=0),
        pixel_position_ids=np.repeat(batch["pixel_position_ids"][:1], 2, axis=0),
    )
    one = logits(loaded, same)
    np.testing.assert_allclose(one[0], two[0], atol=1e-5)
    assert np.abs(one[1][answers[1]] - two[1][answers[1]]).max() > 1e-3
    start = np.flatnonzero(batch["vision_mask"][1])[0]
    np.testing.assert_allclose(one[1][: start - 1], two[1][: start - 1], atol=1e-5)


@pytest.mark.slow  # ~40 s on 2 shared CPU cores: compiles the cached prefill with images
def test_generation_sees_the_image(loaded, bundled_rows):
    template_ = chat(loaded)
    rows = _image_rows(bundled_rows)
    # The cached prefill with the image gives the full forward pass's next token.
    prompts = [template_.encode_prompt(row) for row in rows]
    placed = [template_.prompt_images(row) for row in rows]
    first = generate.generate_ids(loaded.causal_lm, prompts, 1, (), batch_size=2, images=placed)
    for prompt, images_, new in zip(prompts, placed, first, strict=True):
        single = {"token_ids": prompt[None], "padding_mask": np.ones((1, len(prompt)), bool)}
        single.update(vision.batch_arrays([images_], 1, len(prompt)))
        assert new[0] == np.argmax(logits(loaded, single)[0, -1])


def _gemma4_with_vision_and_audio(tokenizer):
    """`tiny:gemma4_vision`'s shape with an audio encoder too (as the "E" presets have)."""
    keras.utils.set_random_seed(3)
    common = dict(
        vocabulary_size=tokenizer.vocabulary_size(), num_layers=4, num_query_heads=4,
        num_key_value_heads=2, hidden_dim=32, intermediate_dim=64, head_dim=8, dtype="float32",
    )  # fmt: skip
    audio = keras_hub.models.Gemma4AudioEncoder(
        input_feat_size=16, hidden_size=16, num_heads=2, num_layers=1,
        sscp_conv_channels=(8, 4), output_proj_dims=16, output_dim=32,
    )  # fmt: skip
    return gemma4_vision.tiny_vision_backbone(
        lambda c, **extra: gemma4.tiny_backbone(c, audio_encoder=audio, **extra), common
    )


def test_a_gemma4_preset_loads_with_its_vision_encoder_and_converter_not_its_audio(
    loaded, tmp_path, capsys
):
    tokenizer = testing.tiny_tokenizer("gemma4_vision")
    multimodal = _gemma4_with_vision_and_audio(tokenizer)
    path = str(tmp_path)
    multimodal.save_to_preset(path)
    tokenizer.save_to_preset(path)
    vision.save_converter(loaded.image_converter, path)
    assert model.reads_images(path) and model.has_vision_encoder(path)

    reloaded = model.load(path, "float32")

    out = capsys.readouterr().out
    assert "without the audio encoder (gemma_tune reads text and images only" in out
    backbone = reloaded.backbone
    assert backbone.audio_encoder is None and backbone.vision_encoder is not None
    saved = {w.path: np.asarray(w.numpy()) for w in multimodal.weights}
    for variable in backbone.weights:
        np.testing.assert_array_equal(np.asarray(variable.numpy()), saved[variable.path])
    loaded_paths = {w.path for w in backbone.weights}
    assert not loaded_paths & {w.path for w in multimodal.audio_encoder.weights}
    assert {w.path for w in multimodal.vision_encoder.weights} <= loaded_paths
    # The converter keeps the tiny model's settings (KerasHub's get_config drops two).
    inputs = vision.image_inputs(reloaded)
    assert vision.image_inputs(loaded) == vision.ImageInputs(
        **{**inputs.__dict__, "converter": loaded.image_converter}
    )
    image = np.random.default_rng(0).uniform(0, 255, (40, 48, 3)).astype(np.float32)
    for name, array in inputs.convert(reloaded.image_converter, image).items():
        np.testing.assert_array_equal(array, inputs.convert(loaded.image_converter, image)[name])


def test_a_gemma4_preset_without_a_saved_converter_gets_kerashub_s_default(tmp_path, capsys):
    tokenizer = testing.tiny_tokenizer("gemma4_vision")
    keras.utils.set_random_seed(3)
    backbone = testing.tiny_backbone("gemma4_vision", tokenizer.vocabulary_size())
    backbone.save_to_preset(str(tmp_path))
    tokenizer.save_to_preset(str(tmp_path))
    reloaded = model.load(str(tmp_path), "float32")
    assert "no image converter saved; using Gemma 4's default" in capsys.readouterr().out
    assert vision.image_inputs(reloaded).tokens_per_image == TOKENS
