"""A multimodal Gemma 4 preset (vision and audio encoders, as the KerasHub "E" presets have)
loads with its vision encoder and without its audio encoder: the audio encoder is not built,
its weights not read, every other weight is the preset's, the run log says what was left out,
and the model runs on text alone. A preset of another architecture is refused before loading.
(Images on Gemma 4: `gemma4_vision_test.py`; Gemma 3: `vision_preset_test.py`.)

    python -m pytest -q tests/multimodal_preset_test.py
"""

import keras
import keras_hub
import numpy as np
import pytest

from gemma_tune import model, testing
from gemma_tune.model import vision
from gemma_tune.model.families import gemma4


def _tiny_common(tokenizer) -> dict:
    return dict(
        vocabulary_size=tokenizer.vocabulary_size(),
        num_layers=4,
        num_query_heads=4,
        num_key_value_heads=2,
        hidden_dim=32,
        intermediate_dim=64,
        head_dim=8,
        dtype="float32",
    )


def _gemma4_with_encoders(tokenizer):
    """A tiny Gemma 4 "E" model with a vision and an audio encoder."""
    vision = keras_hub.models.Gemma4VisionEncoder(
        image_size=16, patch_size=4, num_heads=2, hidden_dim=16, num_layers=1,
        intermediate_dim=32, head_dim=8, output_dim=32, pool_size=2,
    )  # fmt: skip
    audio = keras_hub.models.Gemma4AudioEncoder(
        input_feat_size=16, hidden_size=16, num_heads=2, num_layers=1,
        sscp_conv_channels=(8, 4), output_proj_dims=16, output_dim=32,
    )  # fmt: skip
    layout = {**gemma4._tiny_layout(_tiny_common(tokenizer)), "image_size": 16}
    return keras_hub.models.Gemma4Backbone(
        **layout,
        vision_encoder=vision,
        audio_encoder=audio,
        num_kv_shared_layers=2,
        hidden_size_per_layer_input=4,
        vocab_size_per_layer_input=tokenizer.vocabulary_size(),
    )


def test_a_multimodal_gemma4_preset_loads_without_its_audio_encoder(tmp_path, capsys):
    tokenizer = testing.tiny_tokenizer("gemma4_vision")
    keras.utils.set_random_seed(3)
    multimodal = _gemma4_with_encoders(tokenizer)
    multimodal.save_to_preset(str(tmp_path))
    tokenizer.save_to_preset(str(tmp_path))

    loaded = model.load(str(tmp_path), "float32")

    out = capsys.readouterr().out
    assert "without the audio encoder (gemma_tune reads text and images only" in out
    assert "no image converter saved; using Gemma 4's default" in out
    backbone = loaded.backbone
    assert loaded.family.name == "gemma4"
    assert backbone.vision_encoder is not None and backbone.audio_encoder is None
    saved = {variable.path: np.asarray(variable.numpy()) for variable in multimodal.weights}
    for variable in backbone.weights:
        np.testing.assert_array_equal(np.asarray(variable.numpy()), saved[variable.path])
    audio_paths = {w.path for w in multimodal.audio_encoder.weights}
    assert not audio_paths & {w.path for w in backbone.weights}
    # The language model runs on text alone (empty image inputs).
    token_ids = np.array([[2, 10, 11, 12, 13]], np.int32)
    batch = {"token_ids": token_ids, "padding_mask": np.ones_like(token_ids, bool)}
    inputs = loaded.family.backbone_inputs(token_ids, batch["padding_mask"])
    inputs.update(vision.backbone_inputs(backbone, batch))
    assert np.isfinite(np.asarray(loaded.causal_lm(inputs))).all()


def test_a_preset_of_another_architecture_is_refused_before_loading(tmp_path):
    keras_hub.models.GPT2Backbone(
        vocabulary_size=16, num_layers=1, num_heads=2, hidden_dim=8, intermediate_dim=16,
        max_sequence_length=8,
    ).save_to_preset(str(tmp_path))  # fmt: skip
    with pytest.raises(ValueError, match="GPT2Backbone is not a Gemma backbone"):
        model.load_text_backbone(str(tmp_path), "float32")
