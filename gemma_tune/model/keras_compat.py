"""Every place gemma_tune reaches into Keras' or KerasHub's private API, with the reason.

Nothing else in gemma_tune imports `keras.src`, reads an underscored attribute of a Keras or
KerasHub object, swaps a class or patches a method: it calls a function here. When an upstream
release renames one of these, `verify` (run by `tests/keras_compat_test.py` on a tiny model of
every family) fails with `UpstreamChanged`, naming the API and the versions it was written for,
instead of a training run going wrong somewhere downstream.

Tested with keras 3.15.1 and keras-hub 0.32.0 (the ranges in pyproject.toml).
"""

from __future__ import annotations

import contextlib

import keras

TESTED_WITH = "keras 3.15.1, keras-hub 0.32.0"


class UpstreamChanged(RuntimeError):
    """A private Keras/KerasHub API gemma_tune relies on is missing or has changed."""

    def __init__(self, api: str, why: str):
        super().__init__(
            f"{api} is missing or changed in this Keras/KerasHub release (gemma_tune was "
            f"tested with {TESTED_WITH}); gemma_tune uses it to {why}. Install the tested "
            "versions or report this."
        )


def _attribute(owner, name: str, why: str):
    if not hasattr(owner, name):
        raise UpstreamChanged(f"{type(owner).__name__}.{name}", why)
    return getattr(owner, name)


def all_layers(layer, include_self: bool = False) -> list:
    """Every sublayer of `layer`, depth first, in a stable order.

    Why private: `Layer._flatten_layers` is what KerasHub's own `Backbone.enable_lora` walks;
    the public `layer.layers` lists direct children only.
    """
    flatten = _attribute(layer, "_flatten_layers", "walk every layer of a model")
    return list(flatten(include_self=include_self))


def kernel_variable(layer):
    """The stored kernel variable of an EinsumDense (int8/int4 values when quantized).

    Why private: the public `kernel` property returns the LoRA-merged value once LoRA is
    enabled; adapters, merging and export need the frozen variable itself and its path.
    """
    return _attribute(layer, "_kernel", "read a projection's frozen kernel")


def embeddings_variable(embedding):
    """The stored embedding table of a (possibly int8) `ReversibleEmbedding`.

    Why private: the public `embeddings` property is the float view; dequantizing needs the
    stored int8 rows.
    """
    return _attribute(embedding, "_embeddings", "read the quantized embedding table")


def dequantized_kernel(layer):
    """An int8 or int4 EinsumDense's kernel as float32, in the kernel's original shape.

    Why private: Keras dequantizes only inside its quantized `call`; QLoRA needs the float
    kernel in its own forward pass (`lora.float_kernel`) and for merging. Keras keeps the
    int4 unpacking and grouped dequantization in `keras.src.quantizers`.
    """
    from keras import ops

    mode = layer.quantization_mode
    stored = kernel_variable(layer)
    if mode == "int8":
        adjust = _attribute(layer, "_adjust_scale_for_dequant", "dequantize int8 kernels")
        scale = adjust(layer.kernel_scale)
        return ops.divide(ops.cast(stored, "float32"), scale)
    if mode != "int4":
        raise ValueError(f"{layer.path}: cannot dequantize a {mode} kernel (int8 or int4)")
    try:
        from keras.src import quantizers
        from keras.src.quantizers.quantizers import dequantize_with_sz_map
    except ImportError as error:
        raise UpstreamChanged("keras.src.quantizers", "dequantize int4 kernels") from error
    columns = _attribute(layer, "_int4_unpacked_column_size", "unpack int4 kernels")
    unpacked = quantizers.unpack_int4(stored, columns, axis=-1)
    block_size = int4_block_size(layer)
    if block_size is not None and block_size != -1:
        kernel = dequantize_with_sz_map(
            unpacked, layer.kernel_scale, layer.kernel_zero, layer.g_idx, group_axis=0
        )
    else:
        kernel = ops.divide(ops.cast(unpacked, "float32"), layer.kernel_scale)
    return ops.reshape(kernel, layer.original_kernel_shape)


