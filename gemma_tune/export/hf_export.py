"""A KerasHub Gemma 1, 2 or 3 (text) -> a Hugging Face transformers model directory.

    python -m gemma_tune.export --run=RUN_DIR --to=hf --out=DIR

writes `model.safetensors`, `config.json`, `generation_config.json` and the tokenizer
(`tokenizer.model`, `tokenizer_config.json` with Gemma's chat template,
`special_tokens_map.json`, and `tokenizer.json` when transformers is installed), so that

    transformers.AutoModelForCausalLM.from_pretrained(DIR)
    transformers.AutoTokenizer.from_pretrained(DIR)

load it directly. A model with LoRA is merged first (`gemma_tune.export.merge`): LoRA is never
dropped.

The mapping follows transformers' Gemma, Gemma2 and Gemma3Text modeling code: both sides use
RMSNorm with `(1 + weight)` and scale embeddings by `sqrt(hidden_size)`, so norms and embeddings
copy as they are; the head-split attention kernels are flattened to `(heads * head_dim, hidden)`.
Architectural settings are read from the layers themselves (which layers slide, RoPE bases, the
query scaling the attention layer actually applies), not from the backbone's arguments, because
KerasHub's decoder blocks override some of those arguments (`query_head_dim_normalize`).
The config is written in the Hub's checkpoint style (`rope_theta`, `rope_local_base_freq`,
`torch_dtype`), which transformers 4.x and 5.x both read.
"""

from __future__ import annotations

import json
import os

import keras_hub
import ml_dtypes
import numpy as np
import safetensors.numpy

from gemma_tune import model
from gemma_tune.export import merge

WEIGHTS_FILE = "model.safetensors"
_NUMPY_DTYPES = {"float32": np.float32, "bfloat16": ml_dtypes.bfloat16, "float16": np.float16}

# Gemma's chat format, as `gemma_tune.training.template` writes it: a system prompt is folded
# into the first user turn, "assistant" is Gemma's "model" role.
CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% if messages[0]['role'] == 'system' %}"
    "{% set first_user_prefix = messages[0]['content'] | trim + '\n\n' %}"
    "{% set loop_messages = messages[1:] %}"
    "{% else %}{% set first_user_prefix = '' %}{% set loop_messages = messages %}{% endif %}"
    "{% for message in loop_messages %}"
    "{% set role = 'model' if message['role'] == 'assistant' else message['role'] %}"
    "{{ '<start_of_turn>' + role + '\n' + (first_user_prefix if loop.first else '')"
    " + message['content'] + '<end_of_turn>\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<start_of_turn>model\n' }}{% endif %}"
)


def _numpy(variable) -> np.ndarray:
    return np.asarray(variable.numpy(), np.float32)


def _blocks(backbone) -> list:
    return [backbone.get_layer(f"decoder_block_{i}") for i in range(backbone.num_layers)]


def _is_gemma3(backbone) -> bool:
    if isinstance(backbone, keras_hub.models.Gemma3Backbone):
        if backbone.vision_encoder is not None:
            raise ValueError("Gemma 3 with a vision encoder is not supported; export text-only")
        return True
    if isinstance(backbone, keras_hub.models.GemmaBackbone):
        return False
    raise ValueError(f"{type(backbone).__name__} is not a Gemma backbone")


def _is_gemma2(backbone) -> bool:
    """Gemma 2 is a `GemmaBackbone` with the extra norms (and usually soft caps, sliding window)."""
    return not _is_gemma3(backbone) and (
        backbone.use_post_attention_norm or backbone.use_post_ffw_norm
    )


