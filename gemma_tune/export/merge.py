"""Fold LoRA or DoRA into the base kernels and save the result as a plain KerasHub preset.

    python -m gemma_tune.export --run=RUN_DIR --to=keras --out=DIR

An adapted layer computes `einsum(x, kernel) + (lora_alpha / rank) * (x A) B`, so the merged
kernel is `kernel + (lora_alpha / rank) * A B`, A and B contracted over the rank and laid out as
the kernel (`gemma_tune.model.lora.update`), in either LoRA layout: `per_head` (KerasHub's; for
Gemma's query kernel `(heads, hidden, head_dim)`, A per head and B shared by all heads) or
`peft` (A over the input axes, B over the output axes). The merged model is a fresh backbone
built from the same config, so it has no LoRA variables at all and loads anywhere a base preset
does. A DoRA kernel is also rescaled per output unit (`gemma_tune.model.lora.merged_kernel`),
and a quantized base (QLoRA) is dequantized first, so the merged model is float.

    from gemma_tune.export import merge
    from gemma_tune.runs import tuned_run
    tuned = tuned_run.load_tuned(RUN_DIR, "float32")
    merge.save_keras_preset(tuned.loaded, "exported/keras")
    # gemma_tune.model.load("exported/keras") now loads the tuned model, no adapter needed.
"""

from __future__ import annotations

import os

import keras
import numpy as np

from gemma_tune import model
from gemma_tune.model import keras_compat, lora, vision


def lora_layers(backbone) -> list:
    """The backbone's layers that have LoRA enabled, in a stable order."""
    return [
        layer
        for layer in keras_compat.all_layers(backbone)
        if getattr(layer, "lora_enabled", False)
    ]


def has_lora(backbone) -> bool:
    """Whether any layer of `backbone` carries LoRA factors."""
    return bool(lora_layers(backbone))


# Variables that describe how a weight is stored (quantization scales), not a weight.
_QUANTIZATION_AUX = ("kernel_scale", "kernel_zero", "g_idx", "embeddings_scale")


def merged_values(backbone) -> dict[str, np.ndarray]:
    """Every base variable of `backbone` by path, in float32, with LoRA or DoRA folded into its
    kernel (`lora.merged_kernel`) and int8/int4 weights dequantized.

    Adapter and quantization-scale variables are left out: the result describes a plain model.
    """
    kernels = {}
    for layer in keras_compat.all_layers(backbone):
        if getattr(layer, "lora_enabled", False):
            kernels[keras_compat.kernel_variable(layer).path] = lora.merged_kernel(layer)
        elif isinstance(layer, keras.layers.EinsumDense) and layer.quantization_mode:
            path = keras_compat.kernel_variable(layer).path
            kernels[path] = np.asarray(lora.float_kernel(layer), np.float32)
    embedding = backbone.token_embedding
    if embedding.quantization_mode == "int8":
        scale = np.asarray(embedding.embeddings_scale.numpy(), np.float32)
        stored = keras_compat.embeddings_variable(embedding)
        kernels[stored.path] = np.asarray(stored.numpy(), np.float32) / scale[:, None]
    values = {}
    for variable in backbone.weights:
        name = variable.path.rsplit("/", 1)[-1]
        if name.startswith("lora_") or name in _QUANTIZATION_AUX:
            continue
        if variable.path in kernels:
            values[variable.path] = kernels.pop(variable.path)
        else:
            values[variable.path] = np.asarray(variable.numpy(), np.float32)
    if kernels:
        raise ValueError(f"adapted kernels that were not found by path: {sorted(kernels)}")
    return values


def merge_lora(loaded: model.LoadedModel, dtype: str | None = None) -> model.LoadedModel:
    """Returns a copy of `loaded` with its LoRA folded into the base kernels and no LoRA layers.

    The merge is computed in float32 and cast once to the target dtype, so a bfloat16 export of
    a float32-tuned model rounds each weight once. A model without LoRA is copied unchanged.

    Args:
      loaded: a model, usually with LoRA enabled and an adapter loaded.
      dtype: the dtype policy of the copy ("float32", "bfloat16"); None keeps the original's.

    Returns:
      A new `LoadedModel` (same tokenizer and preset) whose backbone is built from the original's
      config, so it has exactly the base architecture's variables.
    """
    backbone = loaded.backbone
    values = merged_values(backbone)
    config = backbone.get_config()
    # A quantized backbone's config maps its layers to quantized policies: the merge is float.
    config["dtype"] = dtype or backbone.dtype_policy.name
    plain = type(backbone).from_config(config)
    paths = {variable.path for variable in plain.weights}
    if paths != set(values):
        raise ValueError(
            "the rebuilt backbone's variables differ from the original's: "
            f"only rebuilt {sorted(paths - set(values))[:5]}, "
            f"only original {sorted(set(values) - paths)[:5]}"
        )
    for variable in plain.weights:
        variable.assign(values[variable.path])  # cast to the variable's dtype by Keras
    causal_lm = type(loaded.causal_lm)(backbone=plain, preprocessor=None)
    return model.LoadedModel(causal_lm, loaded.tokenizer, loaded.preset)


def _preprocessor_for(loaded: model.LoadedModel):
    return keras_compat.preprocessor_for_saving(
        loaded.family.preprocessor_class, tokenizer=loaded.tokenizer
    )


def save_keras_preset(loaded: model.LoadedModel, directory: str, dtype: str | None = None) -> str:
    """Writes `loaded` (LoRA merged first, if it has any) as a KerasHub preset directory.

    The directory holds the backbone (with its vision encoder, if any), the tokenizer, a
    CausalLM preprocessor and, for a model that reads images, its image converter
    (`image_converter.json`, which `model.load` reads back), so both
    `gemma_tune.model.load(directory)` and `keras_hub.models.Gemma3CausalLM.from_preset(directory)`
    (or `GemmaCausalLM`, `Gemma4CausalLM`) load it offline.

    Args:
      loaded: the model to save.
      directory: where to write; created if missing.
      dtype: the saved weights' dtype; None keeps the model's.

    Returns:
      `directory`.
    """
    plain = merge_lora(loaded, dtype)
    os.makedirs(directory, exist_ok=True)
    plain.backbone.save_to_preset(directory)
    loaded.tokenizer.save_to_preset(directory)
    _preprocessor_for(loaded).save_to_preset(directory)
    if loaded.image_converter is not None:
        vision.save_converter(loaded.image_converter, directory)
    return directory