def int4_block_size(layer) -> int | None:
    """Inputs per int4 scale of a quantized EinsumDense (None or -1: one scale per column).

    Why private: Keras records the group size only as `_int4_block_size`.
    """
    return getattr(layer, "_int4_block_size", None)


def adopt_class(layer, cls) -> None:
    """Makes a built layer an instance of `cls` (a subclass of its class), keeping its weights.

    Why: KerasHub's attention and MLP blocks hold their projections as attributes, so an
    adapted projection must stay the same object; Keras has no API to replace a sublayer.
    """
    if not issubclass(cls, type(layer)):
        raise TypeError(f"{cls.__name__} is not a subclass of {type(layer).__name__}")
    layer.__class__ = cls


@contextlib.contextmanager
def adding_weights(layer):
    """Lets weights be added to an already built layer (Keras locks its tracker after build).

    Why private: `Layer._tracker` has no public unlock; LoRA's extra factors (magnitude,
    dropout seed) are added after build, as Keras' own `enable_lora` does internally.
    """
    tracker = _attribute(layer, "_tracker", "add adapter weights to a built layer")
    tracker.unlock()
    try:
        yield
    finally:
        tracker.lock()


def record_lora(backbone, enabled_layer_indices: list[int], rank: int) -> None:
    """Records LoRA on `backbone` the way KerasHub's `enable_lora` does.

    Why private: KerasHub's `save_lora_weights` and `get_config` read `_lora_enabled_layers`
    and `_lora_rank`; setting them keeps its helpers consistent with our adapters.
    """
    backbone._lora_enabled_layers = list(enabled_layer_indices)
    backbone._lora_rank = rank


def enable_remat(layer, policy=None) -> None:
    """Recomputes `layer`'s activations in the backward pass (gradient checkpointing); with a
    `jax.checkpoint_policies` policy, only what the policy does not save.

    Why private: `keras.RematScope` only applies to layers built inside it; a built model's
    layers take the mode from `Layer._remat_mode`, which the scope would have set. Keras wraps
    the call in `jax.checkpoint` without a policy (`Layer.rematerialized_call`), so for a
    policy this layer's `rematerialized_call` is replaced by one that passes it.
    """
    _attribute(layer, "_remat_mode", "turn on rematerialization for a built layer")
    layer._remat_mode = keras.RematScope(mode="full")
    if policy is not None:
        import jax

        _attribute(layer, "rematerialized_call", "rematerialize a layer with a policy")
        layer.rematerialized_call = lambda call, *args, **kwargs: jax.checkpoint(
            call, policy=policy
        )


def learning_rate_schedule(optimizer):
    """The optimizer's learning rate as given (a schedule object, or a float).

    Why private: the public `learning_rate` property evaluates the schedule at the current
    iteration; the compiled step evaluates it itself at each step.
    """
    return _attribute(optimizer, "_learning_rate", "read the learning-rate schedule")


def build_cache(causal_lm, token_ids, extra_arguments: int = 0):
    """KerasHub's KV cache for `token_ids`, as its own `generate` builds it.

    Args:
      causal_lm: a KerasHub CausalLM.
      token_ids: `[batch, length]` ids.
      extra_arguments: how many further (None) arguments this CausalLM's `_build_cache` takes
        (0 for Gemma 1/2; Gemma 3's takes four multimodal inputs); the family says.

    Why private: `_build_cache` is KerasHub's only way to build the cache that
    `call_with_cache` reads; our decoder prefills only the prompts (`evaluation.generate`).
    """
    build = _attribute(causal_lm, "_build_cache", "build the generation KV cache")
    return build(token_ids, *([None] * extra_arguments))


