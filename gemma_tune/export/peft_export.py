"""A KerasHub LoRA adapter -> a Hugging Face PEFT adapter for the exported base model.

    python -m gemma_tune.export --run=RUN_DIR --to=hf --base_only --out=BASE_DIR
    python -m gemma_tune.export --run=RUN_DIR --to=peft --out=ADAPTER_DIR

writes `adapter_config.json` and `adapter_model.safetensors`, so that

    base = transformers.AutoModelForCausalLM.from_pretrained(BASE_DIR)
    tuned = peft.PeftModel.from_pretrained(base, ADAPTER_DIR)

reproduces the tuned model's logits. For a model with a vision encoder the modules are the
language model's in `Gemma3ForConditionalGeneration` (`model.language_model.layers.N...`), and
`target_modules` is a regular expression that leaves the vision tower's same-named projections
out; load the base with `transformers.AutoModelForImageTextToText`. Only the exact base the run
was tuned on reproduces them:
for `gemma3_270m_gguf` (dequantized from a Q4_K_M GGUF) that is BASE_DIR, not the Hub's
`google/gemma-3-270m`, whose bfloat16 weights differ from the quantized ones.

The adapter's rank is the user's `lora.rank` r when the run used `lora.layout=peft` (the
factors are already PEFT's: A over the kernel's input axes, B over its output axes), on every
projection: `r` is r, with no `rank_pattern`. A `per_head` run (the default; KerasHub's LoRA)
has on each attention kernel `(heads, hidden, head_dim)` a `lora_kernel_a` shaped
`(heads, hidden, r)` (one A per head) and `lora_kernel_b` shaped `(r, head_dim)` (shared by the
heads): its update to `q_proj` has rank up to `heads * r`, which a rank-r PEFT LoRA cannot hold.
It is written exactly as a rank `heads * r` PEFT LoRA: `lora_A` stacks the per-head A's,
`lora_B` is block diagonal with one copy of B per head; `attention_output` and the MLP, where
the two layouts coincide, stay rank r. `rank_pattern`/`alpha_pattern` then carry the
per-module ranks (with fewer key/value heads than query heads, `v_proj` has a smaller rank than
`q_proj`). In both, KerasHub's scale `lora_alpha / r` is folded into `lora_B`, and each module's
PEFT `lora_alpha` equals its PEFT rank, so PEFT's own scaling is 1.
"""

from __future__ import annotations

import json
import os
import re

import numpy as np
import safetensors.numpy

from gemma_tune.export import merge
from gemma_tune.model import families, keras_compat, lora, vision_lora

CONFIG_FILE = "adapter_config.json"
WEIGHTS_FILE = "adapter_model.safetensors"

_KERNEL_PATH = re.compile(r"^decoder_block_(\d+)/(?:attention/)?(\w+)/kernel$")


def module_name(kernel_path: str, modules, prefix: str = "model.") -> str:
    """The transformers module of a Keras kernel path, e.g.
    `decoder_block_3/attention/query/kernel` -> `model.layers.3.self_attn.q_proj`.

    Args:
      kernel_path: the adapted layer's kernel variable path.
      modules: the family's `peft_modules` (layer name -> (module, heads first)).
      prefix: where the transformers class keeps the decoder layers (`model.`; an
        image-text-to-text model's `model.language_model.`).

    Raises:
      ValueError: for a kernel with no PEFT counterpart (the adapter would lose it).
    """
    match = _KERNEL_PATH.match(kernel_path)
    if not match or match.group(2) not in modules:
        raise ValueError(f"LoRA on {kernel_path} has no transformers module to map to")
    return f"{prefix}layers.{match.group(1)}.{modules[match.group(2)][0]}"


def peft_factors(layer, modules) -> tuple[np.ndarray, np.ndarray]:
    """PEFT `(lora_A, lora_B)` for one LoRA layer, with `B @ A` equal to the layer's LoRA
    update of the transformers weight (`(out, in)` layout) and PEFT scaling 1.

    Returns:
      `lora_A` shaped `(R, in)` and `lora_b` shaped `(out, R)`, float32, where R is the layer's
      rank r when A spans the kernel's input axes (the `peft` layout, and every layout on
      kernels whose input axes lead) and `heads * r` for a `per_head` attention kernel.

    Raises:
      ValueError: for per-head factors on a kernel the family does not mark as heads first.
    """
    a = np.asarray(layer.lora_kernel_a.numpy(), np.float32)
    b = np.asarray(layer.lora_kernel_b.numpy(), np.float32) * lora.scale(layer)
    rank = b.shape[0]
    if lora.a_axes(layer) == lora.input_axes(layer):
        # A (*inputs, r), B (r, *outputs), both in the kernel's axis order, which flattens as
        # transformers' (out, in) weight does: weight delta = B.T @ A.T.
        return np.ascontiguousarray(a.reshape(-1, rank).T), np.ascontiguousarray(
            b.reshape(rank, -1).T
        )
    name = _KERNEL_PATH.match(keras_compat.kernel_variable(layer).path)
    if name is None or not modules.get(name.group(2), ("", False))[1]:
        raise ValueError(f"{layer.path}: per-head LoRA factors on a kernel that is not heads first")
    heads, hidden, _ = a.shape
    head_dim = b.shape[1]
    # A (heads, hidden, r) -> rows head * r + j; B (r, head_dim) -> one block per head.
    lora_a = a.transpose(0, 2, 1).reshape(heads * rank, hidden)
    lora_b = np.zeros((heads * head_dim, heads * rank), np.float32)
    for head in range(heads):
        lora_b[head * head_dim : (head + 1) * head_dim, head * rank : (head + 1) * rank] = b.T
    return np.ascontiguousarray(lora_a), lora_b


