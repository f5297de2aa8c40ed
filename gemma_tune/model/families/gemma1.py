"""Gemma 1 (`gemma_2b_en`, `gemma_7b_en`, ...): KerasHub's `GemmaBackbone` without Gemma 2's
extra norms; transformers' `GemmaForCausalLM`."""

from __future__ import annotations

import keras_hub

from gemma_tune.model.families import shared


def _is_gemma1(backbone) -> bool:
    return not (backbone.use_post_attention_norm or backbone.use_post_ffw_norm)


def tiny_backbone(common: dict):
    """Two random layers, several key/value heads (grouped attention)."""
    return keras_hub.models.GemmaBackbone(**common)


def hf_config(backbone, tokenizer, dtype: str) -> dict:
    """transformers' `GemmaConfig` as a dict.

    Raises:
      ValueError: for a GemmaBackbone with Gemma 2 features but not its norms (no
        transformers class computes that).
    """
    caps = shared.soft_caps(backbone)
    if (
        any(shared.sliding_layers(backbone))
        or any(caps.values())
        or shared.query_pre_attn_scalar(backbone) != backbone.head_dim
    ):
        raise ValueError(
            "a GemmaBackbone with sliding windows, soft caps or another query scaling but without "
            "Gemma 2's post norms has no transformers equivalent"
        )
    return {
        "architectures": ["GemmaForCausalLM"],
        "model_type": "gemma",
        **shared.hf_common_config(backbone, tokenizer, dtype),
        "hidden_act": "gelu_pytorch_tanh",
        "max_position_embeddings": 8192,
        "rope_theta": 10000.0,
    }


def hf_weights(backbone) -> dict:
    """transformers' `GemmaForCausalLM` state dict, float32."""
    return shared.hf_weights(backbone, post_norms=False, query_key_norms=False)


FAMILY = shared.family(
    name="gemma1",
    title="Gemma 1",
    backbone_class=keras_hub.models.GemmaBackbone,
    causal_lm_class=keras_hub.models.GemmaCausalLM,
    preprocessor_class=keras_hub.models.GemmaCausalLMPreprocessor,
    tokenizer_class=keras_hub.models.GemmaTokenizer,
    matches=_is_gemma1,
    tiny_backbone=tiny_backbone,
    tiny_tokenizer=lambda proto: keras_hub.models.GemmaTokenizer(proto=proto),
    hf_config=hf_config,
    hf_weights=hf_weights,
)