def preset_backbone_config(preset: str) -> tuple[type, dict]:
    """The backbone class a preset holds and the preset's raw `config.json`, read without
    loading any weight.

    Args:
      preset: a KerasHub preset name, a local preset directory or an `hf://` handle.

    Returns:
      `(backbone class, config)`: KerasHub's config (`{"class_name", "config": {...}}`) for
      Keras presets, transformers' `config.json` for `hf://` ones.

    Why private: KerasHub reads both only inside `from_preset`; knowing the class first lets
    gemma_tune refuse a non-Gemma preset before loading it, and load a multimodal Gemma's
    language model alone, or with its vision encoder (Gemma 3 4B+, Gemma 4) (`model.load`).
    """
    try:
        from keras_hub.src.utils import preset_utils

        loader = preset_utils.get_preset_loader(preset)
        return loader.check_backbone_class(), dict(loader.config)
    except (ImportError, AttributeError) as error:
        raise UpstreamChanged(
            "keras_hub.src.utils.preset_utils.get_preset_loader",
            f"read a preset's config ({error})",
        ) from error


@contextlib.contextmanager
def narrowed_attention_masks(blocks, narrow):
    """While active, every decoder block's attention mask is passed through `narrow(mask)`.

    Why private: KerasHub's decoder blocks build their causal/padding mask in
    `_compute_attention_mask` and offer no hook; packing (`training.packing`) narrows it to
    each example's own tokens. The patch is on the instances and removed on exit.
    """
    blocks = list(blocks)
    for block in blocks:
        original = _attribute(
            block, "_compute_attention_mask", "keep packed examples from attending to each other"
        )

        def narrowed(*args, _original=original, **kwargs):
            return narrow(_original(*args, **kwargs))

        block._compute_attention_mask = narrowed
    try:
        yield
    finally:
        for block in blocks:
            del block._compute_attention_mask


def preprocessor_for_saving(preprocessor_class, **arguments):
    """A KerasHub CausalLM preprocessor built only to be saved into a preset directory
    (`preprocessor.json`, which KerasHub's `CausalLM.from_preset` reads).

    Why private: Gemma 3's and Gemma 4's preprocessors refuse to be built without TensorFlow
    (`assert_tf_installed`, bound in their modules), which they need for `tf.data` pipelines,
    not for their configuration; gemma_tune keeps TensorFlow out of its processes
    (`gemma_tune.import_guard`) and never calls the preprocessor, so the check is skipped
    while it is built, as it would pass with TensorFlow loaded.
    """
    import sys

    module = sys.modules[preprocessor_class.__module__]
    check = getattr(module, "assert_tf_installed", None)
    if check is None:  # Gemma 1 and 2: no check
        return preprocessor_class(**arguments)
    module.assert_tf_installed = lambda symbol_name: None
    try:
        return preprocessor_class(**arguments)
    finally:
        module.assert_tf_installed = check


def verify(causal_lm, extra_cache_arguments: int = 0) -> None:
    """Checks every private API above on a built (tiny) CausalLM; raises `UpstreamChanged`.

    Run by the tests on each family, so an upstream release that breaks one of them fails CI
    with the API named.
    """
    backbone = causal_lm.backbone
    layers = all_layers(backbone)
    dense = [layer for layer in layers if isinstance(layer, keras.layers.EinsumDense)]
    if not dense:
        raise UpstreamChanged("EinsumDense projections", "find the layers LoRA adapts")
    kernel_variable(dense[0])
    embeddings_variable(backbone.token_embedding)
    _attribute(dense[0], "_tracker", "add adapter weights to a built layer")
    _attribute(dense[0], "_remat_mode", "turn on rematerialization for a built layer")
    _attribute(dense[0], "rematerialized_call", "rematerialize a layer with a policy")
    block = backbone.transformer_layers[0]
    _attribute(block, "_compute_attention_mask", "keep packed examples apart")
    import numpy as np

    try:
        build_cache(causal_lm, np.zeros((1, 4), "int32"), extra_cache_arguments)
    except TypeError as error:  # another signature
        api = f"{type(causal_lm).__name__}._build_cache"
        raise UpstreamChanged(api, f"build the KV cache ({error})") from error
    optimizer = keras.optimizers.AdamW(learning_rate=1e-3)
    learning_rate_schedule(optimizer)
