"""Gemma 2 (`gemma2_2b_en`, `gemma2_9b_en`, ...): KerasHub's `GemmaBackbone` with post-attention
and post-MLP norms, logit soft caps and alternating sliding-window layers; transformers'
`Gemma2ForCausalLM`."""

from __future__ import annotations

import keras_hub

from gemma_tune.model.families import shared


def _is_gemma2(backbone) -> bool:
    return bool(backbone.use_post_attention_norm or backbone.use_post_ffw_norm)


def tiny_backbone(common: dict):
    """Two random layers with post norms, both soft caps and a 16-token sliding window."""
    return keras_hub.models.GemmaBackbone(
        **common,
        query_head_dim_normalize=False,
        use_post_ffw_norm=True,
        use_post_attention_norm=True,
        attention_logit_soft_cap=50.0,
        final_logit_soft_cap=30.0,
        use_sliding_window_attention=True,
        sliding_window_size=16,
    )


def hf_config(backbone, tokenizer, dtype: str) -> dict:
    """transformers' `Gemma2Config` as a dict."""
    return {
        "architectures": ["Gemma2ForCausalLM"],
        "model_type": "gemma2",
        **shared.hf_common_config(backbone, tokenizer, dtype),
        **shared.soft_caps(backbone),
        "hidden_activation": "gelu_pytorch_tanh",
        "max_position_embeddings": 8192,
        "query_pre_attn_scalar": shared.query_pre_attn_scalar(backbone),
        "sliding_window": backbone.sliding_window_size,
        "layer_types": shared.layer_types(backbone),
        "rope_theta": 10000.0,
        "cache_implementation": "hybrid",
    }


def hf_weights(backbone) -> dict:
    """transformers' `Gemma2ForCausalLM` state dict, float32."""
    return shared.hf_weights(backbone, post_norms=True, query_key_norms=False)


FAMILY = shared.family(
    name="gemma2",
    title="Gemma 2",
    backbone_class=keras_hub.models.GemmaBackbone,
    causal_lm_class=keras_hub.models.GemmaCausalLM,
    preprocessor_class=keras_hub.models.GemmaCausalLMPreprocessor,
    tokenizer_class=keras_hub.models.GemmaTokenizer,
    matches=_is_gemma2,
    tiny_backbone=tiny_backbone,
    tiny_tokenizer=lambda proto: keras_hub.models.GemmaTokenizer(proto=proto),
    hf_config=hf_config,
    hf_weights=hf_weights,
)
