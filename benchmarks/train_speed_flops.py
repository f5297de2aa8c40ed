"""FLOP accounting for the train_speed benchmark: an analytic count of one LoRA training step."""

from __future__ import annotations


def step_flops(dims: dict, batch: int, length: int, lora_params: int) -> dict[str, float]:
    """Analytic FLOPs of one LoRA training step over `batch` rows of `length` tokens.

    Frozen matmuls: forward 2PT, backward only the input gradient 2PT (no weight gradient):
    4PT. LoRA factors: forward, input and weight gradients: 6 P_lora T. Attention scores and
    values over the full L x L square (both sides compute it masked): forward 4 L^2 h d per
    layer and row, backward twice that. Tied LM head over the vocabulary at every position:
    forward 2VHT, backward input gradient only 2VHT (ours forms it in the forward pass, chunk
    by chunk: `loss.head_sums`; both sides execute 4VHT). Norms, RoPE, softmax/logsumexp and
    the optimizer are elementwise and not counted.
    """
    n, width, ffw = dims["num_layers"], dims["hidden_dim"], dims["intermediate_dim"]
    q_width = dims["num_query_heads"] * dims["head_dim"]
    kv_width = dims["num_key_value_heads"] * dims["head_dim"]
    frozen_params = n * (width * q_width + 2 * width * kv_width + q_width * width + 3 * width * ffw)
    tokens = batch * length
    head = 2 * dims["vocabulary_size"] * width * tokens
    return {
        "frozen_matmuls (4*P*T)": 4 * frozen_params * tokens,
        "lora (6*P_lora*T)": 6 * lora_params * tokens,
        "attention (12*n*h*d*L^2*B)": 12 * n * q_width * length**2 * batch,
        "lm_head (4*V*H*T)": 2 * head,
    }
