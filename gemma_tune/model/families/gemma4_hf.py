"""Gemma 4 -> transformers' `Gemma4ForCausalLM` (`gemma4_text`): config and weights; with a
vision encoder, `Gemma4ForConditionalGeneration` around them (`gemma4_vision_hf`).

Read from the layers themselves (which layers slide, their RoPE bases and partial factors, the
key/value layout) rather than from the backbone's arguments. What transformers' config must
say explicitly, because its defaults differ from KerasHub's or are easily misread:
- `architectures` is `Gemma4ForCausalLM` (transformers has no `Gemma4TextForCausalLM`);
- the full-attention RoPE entry has `"rope_type": "proportional"` with its partial factor;
- `attention_k_eq_v` (global layers reuse the key projection as values) and
  `num_global_key_value_heads`, `global_head_dim` (default 512 otherwise);
- `hidden_size_per_layer_input` is 0 without per-layer inputs (transformers' default is 256).
Norms are `x * w` on both sides, so norm weights copy as they are; attention kernels are
flattened to `(heads * head_dim, hidden)`. MoE: transformers fuses each expert's gate and up
projections into `experts.gate_up_proj` `(E, 2I, H)`.
"""

from __future__ import annotations

import numpy as np

from gemma_tune.model.families import gemma4_vision_hf, shared


def _check_exportable(backbone) -> None:
    """Refuses what transformers' `Gemma4ForCausalLM` cannot express."""
    if backbone.audio_encoder is not None:
        raise ValueError("Gemma 4 with an audio encoder cannot be exported; text and images only")
    blocks = shared.blocks(backbone)
    for i, block in enumerate(blocks):
        attention = block.attention
        if attention.logit_soft_cap:
            raise ValueError("transformers' Gemma 4 has no attention logit soft cap")
        if attention.rope_scaling_factor != 1.0:
            raise ValueError(
                f"layer {i}: RoPE scaling {attention.rope_scaling_factor} not exported"
            )
        if attention.use_bidirectional_attention:
            raise ValueError("bidirectional Gemma 4 attention is not exported")
        if block.use_vision_bidirectional_attention and backbone.vision_encoder is None:
            raise ValueError("bidirectional image attention without a vision encoder")
        sliding = bool(attention.use_sliding_window_attention)
        if sliding != (backbone.layer_types[i] == "sliding_attention"):
            raise ValueError(f"layer {i}: its sliding window disagrees with layer_types")


def _rope_parameters(backbone) -> dict:
    """transformers' per-layer-type RoPE: full RoPE on sliding layers, proportional (partial)
    RoPE on full-attention layers."""
    blocks = shared.blocks(backbone)

    def values(sliding: bool, attribute: str) -> list:
        return [
            getattr(b.attention, attribute)
            for b in blocks
            if bool(b.attention.use_sliding_window_attention) == sliding
        ]

    parameters = {}
    local = values(True, "rope_wavelength")
    if local:
        partial = shared.uniform(values(True, "rope_partial_rotary_factor"), "local RoPE fraction")
        if partial != 1.0:
            raise ValueError("transformers' Gemma 4 has full RoPE on sliding layers")
        parameters["sliding_attention"] = {
            "rope_type": "default",
            "rope_theta": float(shared.uniform(local, "local RoPE base")),
        }
    full = values(False, "rope_wavelength")
    if full:
        parameters["full_attention"] = {
            "rope_type": "proportional",
            "partial_rotary_factor": float(
                shared.uniform(values(False, "rope_partial_rotary_factor"), "global RoPE fraction")
            ),
            "rope_theta": float(shared.uniform(full, "global RoPE base")),
        }
    return parameters


def hf_config(backbone, tokenizer, dtype: str, vision=None) -> dict:
    """transformers' `Gemma4TextConfig` (for `Gemma4ForCausalLM`) as a dict; with a vision
    encoder, `Gemma4Config` around it (`vision`: the family's `base.Vision`).

    Raises:
      ValueError: for a model transformers' Gemma 4 cannot express (an audio encoder, an
        attention soft cap, RoPE scaling, bidirectional attention).
    """
    text = _text_config(backbone, tokenizer, dtype)
    if backbone.vision_encoder is None:
        return text
    return gemma4_vision_hf.hf_config(backbone, tokenizer, dtype, text, vision)


