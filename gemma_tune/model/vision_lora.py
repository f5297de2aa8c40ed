"""LoRA on the vision tower, opt-in: `lora.vision_targets` lists `attention` (the vision
encoder's attention projections) and/or `projector` (the projection into the language model's
width); the default, empty, keeps the whole encoder frozen.

    python -m gemma_tune.train --experiment=tiny_vision --set 'lora.vision_targets=["attention"]'

The encoder's projections are `keras.layers.Dense` layers, not the decoder's `EinsumDense`, so
they take Keras' own LoRA (`Dense.enable_lora`: A `(inputs, r)` He-uniform, B `(r, outputs)`
zeros, `kernel + (alpha / r) A B`, the same factors and rank as PEFT's on a `Linear`), with the
run's `lora.rank` and `lora.alpha`. Keras forms the merged kernel at every step; next to the
language model the encoder is small (SigLIP's attention in Gemma 3 4B: 27 layers of four
1152 x 1152 kernels). What the language model's adapters have and these do not: DoRA and
dropout (`method=dora` with vision targets is refused; `lora.dropout` acts on the language
model's adapters only, and the log says so). Which layers each name adapts is the family's
(`families.base.Vision.lora_targets`); the adapters save, resume and merge like the others, and
`export.peft_export` refuses them (a PEFT adapter on the language model cannot carry them).
"""

from __future__ import annotations

import math

import keras

from gemma_tune.model import keras_compat

TARGETS = ("attention", "projector")
# Set on each adapted Dense layer: the `lora.vision_targets` name that adapted it.
TARGET_ATTRIBUTE = "lora_vision_target"


def check_targets(vision_targets, method: str) -> None:
    """Refuses unknown `lora.vision_targets` names and a method they cannot apply to.

    Raises:
      ValueError: naming the setting, the bad value and the valid ones.
    """
    unknown = [name for name in vision_targets if name not in TARGETS]
    if unknown:
        raise ValueError(
            f"lora.vision_targets: unknown {unknown[0]!r}; choose from {', '.join(TARGETS)}"
        )
    if vision_targets and method == "full":
        raise ValueError(
            "lora.vision_targets applies to method=lora; method=full trains the language model "
            "and keeps the vision encoder frozen: set lora.vision_targets=[]"
        )
    if vision_targets and method == "dora":
        raise ValueError(
            "lora.vision_targets: DoRA on the vision tower is not supported (its projections "
            "take Keras' plain LoRA): use method=lora or set lora.vision_targets=[]"
        )


def enable(model, vision_targets, rank: int, alpha: float, method: str, dropout: float) -> int:
    """Adds LoRA to the vision encoder layers that `vision_targets` name, in place, the rest of
    the encoder staying frozen. Call after the encoder is frozen (`vision.freeze_encoder`).

    Args:
      model: the loaded model (`model.LoadedModel`).
      vision_targets: `lora.vision_targets` names (`TARGETS`); empty adds nothing.
      rank / alpha: as the language model's adapters (alpha 0 means alpha = rank).
      method: the run's method ("lora"; "full" and "dora" are refused with vision targets).
      dropout: `lora.dropout`; the vision adapters take none, which is logged.

    Returns:
      The number of LoRA parameters added.

    Raises:
      ValueError: unknown names, a method they cannot apply to, or a model without a vision
        encoder or without those layers, naming the option.
    """
    vision_targets = tuple(vision_targets or ())
    if not vision_targets:
        return 0
    check_targets(vision_targets, method)
    family = model.family
    vision = family.vision
    encoder = None if vision is None else vision.encoder(model.backbone)
    if encoder is None:
        raise ValueError(
            f"lora.vision_targets={list(vision_targets)}: {model.preset} has no vision encoder "
            "(which models have one: docs/vision.md); set lora.vision_targets=[]"
        )
    names = {}
    for target in vision_targets:
        if target not in vision.lora_targets:
            raise ValueError(
                f"lora.vision_targets: the {family.title} vision encoder has no {target!r} "
                "LoRA target"
            )
        names.update(dict.fromkeys(vision.lora_targets[target], target))
    if dropout > 0:
        print(
            f"lora.dropout={dropout:g} applies to the language model's adapters; the vision "
            "tower's take no dropout (skipped there)"
        )
    adapted: dict[str, int] = dict.fromkeys(vision_targets, 0)
    added = 0
    for layer in keras_compat.all_layers(encoder):
        target = names.get(layer.name)
        if target is None or not isinstance(layer, keras.layers.Dense):
            continue
        layer.trainable = True
        layer.enable_lora(rank, lora_alpha=alpha or rank)
        for variable in layer.weights:
            variable.trainable = "lora_kernel" in variable.path
        setattr(layer, TARGET_ATTRIBUTE, target)
        adapted[target] += 1
        added += math.prod(layer.lora_kernel_a.shape) + math.prod(layer.lora_kernel_b.shape)
    missing = [target for target, count in adapted.items() if count == 0]
    if missing:
        raise ValueError(
            f"lora.vision_targets: no layer of this {family.title} vision encoder is a "
            f"{missing[0]!r} target"
        )
    counts = ", ".join(
        f"{target} ({count} layer{'s' if count > 1 else ''})" for target, count in adapted.items()
    )
    print(
        f"lora.vision_targets: LoRA rank {rank} on the vision tower's {counts}: {added:,} weights"
    )
    return added


def is_adapter(layer) -> bool:
    """Whether `layer` is a vision tower layer that `enable` adapted."""
    return getattr(layer, TARGET_ATTRIBUTE, None) is not None


def targets_of(backbone) -> list[str]:
    """The `lora.vision_targets` names whose adapters `backbone` carries, in `TARGETS` order."""
    found = {getattr(layer, TARGET_ATTRIBUTE) for layer in adapted_layers(backbone)}
    return [name for name in TARGETS if name in found]


def adapted_layers(backbone) -> list:
    """The vision tower layers of `backbone` that carry LoRA (`enable`)."""
    return [layer for layer in keras_compat.all_layers(backbone) if is_adapter(layer)]