def state_dict(backbone) -> dict[str, np.ndarray]:
    """The transformers `*ForCausalLM` weights of a Gemma backbone without LoRA, in float32.

    Raises:
      ValueError: when the backbone still has LoRA (merge it first) or is not a Gemma.
    """
    if merge.has_lora(backbone):
        raise ValueError("the backbone has LoRA enabled: merge it first (merge.merge_lora)")
    gemma3 = _is_gemma3(backbone)
    post_norms = gemma3 or _is_gemma2(backbone)
    hidden = backbone.hidden_dim
    weights = {"model.embed_tokens.weight": _numpy(backbone.token_embedding.embeddings)}
    for i, block in enumerate(_blocks(backbone)):
        prefix = f"model.layers.{i}."
        attention = block.attention
        for name, layer in (
            ("q_proj", attention.query_dense),
            ("k_proj", attention.key_dense),
            ("v_proj", attention.value_dense),
        ):
            kernel = _numpy(layer.kernel)  # (heads, hidden, head_dim)
            weights[f"{prefix}self_attn.{name}.weight"] = kernel.transpose(0, 2, 1).reshape(
                -1, hidden
            )
        output = _numpy(attention.output_dense.kernel)  # (heads, head_dim, hidden)
        weights[f"{prefix}self_attn.o_proj.weight"] = output.reshape(-1, hidden).T
        weights[f"{prefix}mlp.gate_proj.weight"] = _numpy(block.gating_ffw.kernel).T
        weights[f"{prefix}mlp.up_proj.weight"] = _numpy(block.gating_ffw_2.kernel).T
        weights[f"{prefix}mlp.down_proj.weight"] = _numpy(block.ffw_linear.kernel).T
        weights[f"{prefix}input_layernorm.weight"] = _numpy(block.pre_attention_norm.scale)
        if post_norms:
            # Gemma 2/3 name the four norms by position; Gemma 1's "post_attention_layernorm"
            # is the norm before the MLP.
            weights[f"{prefix}post_attention_layernorm.weight"] = _numpy(
                block.post_attention_norm.scale
            )
            weights[f"{prefix}pre_feedforward_layernorm.weight"] = _numpy(block.pre_ffw_norm.scale)
            weights[f"{prefix}post_feedforward_layernorm.weight"] = _numpy(
                block.post_ffw_norm.scale
            )
        else:
            weights[f"{prefix}post_attention_layernorm.weight"] = _numpy(block.pre_ffw_norm.scale)
        if gemma3:
            weights[f"{prefix}self_attn.q_norm.weight"] = _numpy(attention.query_norm.scale)
            weights[f"{prefix}self_attn.k_norm.weight"] = _numpy(attention.key_norm.scale)
    weights["model.norm.weight"] = _numpy(backbone.get_layer("final_normalization").scale)
    if not backbone.token_embedding.tie_weights:
        weights["lm_head.weight"] = _numpy(backbone.token_embedding.reverse_embeddings).T
    return weights


def _query_pre_attn_scalar(block, hidden: int) -> int:
    attention = block.attention
    if attention.query_head_dim_normalize:
        return attention.head_dim
    return hidden // attention.num_query_heads


def _check_uniform(values: list, what: str):
    if len(set(values)) != 1:
        raise ValueError(f"layers differ in {what} ({values}); transformers needs one value")
    return values[0]


