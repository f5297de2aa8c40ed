"""Each Gemma family module describes its models completely and is found from a model."""

import keras
import pytest

from gemma_tune import model, testing
from gemma_tune.model import families, keras_compat


@pytest.mark.parametrize("architecture", testing.ARCHITECTURES)
def test_a_tiny_model_is_found_to_be_of_its_family(architecture):
    loaded = model.load(f"tiny:{architecture}", dtype="float32")
    family = families.by_name(architecture)
    assert loaded.family is family
    assert isinstance(loaded.causal_lm, family.causal_lm_class)
    # Gemma 1 and 2 share a tokenizer class and its markers; the first family owning it answers.
    assert families.of_tokenizer(loaded.tokenizer).chat == family.chat


@pytest.mark.parametrize("architecture", testing.ARCHITECTURES)
def test_every_lora_target_names_projections_of_the_family(architecture):
    family = families.by_name(architecture)
    loaded = model.load(f"tiny:{architecture}", dtype="float32")
    dense_names = {
        layer.name
        for layer in keras_compat.all_layers(loaded.backbone)
        if isinstance(layer, keras.layers.EinsumDense)
    }
    assert set(family.lora_targets) <= dense_names
    for group, members in family.lora_target_groups.items():
        assert set(members) <= set(family.lora_targets), group
    assert set(family.default_lora_targets) <= set(family.lora_targets)
    # Every LoRA target has a PEFT module to export to.
    assert set(family.peft_modules) == set(family.lora_targets)


@pytest.mark.parametrize("architecture", testing.ARCHITECTURES)
def test_the_tokenizer_knows_the_family_turn_markers(architecture):
    family = families.by_name(architecture)
    tokenizer = testing.tiny_tokenizer(architecture)
    for marker in (family.chat.start_of_turn, family.chat.end_of_turn):
        assert tokenizer.token_to_id(marker) is not None


def test_unknown_names_and_models_are_refused_with_the_choices():
    with pytest.raises(ValueError, match="gemma1, gemma2, gemma3"):
        families.by_name("gemma9")
    with pytest.raises(ValueError, match="not a Gemma backbone"):
        families.of_backbone(keras.layers.Dense(2))
    with pytest.raises(ValueError, match="architecture 'llama' is not supported"):
        families.of_gguf_architecture("llama")


def test_a_family_checks_lora_targets_against_its_own_names():
    family = families.by_name("gemma3")
    assert model.lora_target_names(["attention"], family) == [
        "query",
        "key",
        "value",
        "attention_output",
    ]
    with pytest.raises(ValueError, match="unknown target 'q_proj' for Gemma 3"):
        model.lora_target_names(["q_proj"], family)


def test_a_requested_target_the_model_lacks_is_logged_as_skipped(capsys):
    loaded = model.load("tiny:gemma1", dtype="float32")
    # Remove every "key" projection from the walk by renaming them: the model then lacks it.
    for layer in keras_compat.all_layers(loaded.backbone):
        if layer.name == "key":
            layer.name = "key_renamed"
    model.enable_lora(loaded, rank=2, targets=["query", "key"])
    assert "has no 'key' layer; skipped" in capsys.readouterr().out
