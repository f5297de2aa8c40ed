"""LoRA and DoRA on Gemma's projections, with dropout, on float or quantized base weights.

Each adapted layer holds `lora_kernel_a` and `lora_kernel_b` (Keras' `enable_lora` names, so
KerasHub's helpers still find them). Which kernel axes A spans is the `lora.layout` setting
(`LAYOUTS`); B spans the kernel's other axes, after the rank:

- `per_head` (KerasHub's `enable_lora`): A is the kernel's shape with its last axis replaced by
  the rank, B is `(rank, last axis)`. On an attention kernel `(heads, hidden, head_dim)` that is
  one A per head and a B shared by the heads: a rank-r adapter whose update has rank heads x r.
- `peft` (Hugging Face PEFT's shape): A spans the kernel's input axes, B its output axes:
  `(hidden, r)` and `(r, heads, head_dim)` on that kernel, an update of rank r exactly.

On kernels whose input axes are all but the last (`attention_output`, the MLP) the two are the
same. The layer's forward pass is ours, one generic einsum pair for either layout:

    y = x @ W0 + (alpha / r) * (dropout(x) @ A) @ B                        (LoRA)
    y = m / stop_gradient(||W0 + (alpha / r) A B||) * (x @ W0 + (alpha / r) (dropout(x) @ A) @ B)
                                                                          (DoRA, Liu et al. 2024)

where `W0` is the frozen kernel (dequantized on the fly when the base is int8 or int4:
QLoRA), `||.||` is the norm of each output unit's column over the kernel's input axes, and `m`
(`lora_magnitude`, one value per output unit) starts at `||W0||`, so a fresh adapter is exactly
the base model. The norm is treated as a constant in the backward pass, as the DoRA paper
(section 4.3) and Hugging Face PEFT do, which saves keeping the merged kernel for the gradient.

The update runs on activations, not on a merged kernel: Keras' own LoRA forms `W0 + A B` every
step, so its backward pass computes the full kernel's gradient before reducing it to A and B;
here the backward pass only touches `x`, A and B.

Some blocks do not call their projections but multiply by `layer.kernel` themselves (Gemma 4's
MLP; the family's `kernel_read_targets`). So that such a block computes what `call` computes,
an adapted layer's `kernel` is the kernel `call` applies: dequantized, plus the update, rescaled
by DoRA (`adapted_kernel`), and a quantized layer there reads as its dequantized kernel
(`FloatKernelEinsumDense`). Dropout on the adapter's input cannot happen in a kernel, so
`model.tuning` refuses it on those targets.

Dropout needs fresh randomness at every step inside a compiled, stateless step: each adapted
layer holds a `lora_dropout_seed` pair (layer id, counter) that the trainer overwrites with
the step counter (`set_dropout_counter`), so a resumed run draws the same masks.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import keras
import numpy as np
from keras import ops

from gemma_tune.model import keras_compat

DROPOUT_SEED = "lora_dropout_seed"
# `lora.layout`: which kernel axes the A factor spans (the module docstring).
LAYOUTS = ("per_head", "peft")
# New runs train PEFT's shapes (rank r exactly, what `--to=peft` writes and vLLM serves).
DEFAULT_LAYOUT = "peft"
# The layout of a run whose config predates `lora.layout` (all of them were per_head).
LEGACY_LAYOUT = "per_head"


def _equation_axes(equation: str) -> tuple[str, str, str, str]:
    """Splits an EinsumDense equation into (input, kernel, output, kernel's output letters)."""
    inputs, rest = equation.split(",")
    kernel, output = rest.split("->")
    return inputs, kernel, output, "".join(c for c in kernel if c not in inputs)


def input_axes(layer) -> tuple[int, ...]:
    """The kernel axes that are contracted with the input (the norm axes of DoRA)."""
    inputs, kernel, _, _ = _equation_axes(layer.equation)
    return tuple(i for i, c in enumerate(kernel) if c in inputs)


def layout_axes(layer, layout: str) -> tuple[int, ...]:
    """The kernel axes A spans in `layout` ("per_head": all but the last; "peft": the input
    axes); B spans the others.

    Raises:
      ValueError: for an unknown layout, or a kernel whose B would span a contracted axis.
    """
    rank_axes = len(kernel_shape(layer))
    if layout == "peft":
        axes = input_axes(layer)
    elif layout == "per_head":
        axes = tuple(range(rank_axes - 1))
    else:
        raise ValueError(f"lora.layout: unknown {layout!r}; choose from {', '.join(LAYOUTS)}")
    if any(i in input_axes(layer) for i in range(rank_axes) if i not in axes):
        raise ValueError(
            f"{layer.path}: {layout} LoRA needs the kernel's last axis to be an output"
        )
    return axes


def a_axes(layer) -> tuple[int, ...]:
    """The kernel axes the layer's A factor spans: as `adapt` laid it out, or Keras' own
    (`per_head`) for a layer KerasHub's `enable_lora` adapted."""
    axes = getattr(layer, "lora_a_axes", None)
    return tuple(axes) if axes is not None else layout_axes(layer, "per_head")


def layout(layer) -> str:
    """The layer's LoRA layout name (`LAYOUTS`), as recorded in an adapter's metadata."""
    return getattr(layer, "lora_layout", DEFAULT_LAYOUT)


def _factor_letters(layer) -> tuple[str, str, str]:
    """Einsum letters of (A's kernel axes, B's kernel axes, the rank) for this layer."""
    _, kernel, _, _ = _equation_axes(layer.equation)
    axes = a_axes(layer)
    a = "".join(kernel[i] for i in axes)
    b = "".join(c for i, c in enumerate(kernel) if i not in axes)
    rank = next(c for c in "rRzZyYxXwW" if c not in layer.equation)
    return a, b, rank


def factor_shapes(layer, rank: int, layout_name: str) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """The shapes of A and B for a rank-`rank` adapter on `layer` in `layout_name`."""
    shape = kernel_shape(layer)
    axes = layout_axes(layer, layout_name)
    a = tuple(shape[i] for i in axes) + (rank,)
    b = (rank,) + tuple(size for i, size in enumerate(shape) if i not in axes)
    return a, b


def float_kernel(layer):
    """The layer's frozen kernel in its compute dtype, dequantized when the layer is int8 or
    int4 (per-channel or grouped), in the layer's original kernel shape."""
    if layer.quantization_mode is None:
        return ops.cast(keras_compat.kernel_variable(layer), layer.compute_dtype)
    if layer.quantization_mode not in ("int8", "int4"):
        mode = layer.quantization_mode
        raise ValueError(f"{layer.path}: LoRA on a {mode} base is not supported (int8 or int4)")
    return ops.cast(keras_compat.dequantized_kernel(layer), layer.compute_dtype)


def scale(layer) -> float:
    """The factor the low-rank update `A @ B` is multiplied by: alpha / rank."""
    return float(layer.lora_alpha) / float(layer.lora_rank)


def _column_norm(kernel, axes):
    return ops.sqrt(ops.sum(ops.square(ops.cast(kernel, "float32")), axis=axes))


def update(layer):
    """The float32 low-rank update LoRA adds to the layer's kernel, `(alpha / rank) * A B`
    contracted over the rank and laid out as the kernel, in either layout."""
    a, b, rank = _factor_letters(layer)
    _, kernel, _, _ = _equation_axes(layer.equation)
    product = ops.einsum(
        f"{a}{rank},{rank}{b}->{kernel}",
        ops.cast(layer.lora_kernel_a, "float32"),
        ops.cast(layer.lora_kernel_b, "float32"),
    )
    return scale(layer) * product


def low_rank_output(layer, inputs):
    """`(x A) B` in the layer's compute dtype, shaped like the layer's output (unscaled):
    the input contracted with A, then the rank with B, never forming `A B`. Its operations are
    named `lora` in the compiled program (profiles: `benchmarks/step_profile.py`)."""
    a, b, rank = _factor_letters(layer)
    inputs_letters, _, output, _ = _equation_axes(layer.equation)
    middle = "".join(c for c in output if c not in b) + rank
    dtype = layer.compute_dtype
    with jax.named_scope("lora"):
        x = ops.einsum(
            f"{inputs_letters},{a}{rank}->{middle}", inputs, ops.cast(layer.lora_kernel_a, dtype)
        )
        return ops.einsum(f"{middle},{rank}{b}->{output}", x, ops.cast(layer.lora_kernel_b, dtype))


def _dropout(layer, inputs):
    seed = ops.convert_to_tensor(layer.lora_dropout_seed)
    key = jax.random.fold_in(jax.random.fold_in(jax.random.PRNGKey(0), seed[0]), seed[1])
    keep = jax.random.bernoulli(key, 1.0 - layer.lora_dropout, inputs.shape)
    return jnp.where(keep, inputs / (1.0 - layer.lora_dropout), 0).astype(inputs.dtype)


def kernel_shape(layer) -> tuple[int, ...]:
    """The kernel's logical shape (int4 stores it packed)."""
    stored = keras_compat.kernel_variable(layer)
    return tuple(getattr(layer, "original_kernel_shape", None) or stored.shape)


def _output_broadcast(layer, per_unit):
    """Reshapes a vector over the kernel's output axes so it broadcasts over the output."""
    _, kernel, output, kernel_out = _equation_axes(layer.equation)
    ordered = "".join(c for c in output if c in kernel_out)
    per_unit = ops.einsum(f"{kernel_out}->{ordered}", per_unit)
    sizes = dict(zip(kernel, kernel_shape(layer), strict=True))
    return ops.reshape(per_unit, [sizes[c] if c in kernel_out else 1 for c in output])


def _dequantized_einsum(layer, inputs):
    """`inputs` times the dequantized kernel, rematerialized: the backward pass dequantizes
    again instead of keeping a float copy of every quantized kernel alive between the forward
    and the backward pass (which would cost what quantizing saved). The stored int8/int4
    kernel and its scales, read inside, are what the backward pass keeps."""

    @jax.checkpoint
    def product(inputs):
        return ops.einsum(layer.equation, inputs, float_kernel(layer))

    return product(inputs)


def _kernel_broadcast(layer, per_unit):
    """Reshapes a vector over the kernel's output axes so it broadcasts over the kernel."""
    _, kernel, _, kernel_out = _equation_axes(layer.equation)
    sizes = dict(zip(kernel, kernel_shape(layer), strict=True))
    return ops.reshape(per_unit, [sizes[c] if c in kernel_out else 1 for c in kernel])


def adapted_kernel(layer, dtype=None):
    """The kernel an adapted layer applies (dropout off): `W0 + (alpha / r) A B`, for DoRA
    rescaled per output unit by `m / stop_gradient(||W0 + (alpha / r) A B||)`, with `W0`
    dequantized for a quantized base. In `dtype` (default: the layer's compute dtype);
    differentiable in A, B and m."""
    merged = ops.add(ops.cast(float_kernel(layer), "float32"), update(layer))
    if getattr(layer, "lora_dora", False):
        norm = jax.lax.stop_gradient(_column_norm(merged, input_axes(layer)))
        factor = ops.divide(ops.cast(layer.lora_magnitude, "float32"), norm)
        merged = ops.multiply(merged, _kernel_broadcast(layer, factor))
    return ops.cast(merged, dtype or layer.compute_dtype)


class FloatKernelEinsumDense(keras.layers.EinsumDense):
    """An int8/int4 `EinsumDense` whose `kernel` reads as its dequantized float kernel.

    Keras' `kernel` of a quantized layer is the stored integers (without their scales); a
    block that multiplies by `layer.kernel` itself would compute with those. `model.quantize`
    gives the projections a family marks as kernel-read this class; their own `call` is
    Keras' quantized call, unchanged.
    """

    @property
    def kernel(self):
        if self.quantization_mode is None:
            return keras_compat.kernel_variable(self)
        return float_kernel(self)


class AdaptedEinsumDense(FloatKernelEinsumDense):
    """A Keras `EinsumDense` whose forward pass adds LoRA or DoRA (see the module docstring),
    and whose `kernel` is the adapted kernel that forward pass applies (`adapted_kernel`).

    `adapt` turns an existing, built EinsumDense into one in place (`keras_compat.adopt_class`:
    its weights and place in the model kept), because KerasHub's attention and MLP blocks hold
    their projections as attributes.
    """

    @property
    def kernel(self):
        return adapted_kernel(self)

    def call(self, inputs, training=None):
        if self.quantization_mode is None:
            x = ops.einsum(self.equation, inputs, float_kernel(self))
        else:
            x = _dequantized_einsum(self, inputs)
        lora_inputs = inputs
        if training and self.lora_dropout > 0:
            lora_inputs = _dropout(self, inputs)
        low_rank = low_rank_output(self, lora_inputs)
        x = ops.add(x, ops.cast(scale(self), self.compute_dtype) * low_rank)
        if self.lora_dora:
            merged = ops.add(ops.cast(float_kernel(self), "float32"), update(self))
            norm = jax.lax.stop_gradient(_column_norm(merged, input_axes(self)))
            factor = ops.divide(ops.cast(self.lora_magnitude, "float32"), norm)
            x = ops.multiply(x, ops.cast(_output_broadcast(self, factor), x.dtype))
        if self.bias is not None:
            x = ops.add(x, self.bias)
        if self.activation is not None:
            x = self.activation(x)
        return x

    def quantized_call(self, inputs, training=None):
        return self.call(inputs, training=training)


def adapt(
    layer,
    rank: int,
    alpha: float,
    dora: bool,
    dropout: float,
    layer_id: int,
    layout_name: str = DEFAULT_LAYOUT,
) -> None:
    """Adds LoRA (or DoRA) factors to a built `keras.layers.EinsumDense`, in place.

    Args:
      layer: the projection (frozen weights, possibly quantized).
      rank / alpha: the update is `(alpha / rank) * A B`; B starts at zero.
      dora: also learn a magnitude per output unit (DoRA), initialised to `||W0||`.
      dropout: dropout on the adapter's input during training (0 disables it).
      layer_id: distinguishes this layer's dropout masks from the other layers'.
      layout_name: which kernel axes A spans (`LAYOUTS`, the module docstring).
    """
    if type(layer) not in (keras.layers.EinsumDense, FloatKernelEinsumDense):
        raise ValueError(f"{layer.path}: LoRA needs a keras EinsumDense, got {type(layer)}")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"lora.dropout must be in [0, 1), got {dropout}")
    if layer.lora_enabled:
        raise ValueError(f"{layer.path}: LoRA is already enabled on this layer")
    a_shape, b_shape = factor_shapes(layer, rank, layout_name)
    with keras_compat.adding_weights(layer):
        _add_factors(layer, a_shape, b_shape)
    keras_compat.kernel_variable(layer).trainable = False
    layer.lora_enabled, layer.lora_rank, layer.lora_alpha = True, rank, alpha
    keras_compat.adopt_class(layer, AdaptedEinsumDense)
    layer.lora_a_axes = layout_axes(layer, layout_name)
    layer.lora_layout = layout_name
    layer.lora_dora = bool(dora)
    layer.lora_dropout = float(dropout)
    with keras_compat.adding_weights(layer):
        _add_adapter_weights(layer, dora, dropout, layer_id)