def config_dict(backbone, tokenizer, dtype: str = "float32") -> dict:
    """The transformers `config.json` for a Gemma backbone and its tokenizer.

    Args:
      backbone: a KerasHub `GemmaBackbone` (Gemma 1 or 2) or text-only `Gemma3Backbone`.
      tokenizer: its KerasHub tokenizer (for the special token ids).
      dtype: the dtype the weights are saved in.

    Returns:
      A `GemmaConfig`, `Gemma2Config` or `Gemma3TextConfig` as a dict.
    """
    gemma3 = _is_gemma3(backbone)
    blocks = _blocks(backbone)
    hidden = backbone.hidden_dim
    first = blocks[0]
    sliding = [bool(block.attention.use_sliding_window_attention) for block in blocks]
    common = {
        "vocab_size": backbone.vocabulary_size,
        "hidden_size": hidden,
        "intermediate_size": int(first.gating_ffw.kernel.shape[-1]),
        "num_hidden_layers": backbone.num_layers,
        "num_attention_heads": backbone.num_query_heads,
        "num_key_value_heads": backbone.num_key_value_heads,
        "head_dim": backbone.head_dim,
        "rms_norm_eps": float(first.pre_attention_norm.epsilon),
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
    soft_caps = {
        "attn_logit_softcapping": _check_uniform(
            [block.attention.logit_soft_cap for block in blocks], "attention soft cap"
        ),
        "final_logit_softcapping": backbone.token_embedding.logit_soft_cap,
    }
    query_pre_attn_scalar = _check_uniform(
        [_query_pre_attn_scalar(block, hidden) for block in blocks], "query scaling"
    )
    layer_types = ["sliding_attention" if s else "full_attention" for s in sliding]
    if gemma3:
        local = [
            b.attention.rope_wavelength for b in blocks if b.attention.use_sliding_window_attention
        ]
        full = [b for b in blocks if not b.attention.use_sliding_window_attention]
        global_factor = backbone.global_rope_scaling_factor
        if backbone.local_rope_scaling_factor != 1.0:
            raise ValueError("transformers' Gemma 3 has no RoPE scaling on sliding layers")
        return {
            "architectures": ["Gemma3ForCausalLM"],
            "model_type": "gemma3_text",
            **common,
            **soft_caps,
            "hidden_activation": "gelu_pytorch_tanh",
            "max_position_embeddings": 131072,
            "query_pre_attn_scalar": query_pre_attn_scalar,
            "sliding_window": backbone.sliding_window_size,
            "layer_types": layer_types,
            "rope_theta": float(
                _check_uniform([b.attention.rope_wavelength for b in full], "global RoPE base")
                if full
                else 1_000_000.0
            ),
            "rope_local_base_freq": float(
                _check_uniform(local, "local RoPE base") if local else 10_000.0
            ),
            "rope_scaling": (
                {"rope_type": "linear", "factor": float(global_factor)}
                if global_factor != 1.0
                else None
            ),
            "use_bidirectional_attention": False,
        }
    if _is_gemma2(backbone):
        return {
            "architectures": ["Gemma2ForCausalLM"],
            "model_type": "gemma2",
            **common,
            **soft_caps,
            "hidden_activation": "gelu_pytorch_tanh",
            "max_position_embeddings": 8192,
            "query_pre_attn_scalar": query_pre_attn_scalar,
            "sliding_window": backbone.sliding_window_size,
            "layer_types": layer_types,
            "rope_theta": 10000.0,
            "cache_implementation": "hybrid",
        }
    if any(sliding) or any(soft_caps.values()) or query_pre_attn_scalar != backbone.head_dim:
        raise ValueError(
            "a GemmaBackbone with sliding windows, soft caps or another query scaling but without "
            "Gemma 2's post norms has no transformers equivalent"
        )
    return {
        "architectures": ["GemmaForCausalLM"],
        "model_type": "gemma",
        **common,
        "hidden_act": "gelu_pytorch_tanh",
        "max_position_embeddings": 8192,
        "rope_theta": 10000.0,
    }


def generation_config_dict(tokenizer) -> dict:
    """`generation_config.json`: generation stops at `<eos>` and at `<end_of_turn>`."""
    stop_ids = [int(tokenizer.end_token_id)]
    end_of_turn = tokenizer.token_to_id("<end_of_turn>")
    if end_of_turn is not None:
        stop_ids.append(int(end_of_turn))
    return {
        "bos_token_id": int(tokenizer.start_token_id),
        "eos_token_id": stop_ids,
        "pad_token_id": int(tokenizer.pad_token_id),
    }


def save_tokenizer(tokenizer, directory: str) -> None:
    """Writes a KerasHub Gemma tokenizer in Hugging Face's format.

    `tokenizer.model` is the SentencePiece proto itself; transformers converts it to its fast
    tokenizer on load. When transformers is installed, that conversion is done once here and
    saved as `tokenizer.json`, so loading needs neither sentencepiece nor the conversion time.
    """
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, "tokenizer.model"), "wb") as f:
        f.write(tokenizer.proto)
    special = {
        "bos_token": tokenizer.start_token,
        "eos_token": tokenizer.end_token,
        "pad_token": tokenizer.pad_token,
        "unk_token": "<unk>",
    }
    if tokenizer.token_to_id("<mask>") is not None:
        special["mask_token"] = "<mask>"
    added = {}
    for token in ("<pad>", "<eos>", "<bos>", "<unk>", "<mask>", "<start_of_turn>", "<end_of_turn>"):
        token_id = tokenizer.token_to_id(token)
        if token_id is not None:
            added[str(token_id)] = {
                "content": token,
                "lstrip": False,
                "normalized": False,
                "rstrip": False,
                "single_word": False,
                "special": True,
            }
    tokenizer_config = {
        "tokenizer_class": "GemmaTokenizer",
        **special,
        "add_bos_token": True,
        "add_eos_token": False,
        "clean_up_tokenization_spaces": False,
        "spaces_between_special_tokens": False,
        "model_max_length": 1000000000000000019884624838656,
        "added_tokens_decoder": added,
        "chat_template": CHAT_TEMPLATE,
    }
    _write_json(os.path.join(directory, "tokenizer_config.json"), tokenizer_config)
    _write_json(
        os.path.join(directory, "special_tokens_map.json"),
        special,
    )
    try:
        import transformers
    except ImportError:
        return
    transformers.AutoTokenizer.from_pretrained(directory).save_pretrained(directory)


def _write_json(path: str, value: dict) -> None:
    with open(path, "w") as f:
        json.dump(value, f, indent=2, ensure_ascii=False)
        f.write("\n")


def save(loaded: model.LoadedModel, directory: str, dtype: str = "float32") -> str:
    """Writes `loaded` as a Hugging Face transformers model directory.

    Args:
      loaded: a Gemma; when it has LoRA enabled, the LoRA is merged first (in float32).
      directory: where to write; created if missing.
      dtype: "float32", "bfloat16" or "float16" for the saved weights.

    Returns:
      `directory`.
    """
    if dtype not in _NUMPY_DTYPES:
        raise ValueError(f"dtype must be one of {sorted(_NUMPY_DTYPES)}, got {dtype!r}")
    backbone = loaded.backbone
    if merge.has_lora(backbone):
        backbone = merge.merge_lora(loaded).backbone
    tensors = {
        name: np.ascontiguousarray(value.astype(_NUMPY_DTYPES[dtype]))
        for name, value in state_dict(backbone).items()
    }
    os.makedirs(directory, exist_ok=True)
    safetensors.numpy.save_file(
        tensors, os.path.join(directory, WEIGHTS_FILE), metadata={"format": "pt"}
    )
    _write_json(
        os.path.join(directory, "config.json"), config_dict(backbone, loaded.tokenizer, dtype)
    )
    _write_json(
        os.path.join(directory, "generation_config.json"), generation_config_dict(loaded.tokenizer)
    )
    save_tokenizer(loaded.tokenizer, directory)
    return directory