def rank_pattern(module_ranks: dict[str, int]) -> tuple[list[str], int, dict[str, int]]:
    """PEFT's `target_modules`, `r` and `rank_pattern` for these per-module ranks.

    A projection whose rank is the same in every layer gets one entry under its short name
    (`v_proj`); one whose rank differs between layers (Gemma 4's K=V global layers have fewer
    key heads than its sliding layers) gets an entry per module, its full name escaped as a
    regular expression, as PEFT matches `rank_pattern` keys.

    Returns:
      `(target_modules, r, rank_pattern)`, r being the largest rank.
    """
    by_target: dict[str, dict[str, int]] = {}
    for module, rank in module_ranks.items():
        by_target.setdefault(module.rsplit(".", 1)[-1], {})[module] = rank
    default_rank = max(module_ranks.values())
    pattern: dict[str, int] = {}
    for target, ranks in sorted(by_target.items()):
        values = set(ranks.values())
        if len(values) == 1:
            if (rank := values.pop()) != default_rank:
                pattern[target] = rank
            continue
        pattern.update({re.escape(m): r for m, r in sorted(ranks.items()) if r != default_rank})
    return sorted(by_target), default_rank, pattern


def refuse_vision_targets(vision_targets) -> None:
    """Refuses LoRA on the vision tower (`lora.vision_targets`, `model.vision_lora`): the PEFT
    adapter written here adapts the language model's modules only, so exporting would drop it.

    Raises:
      ValueError: one line naming the targets and the exports that carry them.
    """
    if vision_targets:
        raise ValueError(
            f"--to=peft: this run has LoRA on the vision tower (lora.vision_targets="
            f"{','.join(vision_targets)}), which a PEFT adapter on the language model does not "
            "carry; export --to=hf or --to=keras (merged) instead"
        )


def adapter(backbone, base_model_name_or_path: str | None = None) -> tuple[dict, dict]:
    """The PEFT adapter of a backbone's LoRA layers.

    Args:
      backbone: a KerasHub Gemma backbone with LoRA enabled (and its adapter loaded).
      base_model_name_or_path: recorded in the config, where PEFT looks for the base by default.

    Returns:
      `(config, tensors)`: the `adapter_config.json` dict and the weights keyed as PEFT saves
      them (`base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight`, ...).

    Raises:
      ValueError: when the backbone has no LoRA, or LoRA on a layer PEFT cannot address.
    """
    layers = merge.lora_layers(backbone)
    if not layers:
        raise ValueError("the model has no LoRA layers: there is no adapter to export")
    refuse_vision_targets(vision_lora.targets_of(backbone))
    family = families.of_backbone(backbone)
    modules = family.peft_modules
    with_vision = family.vision is not None and family.vision.encoder(backbone) is not None
    prefix = family.vision.hf_language_model_prefix if with_vision else "model."
    tensors = {}
    module_ranks: dict[str, int] = {}
    for layer in layers:
        module = module_name(keras_compat.kernel_variable(layer).path, modules, prefix)
        lora_a, lora_b = peft_factors(layer, modules)
        tensors[f"base_model.model.{module}.lora_A.weight"] = lora_a
        tensors[f"base_model.model.{module}.lora_B.weight"] = lora_b
        if getattr(layer, "lora_dora", False):
            # DoRA's magnitude per output unit; our output axes flatten in HF's out order.
            magnitude = np.asarray(layer.lora_magnitude.numpy(), np.float32).reshape(-1)
            tensors[f"base_model.model.{module}.lora_magnitude_vector"] = magnitude
        module_ranks[module] = lora_a.shape[0]
    targets, default_rank, pattern = rank_pattern(module_ranks)
    if with_vision:
        # The vision tower has q_proj, v_proj, ... too: name the language model's alone.
        targets = rf"{re.escape(prefix)}layers\.\d+\..*\.({'|'.join(targets)})"
    config = {
        "peft_type": "LORA",
        "task_type": "CAUSAL_LM",
        "base_model_name_or_path": base_model_name_or_path,
        "target_modules": targets,
        "r": default_rank,
        "lora_alpha": default_rank,
        "rank_pattern": pattern,
        "alpha_pattern": dict(pattern),
        "lora_dropout": 0.0,
        "bias": "none",
        "fan_in_fan_out": False,
        "use_rslora": False,
        "use_dora": any(getattr(layer, "lora_dora", False) for layer in layers),
        "init_lora_weights": True,
        "inference_mode": True,
        "modules_to_save": None,
        "layers_to_transform": None,
    }
    return config, tensors


def save(loaded_or_backbone, directory: str, base_model_name_or_path: str | None = None) -> str:
    """Writes the PEFT adapter of a LoRA-tuned Gemma into `directory`.

    Args:
      loaded_or_backbone: a `model.LoadedModel` or a KerasHub backbone with LoRA enabled.
      directory: where to write; created if missing.
      base_model_name_or_path: the base model's Hub id or directory, recorded in the config.

    Returns:
      `directory`.
    """
    backbone = getattr(loaded_or_backbone, "backbone", loaded_or_backbone)
    config, tensors = adapter(backbone, base_model_name_or_path)
    os.makedirs(directory, exist_ok=True)
    safetensors.numpy.save_file(
        tensors, os.path.join(directory, WEIGHTS_FILE), metadata={"format": "pt"}
    )
    with open(os.path.join(directory, CONFIG_FILE), "w") as f:
        json.dump(config, f, indent=2)
        f.write("\n")
    return directory
