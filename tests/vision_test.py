"""Vision tuning on the tiny Gemma 3 with a vision encoder (`tiny:gemma3_vision`): the image
span in the prompt, loss on answers only, the image reaching the answer's logits, the frozen
vision encoder, text rows on a vision model, packing refused, generation seeing the image."""

import os

import numpy as np
import pytest
import vision_helpers
from vision_helpers import bundled_image, chat, with_image

from gemma_tune import model, testing
from gemma_tune.data import example, images
from gemma_tune.evaluation import generate
from gemma_tune.model import tuning, vision
from gemma_tune.training import batching, packing, template, trainer

LENGTH = 96


@pytest.fixture(scope="module")
def loaded():
    return model.load("tiny:gemma3_vision", dtype="float32")


@pytest.fixture(scope="module")
def bundled_rows():
    return vision_helpers.bundled_rows()


def test_tiny_vision_model_has_the_image_tokens_and_an_encoder(loaded):
    inputs = vision.image_inputs(loaded)
    assert (inputs.image_size, inputs.tokens_per_image) == (32, 16)
    ids = {inputs.start_of_image_id, inputs.placeholder_id, inputs.end_of_image_id}
    assert len(ids) == 3 and all(3 < i < loaded.tokenizer.vocabulary_size() for i in ids)
    assert model.has_vision_encoder("tiny:gemma3_vision")
    assert not model.has_vision_encoder("tiny:gemma3")
    assert model.reads_images("tiny:gemma3_vision")
    assert not model.reads_images("tiny:gemma3")
    assert vision.image_inputs(model.load("tiny:gemma3", dtype="float32")) is None
    with pytest.raises(ValueError, match="Gemma 2 has no vision model"):
        testing.tiny_backbone("gemma2_vision")


def test_the_image_span_sits_where_the_image_is_and_never_carries_loss(loaded, bundled_rows):
    inputs = vision.image_inputs(loaded)
    row = bundled_rows[0]  # OpenAI parts: the image, then the question.
    for train_on_prompt in (False, True):
        encoded = chat(loaded, train_on_prompt).encode(row, LENGTH)
        (placed,) = encoded.images
        ids, weights = encoded.token_ids, encoded.target_weights
        span = slice(placed.start - 1, placed.start + inputs.tokens_per_image + 1)
        assert ids[placed.start - 1] == inputs.start_of_image_id
        assert (ids[placed.start : placed.start + 16] == inputs.placeholder_id).all()
        assert ids[placed.start + 16] == inputs.end_of_image_id
        assert (ids == inputs.placeholder_id).sum() == 16
        assert (weights[span] == 0).all()
        assert weights.sum() > 0
    answer = chat(loaded).encode(row, LENGTH)
    # Without train_on_prompt only the answer and its end of turn carry loss.
    decoded = loaded.tokenizer.detokenize(answer.token_ids[answer.target_weights > 0])
    assert decoded.startswith(row.turns[1].text)


def test_a_span_the_length_would_cut_is_cut_whole(loaded, bundled_rows):
    encoded = chat(loaded).encode(bundled_rows[0], 12)  # the span ends past 12 input positions
    assert encoded.images == ()
    assert vision.image_inputs(loaded).placeholder_id not in encoded.token_ids
    assert encoded.target_weights.sum() == 0  # dropped by encoding, as a cut-away answer


def test_a_text_only_model_refuses_image_rows_naming_the_image(bundled_rows):
    text_only = model.load("tiny:gemma3", dtype="float32")
    with pytest.raises(
        ValueError, match=r"train.jsonl:1:messages\[0\].*this model does not read images"
    ):
        template.ChatTemplate(text_only.tokenizer).encode(bundled_rows[0], LENGTH)


def test_packing_refuses_image_rows(loaded, bundled_rows):
    encoded = [chat(loaded).encode(row, LENGTH) for row in bundled_rows[:2]]
    with pytest.raises(ValueError, match="train.packing does not apply to image rows"):
        packing.combine(encoded, LENGTH)


def logits(loaded, batch):
    inputs = loaded.family.backbone_inputs(batch["token_ids"], batch["padding_mask"])
    inputs.update(vision.backbone_inputs(loaded.backbone, batch))
    return np.asarray(loaded.causal_lm(inputs))


