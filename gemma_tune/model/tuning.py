"""Choosing what a run trains: LoRA/DoRA targets, full fine-tuning, and checking those settings.

`enable_tuning(model, method, lora_config)` freezes the base and adds adapters (`lora`), or makes
every weight trainable (a vision encoder's stays frozen); `check_tuning(config)` rejects bad
settings before any work.
"""

from __future__ import annotations

import math

from gemma_tune.model import families, keras_compat, lora, vision, vision_lora
from gemma_tune.model.load import LoadedModel


def _targets_of(family) -> tuple[tuple[str, ...], dict[str, tuple[str, ...]], tuple[str, ...]]:
    """(target names, shorthand groups, default targets) of one family, or of every family
    together when `family` is None (for checking a config before a model is loaded)."""
    if family is not None:
        return family.lora_targets, dict(family.lora_target_groups), family.default_lora_targets
    targets: list[str] = []
    groups: dict[str, list[str]] = {}
    for each in reversed(families.ALL):
        targets += [name for name in each.lora_targets if name not in targets]
        for group, members in each.lora_target_groups.items():
            groups.setdefault(group, [])
            groups[group] += [name for name in members if name not in groups[group]]
    default = families.ALL[-1].default_lora_targets
    return tuple(targets), {k: tuple(v) for k, v in groups.items()}, default


# Every family's LoRA targets (KerasHub projection layer names) and shorthands, together.
LORA_TARGETS, LORA_TARGET_GROUPS, DEFAULT_LORA_TARGETS = _targets_of(None)


def lora_target_names(targets, family=None) -> list[str]:
    """Expands `lora.targets` (layer names and the shorthands attention, mlp, all) into
    layer names, in the family's order.

    Args:
      targets: names and shorthands; empty means the family's default (query and value).
      family: the loaded model's family; None checks against every family's names.

    Raises:
      ValueError: for an unknown name, listing the valid ones.
    """
    known, groups, default = _targets_of(family)
    names = set()
    for target in targets or default:
        if target in groups:
            names.update(groups[target])
        elif target in known:
            names.add(target)
        else:
            valid = ", ".join(known + tuple(groups))
            where = f" for {family.title}" if family is not None else ""
            raise ValueError(f"lora.targets: unknown target {target!r}{where}; choose from {valid}")
    return [name for name in known if name in names]


METHODS = ("lora", "dora", "full")


def enable_lora(
    model: LoadedModel,
    rank: int,
    alpha: float = 0.0,
    targets=None,
    dora: bool = False,
    dropout: float = 0.0,
    layout: str = lora.DEFAULT_LAYOUT,
) -> None:
    """Freezes the base weights and adds LoRA (or DoRA) to the target projections of every
    block (`gemma_tune.lora`).

    Args:
      model: the loaded model (changed in place; may be quantized, see `gemma_tune.quantize`).
      rank: LoRA rank r.
      alpha: the update is scaled by alpha / r; 0 means alpha = r (scale 1, KerasHub's default).
      targets: layer names or shorthands (see `lora_target_names`); default query and value,
        KerasHub's targets, as in Google's Gemma LoRA tutorial.
      dora: weight-decomposed LoRA (a learned magnitude per output unit).
      dropout: dropout on the adapters' inputs while training.
      layout: which kernel axes the A factors span, "per_head" (KerasHub's) or "peft"
        (Hugging Face PEFT's, rank r exactly; `lora.LAYOUTS`).
    """
    if rank <= 0:
        raise ValueError(f"lora.rank must be positive, got {rank}")
    if alpha < 0:
        raise ValueError(f"lora.alpha must be positive (or 0 for alpha = rank), got {alpha}")
    if layout not in lora.LAYOUTS:
        raise ValueError(f"lora.layout: unknown {layout!r}; choose from {', '.join(lora.LAYOUTS)}")
    names = set(lora_target_names(targets, model.family))
    _check_kernel_read_dropout(model.family, names, dropout)
    backbone = model.backbone
    backbone.trainable = True
    every_layer = keras_compat.all_layers(backbone)
    layers = [layer for layer in every_layer if layer.weights]
    for layer in every_layer:
        layer.trainable = False
    enabled, adapted = [], dict.fromkeys(sorted(names), 0)
    for index, layer in enumerate(layers):
        if layer.name in names and hasattr(layer, "enable_lora"):
            layer.trainable = True
            lora.adapt(layer, rank, alpha or rank, dora, dropout, index, layout)
            enabled.append(index)
            adapted[layer.name] += 1
    if not enabled:
        raise ValueError(f"no layer of this model is named like lora.targets {sorted(names)}")
    _log_missing_targets(model.family.title, adapted, len(backbone.transformer_layers))
    keras_compat.record_lora(backbone, enabled, rank)


