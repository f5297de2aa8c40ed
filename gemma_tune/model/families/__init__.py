"""The Gemma families gemma_tune tunes, one module each, and how to find a model's family.

Everything that differs between Gemma generations (KerasHub classes, tiny test configs, LoRA
target names, chat markers, Hugging Face / PEFT / GGUF names, cache arguments) lives in that
family's module; the rest of gemma_tune asks `of_backbone(...)`, `of_tokenizer(...)` or
`by_name(...)` and never names a family. `base.py` says what a new family must provide.
"""

from __future__ import annotations

from gemma_tune.model.families import base, gemma1, gemma2, gemma3, gemma4

# Most specific first: several families may share a backbone class (Gemma 1 and 2; Gemma 4
# dense and MoE).
ALL: tuple[base.Family, ...] = (
    gemma4.MOE_FAMILY,
    gemma4.FAMILY,
    gemma3.FAMILY,
    gemma2.FAMILY,
    gemma1.FAMILY,
)
NAMES = tuple(sorted(family.name for family in ALL))


def by_name(name: str) -> base.Family:
    """The family called `name` ("gemma1", "gemma2", "gemma3", "gemma4", "gemma4_moe").

    Raises:
      ValueError: naming the known families.
    """
    for family in ALL:
        if family.name == name:
            return family
    raise ValueError(f"unknown Gemma family {name!r}; choose one of {', '.join(NAMES)}")


def of_backbone(backbone) -> base.Family:
    """The family of a KerasHub backbone.

    Raises:
      ValueError: for a backbone of no supported family.
    """
    for family in ALL:
        if family.owns(backbone):
            return family
    raise _not_gemma(type(backbone))


def of_backbone_class(backbone_class: type) -> base.Family:
    """The first family built on `backbone_class`, for a preset not loaded yet (families that
    share a class share everything loading needs; `of_backbone` tells them apart after).

    Raises:
      ValueError: for a class of no supported family.
    """
    for family in ALL:
        if issubclass(backbone_class, family.backbone_class):
            return family
    raise _not_gemma(backbone_class)


def _not_gemma(backbone_class: type) -> ValueError:
    titles = ", ".join(family.title for family in reversed(ALL))
    return ValueError(
        f"{backbone_class.__name__} is not a Gemma backbone; gemma_tune tunes {titles}"
    )


def of_tokenizer(tokenizer) -> base.Family:
    """The (first) family whose tokenizer class `tokenizer` is; families sharing a tokenizer
    share its chat markers.

    Raises:
      ValueError: for a tokenizer of no supported family.
    """
    for family in reversed(ALL):
        if type(tokenizer) is family.tokenizer_class:
            return family
    raise ValueError(f"{type(tokenizer).__name__} is not a Gemma tokenizer")


def of_gguf_architecture(architecture: str) -> base.Family:
    """The family that imports GGUF files of `general.architecture == architecture`.

    Raises:
      ValueError: naming the supported GGUF architectures.
    """
    for family in ALL:
        if family.gguf is not None and family.gguf.architecture == architecture:
            return family
    supported = [family.gguf.architecture for family in ALL if family.gguf is not None]
    raise ValueError(f"GGUF architecture {architecture!r} is not supported; expected {supported}")


def all_lora_target_names() -> tuple[str, ...]:
    """Every LoRA target name or group any family knows, for checking a config before a model
    is loaded (the loaded model's family checks again)."""
    names: list[str] = []
    for family in reversed(ALL):
        for name in (*family.lora_targets, *family.lora_target_groups):
            if name not in names:
                names.append(name)
    return tuple(names)