def _add_factors(layer, a_shape: tuple[int, ...], b_shape: tuple[int, ...]) -> None:
    """A (He-uniform over its own shape, as Keras' `enable_lora` draws it) and B (zeros), in
    float32 whatever the compute dtype, as Keras keeps them."""
    layer.lora_kernel_a = layer.add_weight(
        name="lora_kernel_a",
        shape=a_shape,
        initializer=keras.initializers.get("he_uniform"),
        dtype="float32",
        regularizer=layer.kernel_regularizer,
    )
    layer.lora_kernel_b = layer.add_weight(
        name="lora_kernel_b",
        shape=b_shape,
        initializer=keras.initializers.get("zeros"),
        dtype="float32",
        regularizer=layer.kernel_regularizer,
    )


def _add_adapter_weights(layer, dora: bool, dropout: float, layer_id: int) -> None:
    """DoRA's magnitude (initialised to `||W0||`) and the dropout seed, when asked for."""
    if dora:
        norm = _column_norm(float_kernel(layer), input_axes(layer))
        layer.lora_magnitude = layer.add_weight(
            name="lora_magnitude",
            shape=tuple(norm.shape),
            initializer=keras.initializers.Constant(np.asarray(norm)),
            dtype="float32",
        )
    if dropout > 0:
        layer.lora_dropout_seed = layer.add_weight(
            name=DROPOUT_SEED,
            shape=(2,),
            initializer=keras.initializers.Constant([layer_id, 0]),
            dtype="int32",
            trainable=False,
        )


