"""Gemma 4: KerasHub's `Gemma4Backbone` / `Gemma4CausalLM`, dense (`gemma4`) or with a
mixture-of-experts block beside each MLP (`gemma4_moe`, the 26B A4B layout), with its vision
encoder or without (`vision`: `gemma4_vision`) and never with its audio encoder (a preset's is
left out when it loads: `encoders`); transformers' `Gemma4ForCausalLM`, or
`Gemma4ForConditionalGeneration` with the vision encoder.

What differs from Gemma 3 and matters here:
- the backbone takes `position_ids` as an input (`Family.position_ids`);
- sliding and global layers are listed in `layer_types`; global layers may have a larger
  `global_head_dim`, partial ("proportional") RoPE, and K=V attention (no `value` projection,
  `num_global_key_value_heads`); the last `num_kv_shared_layers` layers have no `key` or
  `value` projection and read an earlier layer's keys and values, and may have a double-wide
  MLP; per-layer token embeddings condition every block; norms are `x * w`, not `x * (1 + w)`;
- the decoder block multiplies its MLP kernels directly (`ops.matmul(x, gating_ffw.kernel)`),
  bypassing the projection layers' `call`: `kernel_read_targets` tells LoRA, DoRA and QLoRA;
- turns are `<|turn>ROLE\\n ... <turn|>` with a system role, and the chat template writes tool
  declarations, calls and results (`gemma4_tools`).
The MoE experts are raw 3-D weights, not projections: LoRA adapts the dense MLP beside them and
the attention, never the experts.
"""

from __future__ import annotations

import keras_hub

from gemma_tune.model.families import base, gemma4_hf, gemma4_tools, gemma4_vision, shared

CHAT = base.ChatMarkers(start_of_turn="<|turn>", end_of_turn="<turn|>", system_role="system")
TOOLS = base.ToolFormat(
    tokens=gemma4_tools.TOKENS,
    declarations=gemma4_tools.declarations,
    calls=gemma4_tools.calls,
    responses=gemma4_tools.responses,
    awaiting_response=gemma4_tools.START_OF_RESPONSE,
)

# Gemma 4's chat format as a Jinja template (for exported tokenizers), exactly as
# `training.template` writes it: a system turn first when there is one, "assistant" is the
# "model" role. A message's content is a string or a list of parts (`{"type": "text", ...}`,
# `{"type": "image"}`), as transformers' processors pass them; an image part is `<|image|>`,
# which `Gemma4Processor` expands into `<|image>`, the image's placeholders and `<image|>`.
HF_CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{% set role = 'model' if message['role'] == 'assistant' else message['role'] %}"
    "{{ '<|turn>' + role + '\n' }}"
    "{% if message['content'] is string %}"
    "{{ message['content'] | trim if role == 'system' else message['content'] }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'image' %}{{ '<|image|>' }}"
    "{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}"
    "{{ '<turn|>\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|turn>model\n' }}{% endif %}"
)

# The MLP projections Gemma4TextDecoderBlock multiplies by `layer.kernel` itself.
KERNEL_READ_TARGETS = ("ffw_gating", "ffw_gating_2", "ffw_linear")


def _check_no_audio(backbone) -> bool:
    """True for a Gemma 4 backbone without an audio encoder (with or without vision).

    Raises:
      ValueError: for one with an audio encoder (its inputs hold audio gemma_tune never reads).
    """
    if backbone.audio_encoder is not None:
        raise ValueError(
            "Gemma 4 with an audio encoder is not supported: gemma_tune tunes Gemma 4 on text "
            "and images (a backbone built with audio_encoder=None; model.preset loads a "
            "preset without its audio encoder)"
        )
    return True


def _is_dense(backbone) -> bool:
    return _check_no_audio(backbone) and not backbone.enable_moe_block


def _is_moe(backbone) -> bool:
    return _check_no_audio(backbone) and bool(backbone.enable_moe_block)