@pytest.mark.slow  # ~30 s on 2 shared CPU cores: a compiled validation pass, two forward passes
def test_loss_ignores_image_token_targets_and_the_image_changes_the_answer(loaded, bundled_rows):
    template_ = chat(loaded)
    rows = [with_image(bundled_rows[0], bundled_image(i)) for i in (0, 150)]
    batch = batching.pack([template_.encode(row, LENGTH) for row in rows], LENGTH, 0, 2)
    tuner = trainer.Trainer(loaded.causal_lm, None)
    loss = tuner.evaluate([batch])["loss"]
    changed = dict(batch)
    placeholder = vision.image_inputs(loaded).placeholder_id
    changed["target_ids"] = np.where(batch["target_ids"] == placeholder, 100, batch["target_ids"])
    assert (changed["target_ids"] != batch["target_ids"]).sum() == 2 * 16
    assert tuner.evaluate([changed])["loss"] == pytest.approx(loss, rel=1e-6)

    answers = batch["target_weights"] > 0
    two = logits(loaded, batch)
    same = dict(batch, images=np.repeat(batch["images"][:1], 2, axis=0))
    one = logits(loaded, same)
    # Row 0 keeps its image: unchanged; row 1 sees row 0's image: its answer logits change.
    np.testing.assert_allclose(one[0], two[0], atol=1e-5)
    assert np.abs(one[1][answers[1]] - two[1][answers[1]]).max() > 1e-3
    # Before the image, nothing changes (causal attention).
    start = np.flatnonzero(batch["vision_mask"][1])[0]
    np.testing.assert_allclose(one[1][: start - 1], two[1][: start - 1], atol=1e-5)


def test_dora_leaves_the_vision_encoder_frozen():
    loaded = model.load("tiny:gemma3_vision", dtype="float32")
    tuning.enable_tuning(loaded, "dora", _lora_settings())
    encoder_paths = {w.path for w in vision.encoder_of(loaded.backbone).weights}
    trainable_paths = {v.path for v in loaded.backbone.trainable_variables}
    assert trainable_paths and not trainable_paths & encoder_paths


def _lora_settings():
    import ml_collections

    return ml_collections.ConfigDict(
        {"rank": 4, "alpha": 0.0, "targets": ["query", "value"], "dropout": 0.0,
         "layout": "per_head"}
    )  # fmt: skip


@pytest.mark.slow  # ~40 s on 2 shared CPU cores: compiles the decoder with and without images
def test_generation_sees_the_image(loaded, bundled_rows):
    template_ = chat(loaded)
    rows = [with_image(bundled_rows[1], bundled_image(i)) for i in (3, 90, 200, 300)]
    prompts = [template_.encode_prompt(row) for row in rows]
    placed = [template_.prompt_images(row) for row in rows]
    assert all(len(p) == 1 for p in placed)
    first = generate.generate_ids(loaded.causal_lm, prompts, 1, (), batch_size=2, images=placed)
    # The cached prefill with images gives the full forward pass's next token.
    for prompt, images_, new in zip(prompts, placed, first, strict=True):
        batch = {"token_ids": prompt[None], "padding_mask": np.ones((1, len(prompt)), bool)}
        batch.update(vision.batch_arrays([images_], 1, len(prompt)))
        assert new[0] == np.argmax(logits(loaded, batch)[0, -1])
    text = template_.encode_prompt(bundled_rows[1])
    assert (text == prompts[0]).all()


def test_the_comparison_keeps_each_prompt_image_as_a_thumbnail(bundled_rows):
    import base64
    import io

    from PIL import Image

    from gemma_tune.evaluation import comparison

    text_row = example.Example(
        turns=(example.Turn(example.USER, "Hi?"), example.Turn(example.MODEL, "Hello"))
    )
    rows = [bundled_rows[0], text_row]
    compared = comparison.compare(rows, {"base": ["left", "Hello"]}).to_dict()
    (url,) = compared["examples"][0]["thumbnails"]
    assert url.startswith("data:image/png;base64,")
    shown = np.asarray(Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))))
    np.testing.assert_array_equal(shown, bundled_rows[0].turns[0].images[0].pixels())  # 64x64
    assert "thumbnails" not in compared["examples"][1]
    big = images.check("big", "image", path=_big_png())
    shrunk = Image.open(io.BytesIO(base64.b64decode(comparison.thumbnail_url(big)[22:])))
    assert shrunk.size == (96, 48)


def _big_png():
    import tempfile

    from PIL import Image

    path = os.path.join(tempfile.mkdtemp(), "big.png")
    Image.new("RGB", (400, 200), (10, 200, 30)).save(path)
    return path