def _text_config(backbone, tokenizer, dtype: str) -> dict:
    _check_exportable(backbone)
    blocks = shared.blocks(backbone)
    first = blocks[0]
    k_eq_v = backbone.num_global_key_value_heads is not None
    return {
        "architectures": ["Gemma4ForCausalLM"],
        "model_type": "gemma4_text",
        "vocab_size": backbone.vocabulary_size,
        "hidden_size": backbone.hidden_dim,
        "intermediate_size": backbone.intermediate_dim,
        "num_hidden_layers": backbone.num_layers,
        "num_attention_heads": backbone.num_query_heads,
        "num_key_value_heads": backbone.num_key_value_heads,
        "head_dim": backbone.head_dim,
        "global_head_dim": backbone.global_head_dim or backbone.head_dim,
        "attention_k_eq_v": k_eq_v,
        "num_global_key_value_heads": (
            backbone.num_global_key_value_heads if k_eq_v else backbone.num_key_value_heads
        ),
        "num_kv_shared_layers": backbone.num_kv_shared_layers,
        "use_double_wide_mlp": bool(backbone.use_double_wide_mlp),
        "hidden_size_per_layer_input": backbone.hidden_size_per_layer_input,
        "vocab_size_per_layer_input": (
            backbone.vocab_size_per_layer_input or backbone.vocabulary_size
        ),
        "enable_moe_block": bool(backbone.enable_moe_block),
        "num_experts": backbone.num_experts if backbone.enable_moe_block else None,
        "top_k_experts": backbone.num_experts_per_token if backbone.enable_moe_block else None,
        "moe_intermediate_size": (
            backbone.expert_intermediate_dim if backbone.enable_moe_block else None
        ),
        "rms_norm_eps": float(first.pre_attention_norm.epsilon),
        "hidden_activation": "gelu_pytorch_tanh",
        "sliding_window": backbone.sliding_window_size,
        "layer_types": shared.layer_types(backbone),
        "rope_parameters": _rope_parameters(backbone),
        "final_logit_softcapping": backbone.token_embedding.logit_soft_cap,
        # Image tokens attend both ways within an image (the 26B and 31B presets).
        "use_bidirectional_attention": (
            "vision" if backbone.use_vision_bidirectional_attention else None
        ),
        "max_position_embeddings": 131072,
        **shared.hf_token_config(backbone, tokenizer, dtype),
    }


def _heads_in(layer, hidden: int) -> np.ndarray:
    kernel = shared.numpy(layer.kernel)  # (heads, hidden, head_dim)
    return kernel.transpose(0, 2, 1).reshape(-1, hidden)


def hf_weights(backbone) -> dict[str, np.ndarray]:
    """transformers' `Gemma4ForCausalLM` state dict, float32 (LoRA already merged); with a
    vision encoder, `Gemma4ForConditionalGeneration`'s (`gemma4_vision_hf`)."""
    text = _text_weights(backbone)
    if backbone.vision_encoder is None:
        return text
    return gemma4_vision_hf.hf_weights(backbone, text)


def _text_weights(backbone) -> dict[str, np.ndarray]:
    _check_exportable(backbone)
    hidden = backbone.hidden_dim
    weights = {"model.embed_tokens.weight": shared.numpy(backbone.token_embedding.embeddings)}
    if backbone.hidden_size_per_layer_input > 0:
        weights["model.embed_tokens_per_layer.weight"] = shared.numpy(
            backbone.get_layer("per_layer_token_embedding").embeddings
        )
        weights["model.per_layer_model_projection.weight"] = shared.numpy(
            backbone.get_layer("per_layer_model_projection").kernel
        ).T
        weights["model.per_layer_projection_norm.weight"] = shared.numpy(
            backbone.get_layer("per_layer_projection_norm").scale
        )
    for i, block in enumerate(shared.blocks(backbone)):
        weights.update(_block_weights(block, f"model.layers.{i}.", hidden))
    weights["model.norm.weight"] = shared.numpy(backbone.get_layer("final_normalization").scale)
    if not backbone.token_embedding.tie_weights:
        weights["lm_head.weight"] = shared.numpy(backbone.token_embedding.reverse_embeddings).T
    return weights