def set_dropout_counter(values, seed_indices, counter):
    """Returns `values` (a list of variable values) with every dropout seed's counter set to
    `counter`, so each step (and micro-batch) draws new masks, reproducibly."""
    if not seed_indices:
        return values
    values = list(values)
    for index in seed_indices:
        values[index] = values[index].at[1].set(counter.astype(values[index].dtype))
    return values


def merged_kernel(layer) -> np.ndarray:
    """The float32 kernel that computes what the adapted layer computes (dropout off):
    `W0 + (alpha / r) A B` for LoRA, `m * (W0 + (alpha / r) A B) / ||W0 + (alpha / r) A B||` for
    DoRA, with `W0` dequantized for a quantized base. A vision tower `Dense` layer with Keras'
    LoRA (`model.vision_lora`) gives `W0 + (alpha / r) A B` too."""
    if isinstance(layer, keras.layers.Dense):
        low_rank = ops.matmul(
            ops.cast(layer.lora_kernel_a, "float32"), ops.cast(layer.lora_kernel_b, "float32")
        )
        kernel = ops.cast(keras_compat.kernel_variable(layer), "float32")
        return np.asarray(kernel + scale(layer) * low_rank, np.float32)
    return np.asarray(adapted_kernel(layer, "float32"), np.float32)