def _check_kernel_read_dropout(family, names: set[str], dropout: float) -> None:
    """Refuses LoRA dropout on targets the family's blocks read as a kernel (see
    `lora.adapted_kernel`): there the adapter is part of the kernel, with no input to drop."""
    kernel_read = [name for name in family.kernel_read_targets if name in names]
    if dropout > 0 and kernel_read:
        raise ValueError(
            f"lora.dropout={dropout:g} cannot apply to {', '.join(kernel_read)} on "
            f"{family.title}: its decoder blocks multiply these projections' kernels directly, "
            "bypassing the layers' forward pass, so the adapter only acts through the adapted "
            "kernel, where there is no input to drop. Set lora.dropout=0 or leave these "
            "targets out"
        )


def _log_missing_targets(title: str, adapted: dict[str, int], blocks: int) -> None:
    """Logs each requested target that some or all decoder blocks lack (Gemma 4's KV-shared
    layers have no key or value projection, its K=V layers no value projection)."""
    for name, count in adapted.items():
        if count == 0:
            print(f"lora.targets: this {title} model has no {name!r} layer; skipped")
        elif count < blocks:
            print(
                f"lora.targets: {blocks - count} of {blocks} decoder blocks of this {title} "
                f"model have no {name!r} layer; adapted in the other {count}"
            )


def enable_full(model: LoadedModel) -> None:
    """Makes every weight trainable (full fine-tuning; for small models: AdamW keeps two more
    copies of every weight)."""
    if any(getattr(v, "dtype", "") in ("int8", "uint8") for v in model.backbone.weights):
        raise ValueError("full fine-tuning needs float weights; set model.quantize=none")
    model.backbone.trainable = True
    for layer in keras_compat.all_layers(model.backbone, include_self=True):
        layer.trainable = True


def enable_tuning(model: LoadedModel, method: str, lora_config) -> None:
    """Prepares `model` for the tuning `method` ("lora", "dora" or "full") with the experiment's
    `lora` settings (rank, alpha, targets, dropout, layout, vision_targets). A vision encoder
    stays frozen (`vision.freeze_encoder`): every method tunes the language model; with
    `vision_targets` (LoRA only) its attention and/or projector also take LoRA
    (`vision_lora`)."""
    if method == "full":
        enable_full(model)
    elif method in ("lora", "dora"):
        enable_lora(
            model,
            lora_config.rank,
            lora_config.alpha,
            list(lora_config.targets),
            dora=method == "dora",
            dropout=lora_config.dropout,
            layout=lora_config.layout,
        )
    else:
        raise ValueError(f"method: unknown {method!r}; choose from {', '.join(METHODS)}")
    vision.freeze_encoder(model.backbone)
    vision_targets = tuple(getattr(lora_config, "vision_targets", ()) or ())
    encoder = vision.encoder_of(model.backbone)
    if encoder is not None:
        count = sum(math.prod(w.shape) for w in encoder.weights)
        also = f", and LoRA its {' and '.join(vision_targets)}" if vision_targets else ""
        print(
            f"vision encoder: its {count:,} weights frozen (projector included); {method} "
            f"tunes the language model{also}"
        )
    vision_lora.enable(
        model, vision_targets, lora_config.rank, lora_config.alpha, method, lora_config.dropout
    )


