"""What Gemma 1, 2 and 3 share: chat markers, LoRA targets and the Hugging Face layout.

The three families use the same KerasHub layer names (`query`, `key`, `value`,
`attention_output`, `ffw_gating`, `ffw_gating_2`, `ffw_linear`), the same turn markers and the
same transformers weight names; they differ in norms, soft caps, sliding windows and RoPE,
which each family module adds. Both sides use RMSNorm with `(1 + weight)` and scale
embeddings by `sqrt(hidden_size)`, so norms and embeddings copy as they are; the head-split
attention kernels are flattened to `(heads * head_dim, hidden)`. Architectural settings are
read from the layers themselves (which layers slide, RoPE bases, the query scaling the
attention layer actually applies), not from the backbone's arguments, because KerasHub's
decoder blocks override some of those arguments (`query_head_dim_normalize`).
"""

from __future__ import annotations

import numpy as np

from gemma_tune.model.families import base

CHAT = base.ChatMarkers(start_of_turn="<start_of_turn>", end_of_turn="<end_of_turn>")

# Gemma's chat format as a Jinja template (for exported tokenizers), exactly as
# `training.template` writes it: a system prompt is folded into the first user turn,
# "assistant" is Gemma's "model" role. A message's content is a string or a list of parts
# (`{"type": "text", "text": ...}`, `{"type": "image"}`), as transformers' processors pass
# them; an image part is `<start_of_image>`, which Gemma 3's processor expands into the image
# span our template writes (only a model that reads images has that token as a special one).
HF_CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% if messages[0]['role'] == 'system' %}"
    "{% set first_user_prefix = messages[0]['content'] | trim + '\n\n' %}"
    "{% set loop_messages = messages[1:] %}"
    "{% else %}{% set first_user_prefix = '' %}{% set loop_messages = messages %}{% endif %}"
    "{% for message in loop_messages %}"
    "{% set role = 'model' if message['role'] == 'assistant' else message['role'] %}"
    "{{ '<start_of_turn>' + role + '\n' + (first_user_prefix if loop.first else '') }}"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'image' %}{{ '<start_of_image>' }}"
    "{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}"
    "{{ '<end_of_turn>\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<start_of_turn>model\n' }}{% endif %}"
)

HF_TOKENIZER_CLASS = "GemmaTokenizer"  # transformers' class for every Gemma 1-3 vocabulary

ATTENTION_TARGETS = ("query", "key", "value", "attention_output")
MLP_TARGETS = ("ffw_gating", "ffw_gating_2", "ffw_linear")
LORA_TARGETS = ATTENTION_TARGETS + MLP_TARGETS
LORA_TARGET_GROUPS = {"attention": ATTENTION_TARGETS, "mlp": MLP_TARGETS, "all": LORA_TARGETS}
DEFAULT_LORA_TARGETS = ("query", "value")  # KerasHub's, as in Google's Gemma LoRA tutorial

PEFT_MODULES = {
    "query": ("self_attn.q_proj", True),
    "key": ("self_attn.k_proj", True),
    "value": ("self_attn.v_proj", True),
    "attention_output": ("self_attn.o_proj", False),
    "ffw_gating": ("mlp.gate_proj", False),
    "ffw_gating_2": ("mlp.up_proj", False),
    "ffw_linear": ("mlp.down_proj", False),
}

# The keyword arguments every tiny test model shares (`gemma_tune.testing`).
TINY_COMMON_KEYS = ("vocabulary_size", "num_layers", "num_query_heads", "num_key_value_heads")


def numpy(variable) -> np.ndarray:
    """A Keras variable's value as a float32 NumPy array."""
    return np.asarray(variable.numpy(), np.float32)


def blocks(backbone) -> list:
    """The backbone's decoder blocks, in order."""
    return [backbone.get_layer(f"decoder_block_{i}") for i in range(backbone.num_layers)]


def hf_weights(backbone, post_norms: bool, query_key_norms: bool) -> dict[str, np.ndarray]:
    """transformers' `*ForCausalLM` weights of a Gemma 1-3 backbone (LoRA already merged).

    Args:
      backbone: the KerasHub backbone.
      post_norms: Gemma 2/3's four norms per block (else Gemma 1's two).
      query_key_norms: Gemma 3's RMSNorm on queries and keys.
    """
    hidden = backbone.hidden_dim
    weights = {"model.embed_tokens.weight": numpy(backbone.token_embedding.embeddings)}
    for i, block in enumerate(blocks(backbone)):
        prefix = f"model.layers.{i}."
        attention = block.attention
        for name, layer in (
            ("q_proj", attention.query_dense),
            ("k_proj", attention.key_dense),
            ("v_proj", attention.value_dense),
        ):
            kernel = numpy(layer.kernel)  # (heads, hidden, head_dim)
            weights[f"{prefix}self_attn.{name}.weight"] = kernel.transpose(0, 2, 1).reshape(
                -1, hidden
            )
        output = numpy(attention.output_dense.kernel)  # (heads, head_dim, hidden)
        weights[f"{prefix}self_attn.o_proj.weight"] = output.reshape(-1, hidden).T
        weights[f"{prefix}mlp.gate_proj.weight"] = numpy(block.gating_ffw.kernel).T
        weights[f"{prefix}mlp.up_proj.weight"] = numpy(block.gating_ffw_2.kernel).T
        weights[f"{prefix}mlp.down_proj.weight"] = numpy(block.ffw_linear.kernel).T
        weights[f"{prefix}input_layernorm.weight"] = numpy(block.pre_attention_norm.scale)
        weights.update(_norm_weights(block, prefix, post_norms))
        if query_key_norms:
            weights[f"{prefix}self_attn.q_norm.weight"] = numpy(attention.query_norm.scale)
            weights[f"{prefix}self_attn.k_norm.weight"] = numpy(attention.key_norm.scale)
    weights["model.norm.weight"] = numpy(backbone.get_layer("final_normalization").scale)
    if not backbone.token_embedding.tie_weights:
        weights["lm_head.weight"] = numpy(backbone.token_embedding.reverse_embeddings).T
    return weights


