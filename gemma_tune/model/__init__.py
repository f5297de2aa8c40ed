"""The model: loading a Gemma (`load`), choosing what trains (`tuning`), LoRA/DoRA (`lora`),
QLoRA's quantized base (`quantize`), adapter files (`adapters`), GGUF import (`gguf_convert`),
every private Keras/KerasHub touch (`keras_compat`) and the Gemma families (`families`).

The names below are the package's face: `from gemma_tune import model; model.load(...)`.
"""

from gemma_tune.model.load import (
    TINY_PREFIX,
    LoadedModel,
    causal_lm_for,
    has_tool_format,
    has_vision_encoder,
    load,
    load_text_backbone,
    load_tokenizer,
    reads_images,
    resolve_dtype,
    resolve_preset,
)
from gemma_tune.model.tuning import (
    DEFAULT_LORA_TARGETS,
    LORA_TARGET_GROUPS,
    LORA_TARGETS,
    METHODS,
    REMAT_MODES,
    check_tuning,
    describe_tuning,
    enable_full,
    enable_lora,
    enable_remat,
    enable_tuning,
    lora_target_names,
    parameter_counts,
    remat_mode,
)

__all__ = [
    "DEFAULT_LORA_TARGETS",
    "LORA_TARGETS",
    "LORA_TARGET_GROUPS",
    "METHODS",
    "REMAT_MODES",
    "TINY_PREFIX",
    "LoadedModel",
    "causal_lm_for",
    "has_tool_format",
    "has_vision_encoder",
    "check_tuning",
    "describe_tuning",
    "enable_full",
    "enable_lora",
    "enable_remat",
    "remat_mode",
    "enable_tuning",
    "load",
    "load_text_backbone",
    "load_tokenizer",
    "lora_target_names",
    "parameter_counts",
    "reads_images",
    "resolve_dtype",
    "resolve_preset",
]