def check_tuning(config) -> None:
    """Checks an experiment's method, LoRA and quantization settings before any work.

    Raises:
      ValueError: naming the bad setting and the valid choices.
    """
    from gemma_tune.model import quantize

    if config.method not in METHODS:
        raise ValueError(f"method: unknown {config.method!r}; choose from {', '.join(METHODS)}")
    if config.model.quantize not in quantize.MODES:
        modes = ", ".join(quantize.MODES)
        raise ValueError(f"model.quantize: unknown {config.model.quantize!r}; choose from {modes}")
    if config.model.int4_block_size <= 0:
        raise ValueError(
            f"model.int4_block_size must be positive, got {config.model.int4_block_size}"
        )
    if config.method == "full" and config.model.quantize != "none":
        raise ValueError(
            "method=full trains every weight, which cannot be int8/int4: use "
            "model.quantize=none (or method=lora/dora for QLoRA)"
        )
    if not 0.0 <= config.lora.dropout < 1.0:
        raise ValueError(f"lora.dropout must be in [0, 1), got {config.lora.dropout}")
    layout = config.lora.get("layout", lora.LEGACY_LAYOUT)
    if layout not in lora.LAYOUTS:
        raise ValueError(f"lora.layout: unknown {layout!r}; choose from {', '.join(lora.LAYOUTS)}")
    lora_target_names(config.lora.targets)
    vision_lora.check_targets(tuple(config.lora.get("vision_targets", ())), config.method)


def describe_tuning(config) -> str:
    """One line saying what is trained, e.g. "DoRA rank 4 on query, value (int4 base)" or
    "LoRA rank 8 on query, value, peft layout"."""
    if config.method == "full":
        return "full fine-tuning (every weight)"
    name = {"lora": "LoRA", "dora": "DoRA"}[config.method]
    targets = ", ".join(lora_target_names(config.lora.targets))
    text = f"{name} rank {config.lora.rank} on {targets}"
    layout = config.lora.get("layout", lora.LEGACY_LAYOUT)
    if layout != lora.DEFAULT_LAYOUT:
        text += f", {layout} layout"
    if config.lora.dropout:
        text += f", dropout {config.lora.dropout:g}"
    vision_targets = list(config.lora.get("vision_targets", ()))
    if vision_targets:
        text += f"; vision tower: {', '.join(vision_targets)}"
    if config.model.quantize != "none":
        text += f" ({config.model.quantize} base)"
    return text


# `train.remat`: what each decoder block keeps for the backward pass.
REMAT_MODES = ("auto", "none", "matmuls", "full")


def remat_mode(setting) -> str:
    """`train.remat` resolved to "none", "matmuls" or "full".

    "auto" is "matmuls" on a CPU, where it lowers the step's peak memory by a third for ~2% more
    FLOPs (`benchmarks/RESULTS.md`, "Resident memory and rematerialization"), and "none" on
    GPU and TPU (not measured there). `True`/`False` (configs written before the modes, and
    "true"/"false") mean "full"/"none".

    Raises:
      ValueError: for another value.
    """
    aliases = {True: "full", False: "none", "true": "full", "false": "none"}
    mode = aliases.get(setting, setting) if isinstance(setting, (bool, str)) else setting
    if mode not in REMAT_MODES:
        raise ValueError(f"train.remat={setting!r}: expected one of {', '.join(REMAT_MODES)}")
    if mode == "auto":
        import jax

        return "matmuls" if jax.default_backend() == "cpu" else "none"
    return mode


def enable_remat(model: LoadedModel, mode: str = "full") -> None:
    """Recomputes each decoder block's activations in the backward pass instead of keeping
    them (gradient checkpointing, `train.remat`): all of them ("full": about one more forward
    pass of time), or all but the matrix multiplications' outputs ("matmuls": only the cheap
    elementwise work, norms, activations and softmax, is recomputed). "none" does nothing."""
    if mode == "none":
        return
    import jax

    policy = {"full": None, "matmuls": jax.checkpoint_policies.dots_with_no_batch_dims_saveable}
    if mode not in policy:
        raise ValueError(f"unknown remat mode {mode!r}: expected none, matmuls or full")
    for block in model.backbone.transformer_layers:
        keras_compat.enable_remat(block, policy[mode])


def parameter_counts(model: LoadedModel) -> tuple[int, int]:
    """Returns `(total, trainable)` parameter counts."""
    total = sum(math.prod(v.shape) for v in model.causal_lm.weights)
    trainable = sum(math.prod(v.shape) for v in model.causal_lm.trainable_weights)
    return total, trainable