def _norm_weights(block, prefix: str, post_norms: bool) -> dict[str, np.ndarray]:
    if not post_norms:
        # Gemma 1's "post_attention_layernorm" is the norm before the MLP.
        return {f"{prefix}post_attention_layernorm.weight": numpy(block.pre_ffw_norm.scale)}
    return {
        f"{prefix}post_attention_layernorm.weight": numpy(block.post_attention_norm.scale),
        f"{prefix}pre_feedforward_layernorm.weight": numpy(block.pre_ffw_norm.scale),
        f"{prefix}post_feedforward_layernorm.weight": numpy(block.post_ffw_norm.scale),
    }


def uniform(values: list, what: str):
    """The one value all layers share; transformers' configs hold one per model.

    Raises:
      ValueError: when layers differ in `what`.
    """
    if len(set(values)) != 1:
        raise ValueError(f"layers differ in {what} ({values}); transformers needs one value")
    return values[0]


def query_pre_attn_scalar(backbone) -> int:
    """The query scaling the attention layers apply, as transformers' `query_pre_attn_scalar`."""

    def scalar(block) -> int:
        attention = block.attention
        if attention.query_head_dim_normalize:
            return attention.head_dim
        return backbone.hidden_dim // attention.num_query_heads

    return uniform([scalar(block) for block in blocks(backbone)], "query scaling")


def sliding_layers(backbone) -> list[bool]:
    """Which decoder blocks use a sliding attention window."""
    return [bool(block.attention.use_sliding_window_attention) for block in blocks(backbone)]


def layer_types(backbone) -> list[str]:
    """transformers' `layer_types`: "sliding_attention" or "full_attention" per layer."""
    return [
        "sliding_attention" if sliding else "full_attention" for sliding in sliding_layers(backbone)
    ]


def soft_caps(backbone) -> dict:
    """transformers' attention and final logit soft caps (None when off)."""
    return {
        "attn_logit_softcapping": uniform(
            [block.attention.logit_soft_cap for block in blocks(backbone)], "attention soft cap"
        ),
        "final_logit_softcapping": backbone.token_embedding.logit_soft_cap,
    }


def hf_common_config(backbone, tokenizer, dtype: str) -> dict:
    """The config.json entries every Gemma 1-3 transformers config has."""
    first = blocks(backbone)[0]
    return {
        "vocab_size": backbone.vocabulary_size,
        "hidden_size": backbone.hidden_dim,
        "intermediate_size": int(first.gating_ffw.kernel.shape[-1]),
        "num_hidden_layers": backbone.num_layers,
        "num_attention_heads": backbone.num_query_heads,
        "num_key_value_heads": backbone.num_key_value_heads,
        "head_dim": backbone.head_dim,
        "rms_norm_eps": float(first.pre_attention_norm.epsilon),
        **hf_token_config(backbone, tokenizer, dtype),
    }


def hf_token_config(backbone, tokenizer, dtype: str) -> dict:
    """The config.json entries every Gemma transformers config has alike: special token ids,
    tied embeddings, dtype, and no attention bias or dropout."""
    return {
        "attention_bias": False,
        "attention_dropout": 0.0,
        "initializer_range": 0.02,
        "pad_token_id": int(tokenizer.pad_token_id),
        "bos_token_id": int(tokenizer.start_token_id),
        "eos_token_id": int(tokenizer.end_token_id),
        "tie_word_embeddings": bool(backbone.token_embedding.tie_weights),
        "torch_dtype": dtype,
        "use_cache": True,
    }


def family(**fields) -> base.Family:
    """A `base.Family` with what Gemma 1, 2 and 3 share (LoRA targets, chat markers and
    template, transformers' tokenizer class, PEFT modules) filled in; `fields` gives the rest."""
    return base.Family(
        lora_targets=LORA_TARGETS,
        lora_target_groups=LORA_TARGET_GROUPS,
        default_lora_targets=DEFAULT_LORA_TARGETS,
        chat=CHAT,
        hf_chat_template=HF_CHAT_TEMPLATE,
        hf_tokenizer_class=HF_TOKENIZER_CLASS,
        peft_modules=PEFT_MODULES,
        **fields,
    )