def _tiny_layout(common: dict) -> dict:
    """The common tiny shape with Gemma 4's attention layout.

    Gemma 4 needs more than the two common layers: KV sharing reads the keys and values of the
    last earlier layer *of the same kind*, so the tiny model has at least four layers,
    alternating sliding and global (`layer_types`, ending global as real Gemma 4 does), and the
    last two (one of each kind) are KV-shared in the dense model. The sliding window (8 tokens)
    is shorter than the tests' sequences, so it matters.
    """
    num_layers = max(int(common["num_layers"]), 4)
    layer_types = ["sliding_attention", "full_attention"] * (num_layers // 2)
    if num_layers % 2:
        layer_types = ["sliding_attention"] + layer_types
    return {
        **common,
        "num_layers": num_layers,
        "image_size": None,
        "layer_types": layer_types,
        "sliding_window_size": 8,
        "global_head_dim": 2 * common["head_dim"],
        "global_rope_partial_rotary_factor": 0.25,
        # K=V on the global layers: one key/value head and no `value` projection there.
        "num_global_key_value_heads": 1,
        "final_logit_soft_cap": 30.0,
    }


def tiny_backbone(common: dict, **extra):
    """Four random layers (sliding/global alternating) with a larger global head dimension,
    partial RoPE and K=V on global layers, the last two layers KV-shared with a double-wide
    MLP, per-layer token inputs and a final logit soft cap (the "E" models' features).
    `extra` overrides backbone arguments (the vision model's `image_size`, `vision_encoder`)."""
    layout = {**_tiny_layout(common), **extra}
    return keras_hub.models.Gemma4Backbone(
        **layout,
        num_kv_shared_layers=2,
        hidden_size_per_layer_input=4,
        vocab_size_per_layer_input=common["vocabulary_size"],
        use_double_wide_mlp=True,
    )


def tiny_moe_backbone(common: dict, **extra):
    """The tiny attention layout with a four-expert, top-2 mixture-of-experts block beside
    every dense MLP (the 26B A4B layout), no KV sharing; `extra` as in `tiny_backbone`."""
    return keras_hub.models.Gemma4Backbone(
        **{**_tiny_layout(common), **extra},
        enable_moe_block=True,
        num_experts=4,
        expert_intermediate_dim=8,
        num_experts_per_token=2,
    )


def _tiny_tokenizer(proto: bytes):
    return keras_hub.models.Gemma4Tokenizer(
        proto=proto, has_vision_tokens=False, has_audio_tokens=False, has_video_tokens=False
    )


def _tiny_vision_tokenizer(proto: bytes):
    """The tiny tokenizer with Gemma 4's image tokens (`<|image>`, `<|image|>`, `<image|>`)."""
    return keras_hub.models.Gemma4Tokenizer(
        proto=proto, has_vision_tokens=True, has_audio_tokens=False, has_video_tokens=False
    )


def hf_config(backbone, tokenizer, dtype: str) -> dict:
    """transformers' `Gemma4TextConfig` as a dict, dense or MoE; with a vision encoder,
    `Gemma4Config` around it (`gemma4_hf.hf_config`)."""
    return gemma4_hf.hf_config(backbone, tokenizer, dtype, FAMILY.vision)


def hf_weights(backbone) -> dict:
    """transformers' `Gemma4ForCausalLM` state dict, float32; with a vision encoder,
    `Gemma4ForConditionalGeneration`'s (`gemma4_hf.hf_weights`)."""
    return gemma4_hf.hf_weights(backbone)


def _family(name: str, title: str, matches, tiny) -> base.Family:
    return base.Family(
        name=name,
        title=title,
        backbone_class=keras_hub.models.Gemma4Backbone,
        causal_lm_class=keras_hub.models.Gemma4CausalLM,
        preprocessor_class=keras_hub.models.Gemma4CausalLMPreprocessor,
        tokenizer_class=keras_hub.models.Gemma4Tokenizer,
        matches=matches,
        tiny_backbone=tiny,
        tiny_tokenizer=_tiny_tokenizer,
        lora_targets=shared.LORA_TARGETS,
        lora_target_groups=shared.LORA_TARGET_GROUPS,
        default_lora_targets=shared.DEFAULT_LORA_TARGETS,
        chat=CHAT,
        hf_chat_template=HF_CHAT_TEMPLATE,
        hf_tokenizer_class=shared.HF_TOKENIZER_CLASS,
        hf_config=hf_config,
        hf_weights=hf_weights,
        # transformers' Gemma 4 names its projections as Gemma 1-3 do; K=V global layers have
        # fewer key heads, so `k_proj`'s PEFT rank differs by layer (`peft_export.rank_pattern`).
        peft_modules=shared.PEFT_MODULES,
        # Gemma4CausalLM's cache builder, like Gemma 3's, also takes image embeddings, vision
        # mask, padding mask and vision indices.
        cache_arguments=4,
        position_ids=True,
        kernel_read_targets=KERNEL_READ_TARGETS,
        # Every KerasHub Gemma 4 preset has a vision encoder, which loads (`vision`); the "E"
        # models have an audio one too, which is left out.
        encoders=("vision_encoder", "audio_encoder"),
        vision=gemma4_vision.vision(tiny, _tiny_vision_tokenizer),
        tools=TOOLS,
    )


FAMILY = _family("gemma4", "Gemma 4", _is_dense, tiny_backbone)
# The same classes; `matches` tells them apart by the backbone's `enable_moe_block`.
MOE_FAMILY = _family("gemma4_moe", "Gemma 4 MoE", _is_moe, tiny_moe_backbone)
