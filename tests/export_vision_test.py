"""Exports of a tuned Gemma 3 with a vision encoder (`tiny:gemma3_vision`, random LoRA):
`--to=hf` loads as transformers' image-text-to-text `Gemma3ForConditionalGeneration` with its
`AutoProcessor`, whose ids and pixels for an image and a question equal ours and whose logits
equal the tuned model's (LoRA on the vision tower's attention and projector folded in);
`--to=peft` reproduces them on the exported base; `--to=keras` loads
back with its encoder and image converter.

    python -m pytest -q tests/export_vision_test.py            # --to=keras
    python -m pytest -q -m slow tests/export_vision_test.py    # --to=hf and --to=peft parity
"""

import json

import export_helpers
import numpy as np
import pytest

from gemma_tune import model
from gemma_tune.export import hf_export, merge, peft_export
from gemma_tune.model import vision, vision_lora

ARCHITECTURE = "tiny:gemma3_vision"
QUESTION = "What colour is the square?"
LENGTH = 64


def base_model():
    return model.load(ARCHITECTURE, "float32", seed=0)


def tuned_model(targets=("query", "value"), vision_targets=()):
    """The tiny vision model with random nonzero LoRA factors on `targets` and on the vision
    tower's `vision_targets` (`lora.vision_targets`)."""
    loaded = base_model()
    model.enable_lora(loaded, 4, targets=list(targets))
    vision_lora.enable(loaded, vision_targets, 4, 0.0, "lora", 0.0)
    rng = np.random.default_rng(1)
    for variable in loaded.causal_lm.trainable_variables:
        variable.assign(rng.normal(0, 0.2, variable.shape).astype(np.float32))
    return loaded


@pytest.fixture(scope="module")
def picture(tmp_path_factory):
    """A 32x32 RGB image (the encoder's size: both sides' resizing leaves it as it is)."""
    return export_helpers.random_picture(tmp_path_factory.mktemp("image"), 32)


def our_batch(loaded, picture):
    return export_helpers.image_prompt_batch(loaded, picture, QUESTION)


def keras_logits(loaded, batch):
    return export_helpers.image_model_logits(loaded, batch)


def hf_inputs(directory, picture):
    """transformers' processor output for `picture` and `QUESTION`, as a Gemma 3 prompt."""
    transformers = pytest.importorskip("transformers")
    processor = transformers.AutoProcessor.from_pretrained(str(directory))
    assert type(processor).__name__ == "Gemma3Processor"
    # The exported chat template writes the image part as <start_of_image>, which the
    # processor expands into the image span.
    messages = [
        {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": QUESTION}]}
    ]
    text = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    assert text == (
        f"<bos><start_of_turn>user\n{processor.tokenizer.boi_token}{QUESTION}<end_of_turn>\n"
        "<start_of_turn>model\n"
    )
    return processor(
        text=[text], images=[[picture.pixels()]], return_tensors="pt", add_special_tokens=False
    )


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


@pytest.mark.slow  # ~45 s on 2 shared CPU cores (torch, the tokenizer conversion, two models)
def test_hf_export_matches_the_tuned_logits_for_an_image_and_text(tmp_path, picture):
    # LoRA on the vision tower too: the merged export folds it in (`lora.vision_targets`).
    tuned = tuned_model(targets=model.LORA_TARGETS, vision_targets=vision_lora.TARGETS)
    batch = our_batch(tuned, picture)
    expected = keras_logits(tuned, batch)
    hf_export.save(tuned, str(tmp_path))
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["architectures"] == ["Gemma3ForConditionalGeneration"]
    assert config["mm_tokens_per_image"] == 16
    processor_config = json.loads((tmp_path / "preprocessor_config.json").read_text())
    assert processor_config["size"] == {"height": 32, "width": 32}
    assert processor_config["image_mean"] == processor_config["image_std"] == [0.5] * 3

    hf_model = hf_image_text_model(tmp_path)
    assert type(hf_model).__name__ == "Gemma3ForConditionalGeneration"
    inputs = hf_inputs(tmp_path, picture)
    # The same prompt ids (image span included) and the same pixels, channels first.
    assert inputs["input_ids"].numpy().tolist() == batch["token_ids"].tolist()
    np.testing.assert_allclose(
        inputs["pixel_values"].numpy()[0], batch["images"][0, 0].transpose(2, 0, 1), atol=1e-6
    )
    logits = run_hf(hf_model, inputs)
    print(f"max |HF - Keras| with an image: {np.abs(logits - expected).max():.2e}")
    np.testing.assert_allclose(logits, expected, atol=1e-4, rtol=0)
    # The image matters: another image changes the answer's logits on both sides.
    other = dict(batch, images=np.zeros_like(batch["images"]))
    assert np.abs(keras_logits(tuned, other)[0, -1] - expected[0, -1]).max() > 1e-3


@pytest.mark.slow  # ~37 s on 2 shared CPU cores
def test_peft_adapter_on_the_exported_base_matches_with_an_image(tmp_path, picture):
    peft = pytest.importorskip("peft")
    tuned = tuned_model()
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
    assert len(adapted) == 2 * tuned.backbone.num_layers  # q_proj and v_proj per layer
    logits = run_hf(peft_model.eval(), hf_inputs(tmp_path / "base", picture))
    np.testing.assert_allclose(logits, expected, atol=1e-4, rtol=0)


def test_keras_export_loads_back_with_its_encoder_and_image_converter(tmp_path, picture):
    tuned = tuned_model()
    batch = our_batch(tuned, picture)
    expected = keras_logits(tuned, batch)
    merge.save_keras_preset(tuned, str(tmp_path))
    assert model.reads_images(str(tmp_path))
    loaded = model.load(str(tmp_path), "float32")
    assert vision.encoder_of(loaded.backbone) is not None
    assert vision.image_inputs(loaded).tokens_per_image == 16
    reread = our_batch(loaded, picture)
    np.testing.assert_array_equal(reread["images"], batch["images"])
    np.testing.assert_allclose(keras_logits(loaded, reread), expected, atol=1e-5, rtol=0)


def test_gguf_export_refuses_a_model_that_reads_images(tmp_path):
    from gemma_tune.export import gguf_export

    with pytest.raises(ValueError, match="--to=gguf writes the language model alone"):
        gguf_export.save(base_model(), str(tmp_path))
    assert not list(tmp_path.iterdir())
