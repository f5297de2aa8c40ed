"""Exports of a tuned Gemma 4 with a vision encoder (`tiny:gemma4_vision`, random LoRA):
`--to=hf` loads as transformers' `Gemma4ForConditionalGeneration` with its `AutoProcessor`,
whose ids, patches and positions for a 64x64 image and a question equal ours and whose logits
equal the tuned model's; `--to=peft` reproduces them on the exported base; `--to=keras` loads
back with its encoder and image converter.

    python -m pytest -q -m slow tests/export_gemma4_vision_test.py    # all three (slow)
"""

import json

import export_helpers
import keras
import numpy as np
import pytest

from gemma_tune import model
from gemma_tune.export import hf_export, merge, peft_export
from gemma_tune.model import vision
from gemma_tune.model.families import gemma4, gemma4_vision

ARCHITECTURE = "tiny:gemma4_vision"
QUESTION = "What colour is the square?"


def base_model():
    return model.load(ARCHITECTURE, "float32", seed=0)


def tuned_model(targets=("query", "value", "ffw_gating")):
    """The tiny model with random nonzero LoRA factors on `targets` (`ffw_gating`: one of the
    MLP kernels the Gemma 4 block multiplies by directly)."""
    loaded = base_model()
    model.enable_lora(loaded, 4, targets=list(targets))
    rng = np.random.default_rng(1)
    for variable in loaded.causal_lm.trainable_variables:
        variable.assign(rng.normal(0, 0.2, variable.shape).astype(np.float32))
    return loaded


@pytest.fixture(scope="module")
def tuned():
    return tuned_model()


@pytest.fixture(scope="module")
def picture(tmp_path_factory):
    """A 64x64 RGB image (the converter's square size: both sides keep its pixels)."""
    return export_helpers.random_picture(tmp_path_factory.mktemp("image"), 64)


def our_batch(loaded, picture):
    return export_helpers.image_prompt_batch(loaded, picture, QUESTION)


def keras_logits(loaded, batch):
    return export_helpers.image_model_logits(loaded, batch)