def _block_weights(block, prefix: str, hidden: int) -> dict[str, np.ndarray]:
    attention = block.attention
    weights = {
        "input_layernorm.weight": shared.numpy(block.pre_attention_norm.scale),
        "post_attention_layernorm.weight": shared.numpy(block.post_attention_norm.scale),
        "pre_feedforward_layernorm.weight": shared.numpy(block.pre_ffw_norm.scale),
        "post_feedforward_layernorm.weight": shared.numpy(block.post_ffw_norm.scale),
        "self_attn.q_proj.weight": _heads_in(attention.query_dense, hidden),
        "self_attn.q_norm.weight": shared.numpy(attention.query_norm.scale),
        # (heads, head_dim, hidden) -> (hidden, heads * head_dim)
        "self_attn.o_proj.weight": shared.numpy(attention.output_dense.kernel)
        .reshape(-1, hidden)
        .T,
        "mlp.gate_proj.weight": shared.numpy(block.gating_ffw.kernel).T,
        "mlp.up_proj.weight": shared.numpy(block.gating_ffw_2.kernel).T,
        "mlp.down_proj.weight": shared.numpy(block.ffw_linear.kernel).T,
        # A scalar in KerasHub, shape (1,) in transformers.
        "layer_scalar": shared.numpy(block.layer_scalar).reshape(1),
    }
    if not attention.is_kv_shared_layer:
        weights["self_attn.k_proj.weight"] = _heads_in(attention.key_dense, hidden)
        weights["self_attn.k_norm.weight"] = shared.numpy(attention.key_norm.scale)
        if attention.value_dense is not None:  # None on K=V layers: values are the keys
            weights["self_attn.v_proj.weight"] = _heads_in(attention.value_dense, hidden)
    if block.hidden_size_per_layer_input > 0:
        weights["per_layer_input_gate.weight"] = shared.numpy(block.per_layer_input_gate.kernel).T
        weights["per_layer_projection.weight"] = shared.numpy(block.per_layer_up_proj.kernel).T
        weights["post_per_layer_input_norm.weight"] = shared.numpy(
            block.post_per_layer_input_norm.scale
        )
    if block.enable_moe_block:
        weights.update(_moe_weights(block))
    return {prefix + name: value for name, value in weights.items()}


def _moe_weights(block) -> dict[str, np.ndarray]:
    """The router, the expert bank and the MoE path's three norms of one block."""
    router, experts = block.moe_router, block.moe_expert_bank
    gate = shared.numpy(experts.gate_proj).transpose(0, 2, 1)  # (E, H, I) -> (E, I, H)
    up = shared.numpy(experts.up_proj).transpose(0, 2, 1)
    return {
        "post_feedforward_layernorm_1.weight": shared.numpy(block.post_ffw_norm_dense.scale),
        "pre_feedforward_layernorm_2.weight": shared.numpy(block.pre_ffw_norm_moe.scale),
        "post_feedforward_layernorm_2.weight": shared.numpy(block.post_ffw_norm_moe_path.scale),
        "router.scale": shared.numpy(router.per_dim_scale),
        "router.proj.weight": shared.numpy(router.proj.kernel).T,
        # Applied to the routing weights in transformers, to the expert outputs in KerasHub.
        "router.per_expert_scale": shared.numpy(experts.per_expert_scale),
        "experts.gate_up_proj": np.concatenate([gate, up], axis=1),  # (E, 2I, H)
        "experts.down_proj": shared.numpy(experts.down_proj).transpose(0, 2, 1),  # (E, H, I)
    }
