"""The private Keras/KerasHub APIs gemma_tune uses still exist and behave as it expects.

Every one of them goes through `gemma_tune.model.keras_compat`; these tests fail with the API
named when an upstream release changes one.
"""

import ast
import pathlib

import keras
import numpy as np
import pytest

import gemma_tune
from gemma_tune import model, testing
from gemma_tune.model import families, keras_compat, lora

PACKAGE = pathlib.Path(gemma_tune.__file__).parent


@pytest.mark.parametrize("architecture", testing.ARCHITECTURES)
def test_every_private_api_is_there_for_each_family(architecture):
    loaded = model.load(f"tiny:{architecture}", dtype="float32")
    keras_compat.verify(loaded.causal_lm, loaded.family.cache_arguments)


def test_a_missing_private_api_is_named_with_the_tested_versions():
    class Bare(keras.layers.Layer):
        pass

    with pytest.raises(keras_compat.UpstreamChanged, match=r"Bare\._kernel.*keras 3\.15") as error:
        keras_compat.kernel_variable(Bare())
    assert "read a projection's frozen kernel" in str(error.value)


def test_the_wrong_cache_arity_is_reported_as_an_upstream_change():
    loaded = model.load("tiny:gemma3", dtype="float32")
    with pytest.raises(keras_compat.UpstreamChanged, match="_build_cache"):
        keras_compat.verify(loaded.causal_lm, extra_cache_arguments=0)


@pytest.mark.parametrize("mode", ["int8", "int4"])
def test_dequantized_kernel_matches_the_float_kernel(mode):
    layer = keras.layers.EinsumDense("ab,bc->ac", output_shape=(8,))
    layer.build((2, 64))
    rng = np.random.default_rng(0)
    weights = rng.normal(0, 0.1, (64, 8)).astype(np.float32)
    layer.kernel.assign(weights)
    config = (
        keras.quantizers.Int8QuantizationConfig(activation_quantizer=None)
        if mode == "int8"
        else keras.quantizers.Int4QuantizationConfig(block_size=32, activation_quantizer=None)
    )
    layer.quantize(mode, config=config)
    restored = np.asarray(keras_compat.dequantized_kernel(layer))
    assert restored.shape == weights.shape
    tolerance = 0.01 if mode == "int8" else 0.05
    assert np.abs(restored - weights).max() < tolerance
    assert np.abs(restored - weights).max() > 0  # it was really quantized


def test_adopt_class_keeps_the_layer_and_its_weights():
    layer = keras.layers.EinsumDense("ab,bc->ac", output_shape=(4,))
    layer.build((1, 3))
    before = [v.path for v in layer.weights]
    keras_compat.adopt_class(layer, lora.AdaptedEinsumDense)
    assert isinstance(layer, lora.AdaptedEinsumDense)
    assert [v.path for v in layer.weights] == before
    with pytest.raises(TypeError, match="not a subclass"):
        keras_compat.adopt_class(layer, keras.layers.Dense)


def test_narrowed_masks_apply_inside_and_are_removed_after():
    loaded = model.load("tiny:gemma1", dtype="float32")
    blocks = loaded.backbone.transformer_layers
    token_ids = np.array([[2, 5, 6, 7]], np.int32)
    inputs = {"token_ids": token_ids, "padding_mask": np.ones_like(token_ids)}
    plain = np.asarray(loaded.causal_lm(inputs))
    calls = []

    def narrow(mask):
        calls.append(mask.shape)
        return mask

    with keras_compat.narrowed_attention_masks(blocks, narrow):
        inside = np.asarray(loaded.causal_lm(inputs))
    assert len(calls) == len(blocks)
    np.testing.assert_allclose(inside, plain, rtol=1e-6)
    assert all("_compute_attention_mask" not in vars(block) for block in blocks)


def _private_touches(path: pathlib.Path) -> list[str]:
    """`keras.src` imports and underscored attributes read on objects other than self/cls."""
    tree = ast.parse(path.read_text())
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("keras.src"):
            found.append(f"{path.name}:{node.lineno} from {node.module}")
        elif isinstance(node, ast.Import) and any(
            a.name.startswith("keras.src") for a in node.names
        ):
            found.append(f"{path.name}:{node.lineno} import keras.src")
        elif (
            isinstance(node, ast.Attribute)
            and node.attr.startswith("_")
            and not node.attr.startswith("__")
            and not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"))
        ):
            found.append(f"{path.name}:{node.lineno} .{node.attr}")
    return found


def test_no_module_but_keras_compat_touches_private_upstream_api():
    # Our own private names (self._x, module._helper) are fine; Keras/KerasHub's are not.
    ours = {"_private_touches", "_encoder"}
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.name == "keras_compat.py":
            continue
        touches = _private_touches(path)
        offenders += [t for t in touches if t.rsplit(".", 1)[-1] not in ours]
    assert offenders == []


def test_no_module_outside_the_families_names_a_gemma_class():
    names = {
        cls.__name__
        for family in families.ALL
        for cls in (
            family.backbone_class,
            family.causal_lm_class,
            family.preprocessor_class,
            family.tokenizer_class,
        )
    }
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if "families" in path.parts:
            continue
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and node.attr in names:
                offenders.append(f"{path.relative_to(PACKAGE)}:{node.lineno} {node.attr}")
    assert offenders == []
