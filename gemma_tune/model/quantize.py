"""QLoRA's frozen base: Gemma's projections stored in int8 or int4, the tied embedding in int8.

    python -m gemma_tune.train --experiment=demo --set model.quantize=int4

Keras' `backbone.quantize("int8")` also quantizes the *activations* entering every projection
and the tied LM head with a rounding quantizer, whose gradient is zero: LoRA on such a model
barely learns (the "int8 embedding problem"). Here quantization is weight-only, as in QLoRA:
the weights are stored in 8 or 4 bits and dequantized on the fly, activations stay in float,
so gradients reach the adapters through the whole network and the LM head.

- `int8`: every decoder projection and the embedding, one scale per output unit (per token row
  for the embedding).
- `int4`: every decoder projection in 4 bits with one scale and zero point per 32 inputs
  (`model.int4_block_size`; Keras' grouped int4); the embedding in int8 per row. Gemma's
  embedding is also its output layer (Gemma 3 270M: 168M of its 268M weights, for 262,144
  tokens); QLoRA keeps embeddings and the LM head in 16 bits, we keep them in 8.

A block that multiplies by a projection's `kernel` itself (Gemma 4's MLP, the family's
`kernel_read_targets`) would read Keras' stored integers there; those projections read as their
dequantized kernel instead (`lora.FloatKernelEinsumDense`), so the model computes what the
dequantized float model computes.

A vision encoder (and its projector) is left in float: it is frozen and small next to the
language model (SigLIP's ~0.4B weights in Gemma 3 4B to 27B), QLoRA's recipe quantizes the
language model only, and optional LoRA on it (`lora.vision_targets`) adapts float kernels.
Gemma 4's encoder blocks are `EinsumDense` too: quantized with the decoder, its output would
change by about a third.
"""

from __future__ import annotations

import keras

from gemma_tune.model import families, keras_compat, lora, vision

MODES = ("none", "int8", "int4")
INT4_BLOCK_SIZE = 32
# What adapters saved before `model.int4_block_size` existed were quantized with.
LEGACY_INT4_BLOCK_SIZE = 128


def quantize(backbone, mode: str, int4_block_size: int = INT4_BLOCK_SIZE) -> None:
    """Stores `backbone`'s decoder projections and embedding quantized (see the module
    docstring; a vision encoder stays float), in place; `mode` "none" leaves it as it is.
    `int4_block_size`: inputs per int4 scale and zero point (smaller groups: less rounding
    error, more scales)."""
    from keras.quantizers import Int4QuantizationConfig, Int8QuantizationConfig

    if mode not in MODES:
        raise ValueError(f"model.quantize: unknown {mode!r}; choose from {', '.join(MODES)}")
    if mode == "none":
        return
    weight_only_int8 = Int8QuantizationConfig(activation_quantizer=None)
    projections = (
        weight_only_int8
        if mode == "int8"
        else Int4QuantizationConfig(block_size=int4_block_size, activation_quantizer=None)
    )
    encoder = vision.encoder_of(backbone)
    encoder_layers = set() if encoder is None else set(map(id, keras_compat.all_layers(encoder)))
    backbone.quantize(
        config=projections,
        filters=lambda layer: (
            isinstance(layer, keras.layers.EinsumDense) and id(layer) not in encoder_layers
        ),
    )
    backbone.quantize(
        config=weight_only_int8, filters=lambda layer: layer is backbone.token_embedding
    )
    kernel_read = families.of_backbone(backbone).kernel_read_targets
    for layer in keras_compat.all_layers(backbone):
        if layer.name in kernel_read and type(layer) is keras.layers.EinsumDense:
            keras_compat.adopt_class(layer, lora.FloatKernelEinsumDense)


def mode_of(backbone) -> str:
    """The quantization `quantize` applied to `backbone` ("none", "int8" or "int4")."""
    modes = {
        layer.quantization_mode
        for layer in keras_compat.all_layers(backbone)
        if isinstance(layer, keras.layers.EinsumDense)
    }
    if "int4" in modes:
        return "int4"
    return "int8" if "int8" in modes else "none"