def hf_inputs(directory, picture):
    """transformers' processor output for `picture` and `QUESTION`, as a Gemma 4 prompt.

    `AutoProcessor` builds `Gemma4Processor`, which needs torchvision (for its video
    processor, never used on images); without torchvision the processor's parts are loaded
    from the same files and the image span expanded as `Gemma4Processor.replace_image_token`
    does: `boi_token`, `image_token` times the image's soft tokens, `eoi_token`.
    """
    import importlib.util

    transformers = pytest.importorskip("transformers")
    messages = [
        {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": QUESTION}]}
    ]
    if importlib.util.find_spec("torchvision") is not None:
        processor = transformers.AutoProcessor.from_pretrained(str(directory))
        assert type(processor).__name__ == "Gemma4Processor"
        text = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        inputs = processor(
            text=[text], images=[[picture.pixels()]], return_tensors="pt", add_special_tokens=False
        )
    else:
        tokenizer = transformers.AutoTokenizer.from_pretrained(str(directory))
        image_processor = transformers.AutoImageProcessor.from_pretrained(str(directory))
        assert type(image_processor).__name__.startswith("Gemma4ImageProcessor")
        text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        pixels = image_processor(images=[picture.pixels()], return_tensors="pt")
        (count,) = pixels["num_soft_tokens_per_image"]
        span = tokenizer.boi_token + tokenizer.image_token * int(count) + tokenizer.eoi_token
        inputs = {
            **tokenizer([text.replace(tokenizer.image_token, span)], return_tensors="pt",
                        add_special_tokens=False),
            **pixels,
        }  # fmt: skip
    assert text == f"<bos><|turn>user\n<|image|>{QUESTION}<turn|>\n<|turn>model\n"
    return {
        key: inputs[key]
        for key in ("input_ids", "attention_mask", "pixel_values", "image_position_ids")
    }


def hf_image_text_model(directory):
    transformers = pytest.importorskip("transformers")
    torch = pytest.importorskip("torch")
    hf_model, info = transformers.AutoModelForImageTextToText.from_pretrained(
        str(directory), dtype=torch.float32, output_loading_info=True
    )
    assert not any(info.values()), info  # no missing, unexpected or mismatched weights
    return hf_model.eval()


def run_hf(hf_model, inputs):
    import torch

    with torch.no_grad():
        return hf_model(**inputs).logits.numpy()


@pytest.mark.slow  # ~50 s on 2 shared CPU cores (torch, the tokenizer conversion, two models)
def test_hf_export_matches_the_tuned_logits_for_an_image_and_text(tmp_path, tuned, picture):
    batch = our_batch(tuned, picture)
    expected = keras_logits(tuned, batch)
    hf_export.save(tuned, str(tmp_path))
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["architectures"] == ["Gemma4ForConditionalGeneration"]
    processor = json.loads((tmp_path / "processor_config.json").read_text())
    assert processor["image_seq_length"] == 64
    assert processor["image_processor"]["max_soft_tokens"] == 70

    hf_model = hf_image_text_model(tmp_path)
    assert type(hf_model).__name__ == "Gemma4ForConditionalGeneration"
    inputs = hf_inputs(tmp_path, picture)
    # The same prompt ids (image span included), patches and patch positions.
    assert inputs["input_ids"].numpy().tolist() == batch["token_ids"].tolist()
    np.testing.assert_allclose(
        inputs["pixel_values"].numpy()[0], batch["pixel_values"][0, 0], atol=1e-6
    )
    np.testing.assert_array_equal(
        inputs["image_position_ids"].numpy()[0], batch["pixel_position_ids"][0, 0]
    )
    logits = run_hf(hf_model, inputs)
    print(f"max |HF - Keras| with an image: {np.abs(logits - expected).max():.2e}")
    np.testing.assert_allclose(logits, expected, atol=1e-4, rtol=0)
    # The image matters: another image changes the answer's logits.
    other = dict(batch, pixel_values=np.zeros_like(batch["pixel_values"]))
    assert np.abs(keras_logits(tuned, other)[0, -1] - expected[0, -1]).max() > 1e-3


@pytest.mark.slow  # ~45 s on 2 shared CPU cores
def test_peft_adapter_on_the_exported_base_matches_with_an_image(tmp_path, tuned, picture):
    peft = pytest.importorskip("peft")
    batch = our_batch(tuned, picture)
    expected = keras_logits(tuned, batch)
    hf_export.save(base_model(), str(tmp_path / "base"))
    peft_export.save(tuned, str(tmp_path / "adapter"), str(tmp_path / "base"))
    config = json.loads((tmp_path / "adapter" / peft_export.CONFIG_FILE).read_text())
    assert config["target_modules"].startswith(r"model\.language_model\.layers")
    peft_model = peft.PeftModel.from_pretrained(
        hf_image_text_model(tmp_path / "base"), str(tmp_path / "adapter")
    )
    adapted = [name for name, _ in peft_model.named_modules() if name.endswith(".lora_A")]
    assert adapted and all(".language_model.layers." in name for name in adapted)
    logits = run_hf(peft_model.eval(), hf_inputs(tmp_path / "base", picture))
    np.testing.assert_allclose(logits, expected, atol=1e-4, rtol=0)


@pytest.mark.slow  # ~35 s on 2 shared CPU cores: saves, reloads and runs the model twice
def test_keras_export_loads_back_with_its_encoder_and_image_converter(tmp_path, tuned, picture):
    batch = our_batch(tuned, picture)
    expected = keras_logits(tuned, batch)
    merge.save_keras_preset(tuned, str(tmp_path))
    assert model.reads_images(str(tmp_path))
    loaded = model.load(str(tmp_path), "float32")
    assert vision.encoder_of(loaded.backbone) is not None
    assert vision.image_inputs(loaded).tokens_per_image == 64
    reread = our_batch(loaded, picture)
    for key in ("token_ids", "pixel_values", "pixel_position_ids", "vision_indices"):
        np.testing.assert_array_equal(reread[key], batch[key])
    # LoRA merged into the kernels (float32 rounding): within 1e-4 plus 1e-4 relative. On a
    # 2-core AVX-512 CPU 3 of 37,632 logits (near 2.0) differ by up to 1.36e-4, with this
    # code and with the code before the XLA flag and remat changes alike (AVX2: within 1e-4).
    np.testing.assert_allclose(keras_logits(loaded, reread), expected, atol=1e-4, rtol=1e-4)


def bidirectional_model(window: int):
    """`tiny:gemma4_vision`'s shape with image tokens attending both ways (as the 26B and 31B
    presets' do) and a `window`-token sliding window."""
    base = base_model()
    keras.utils.set_random_seed(0)
    common = dict(
        vocabulary_size=base.tokenizer.vocabulary_size(), num_layers=4, num_query_heads=4,
        num_key_value_heads=2, hidden_dim=32, intermediate_dim=64, head_dim=8, dtype="float32",
    )  # fmt: skip

    def text(c, **extra):
        extra = {**extra, "sliding_window_size": window}
        return gemma4.tiny_backbone(c, use_vision_bidirectional_attention=True, **extra)

    backbone = gemma4_vision.tiny_vision_backbone(text, common)
    causal_lm = model.causal_lm_for(backbone)
    return model.LoadedModel(
        causal_lm, base.tokenizer, ARCHITECTURE, image_converter=base.image_converter
    )


@pytest.mark.slow  # ~30 s on 2 shared CPU cores
def test_bidirectional_image_attention_exports_when_the_image_fits_the_window(tmp_path, picture):
    loaded = bidirectional_model(window=256)
    batch = our_batch(loaded, picture)
    expected = keras_logits(loaded, batch)
    hf_export.save(loaded, str(tmp_path))
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["text_config"]["use_bidirectional_attention"] == "vision"
    inputs = hf_inputs(tmp_path, picture)
    # transformers learns where images are from `mm_token_type_ids` (its processor's).
    image_token = loaded.tokenizer.token_to_id("<|image|>")
    inputs["mm_token_type_ids"] = (inputs["input_ids"] == image_token).long()
    logits = run_hf(hf_image_text_model(tmp_path), inputs)
    np.testing.assert_allclose(logits, expected, atol=1e-4, rtol=0)
    # Both ways: the image's first token sees its last on our side.
    causal = bidirectional_model(window=256)
    causal.backbone.use_vision_bidirectional_attention = False
    for block in causal.backbone.transformer_layers:
        block.use_vision_bidirectional_attention = False
    assert np.abs(keras_logits(causal, batch) - expected).max() > 1e-3


def test_bidirectional_image_attention_past_the_window_is_refused(tmp_path):
    with pytest.raises(ValueError, match="tokens attend both ways but pass the 8-token"):
        hf_export.save(bidirectional_model(window=8), str(tmp_path / "hf"))
    assert not (tmp_path / "hf").exists()  # refused before anything is written
