"""The TRL peer of packing_speed.py: transformers + PEFT trained by TRL's `SFTTrainer` with
padding-free packing, on the same examples and the same response-only labels as ours.

    python benchmarks/packing_speed.py --trl    (needs the `parity` extra: trl, peft, torch)

Our encoded examples become a pre-tokenized dataset (`trl_rows`): `input_ids` our token ids,
`labels` the same ids where our target weight is > 0 and -100 elsewhere (transformers shifts
the labels itself, and our `target_weights[i]` is the weight of predicting `token_ids[i]`, so
the two line up one to one). `SFTTrainer` (`packing=True`, strategy `bfd`, which turns on
`padding_free`) packs them best-fit decreasing into rows of at most `sequence_length + 1`
tokens, the capacity of one of our rows, and its collator flattens each batch of rows into
one sequence with `position_ids` restarting at 0 per example and no attention mask. On a CPU
(no flash attention) transformers' sdpa attention is given a block-diagonal causal mask built
from those position ids (`masking_utils.find_packed_sequence_indices`), so each example attends
only to itself: the same computation as our packing, over a `[1, ~4 x 257]` sequence whose
`[T, T]` attention is computed in full and masked. The loss is TRL's own (its fused LM head,
which on a CPU scores every position, not only the labelled ones).

LoRA rank 4 (alpha 4) on q_proj/v_proj, torch AdamW with our hyperparameters (lr 5e-5,
weight decay 0.01, constant schedule, no clipping), float32, no gradient checkpointing (TRL
defaults to bf16 and gradient checkpointing; both are turned off to compute what we compute).
Every step of the epoch runs inside `trainer.train()` and is timed by a callback from
`on_step_begin` to `on_step_end` (forward, backward, optimizer and scheduler step; batch
building is outside, as on our side).
"""

from __future__ import annotations

import statistics
import tempfile
import time

import numpy as np

IGNORE = -100


def trl_rows(encoded) -> dict[str, list[list[int]]]:
    """Our encoded examples as TRL's pre-tokenized columns: `input_ids`, and `labels` holding
    each token's id where our loss weight is > 0 and -100 where it is 0 (prompt, BOS)."""
    return {
        "input_ids": [item.token_ids.astype(int).tolist() for item in encoded],
        "labels": [
            np.where(item.target_weights > 0, item.token_ids, IGNORE).astype(int).tolist()
            for item in encoded
        ],
    }


def batch_examples(batch) -> list[tuple[tuple[int, ...], tuple[int, ...]]]:
    """`(token ids, labels)` of each example in one padding-free batch (a `[1, T]` flattened
    row whose `position_ids` restart at 0 with every example), in order."""
    ids = batch["input_ids"][0].tolist()
    labels = batch["labels"][0].tolist()
    starts = [i for i, position in enumerate(batch["position_ids"][0].tolist()) if position == 0]
    bounds = starts + [len(ids)]
    return [
        (tuple(ids[a:b]), tuple(labels[a:b])) for a, b in zip(bounds[:-1], bounds[1:], strict=True)
    ]


def expected_examples(encoded) -> list[tuple[tuple[int, ...], tuple[int, ...]]]:
    """`(token ids, labels)` of each of our examples as TRL's collator should hand them to the
    model: the labels of `trl_rows`, whose first (BOS) label is -100 anyway."""
    rows = trl_rows(encoded)
    return [
        (tuple(ids), tuple(labels))
        for ids, labels in zip(rows["input_ids"], rows["labels"], strict=True)
    ]


def make_trainer(encoded, sequence_length: int, batch_size: int, output_dir: str, base, tokenizer):
    """TRL's `SFTTrainer` for one epoch of `encoded`, packed padding-free, PEFT LoRA on `base`."""
    import datasets
    import trl
    from train_speed_common import train_settings
    from train_speed_peer import lora_config

    settings = train_settings()
    args = trl.SFTConfig(
        output_dir=output_dir,
        per_device_train_batch_size=batch_size,
        num_train_epochs=1,
        max_length=sequence_length + 1,  # an example fits a TRL row iff it fits one of ours
        packing=True,
        packing_strategy="bfd",
        padding_free=True,
        learning_rate=settings.learning_rate,
        weight_decay=settings.weight_decay,
        adam_beta1=settings.adam_beta1,
        adam_beta2=settings.adam_beta2,
        adam_epsilon=settings.adam_epsilon,
        lr_scheduler_type="constant",
        warmup_steps=0,
        max_grad_norm=0.0,
        optim="adamw_torch",
        bf16=False,
        fp16=False,
        gradient_checkpointing=False,
        use_cpu=True,
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        seed=0,
        dataloader_num_workers=0,
        disable_tqdm=True,
    )
    return trl.SFTTrainer(
        model=base,
        args=args,
        train_dataset=datasets.Dataset.from_dict(trl_rows(encoded)),
        processing_class=tokenizer,
        peft_config=lora_config(),
    )


def trl_epoch(encoded, sequence_length: int, batch_size: int, hf_dir: str | None = None) -> dict:
    """One timed epoch of TRL on `encoded` (the GGUF's Gemma 3 270M, or the Hugging Face model
    in `hf_dir`); also checks that its batches hold exactly our examples (tokens and labels) and
    returns its first batch's loss (before any update) and examples."""
    import torch
    import transformers
    from train_speed_peer import load_base

    class StepTimer(transformers.TrainerCallback):
        """Wall time from each step's start to its end (forward, backward, optimizer)."""

        def __init__(self):
            self.times, self.started = [], 0.0

        def on_step_begin(self, args, state, control, **kwargs):
            self.started = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            self.times.append(time.perf_counter() - self.started)

    base, tokenizer = load_base(hf_dir, tokenizer=True)
    # Loaded from the GGUF, the weights are already float32 (dequantized on load), but
    # transformers keeps a GGUF quantizer on the model and `Trainer` refuses to train one; the
    # PEFT peer trains these same float32 weights. A model saved as safetensors has none.
    base.hf_quantizer, base.is_quantized = None, False
    base.config.__dict__.pop("quantization_config", None)
    with tempfile.TemporaryDirectory() as output_dir:
        trainer = make_trainer(encoded, sequence_length, batch_size, output_dir, base, tokenizer)
        batches = list(trainer.get_train_dataloader())
        seen = sorted(example for batch in batches for example in batch_examples(batch))
        if seen != sorted(expected_examples(encoded)):
            raise AssertionError("TRL's batches do not hold exactly our examples and labels")
        first = {key: value for key, value in batches[0].items()}
        trainer.model.train()
        with torch.no_grad():
            first_loss = float(trainer.compute_loss(trainer.model, dict(first)))
        timer = StepTimer()
        trainer.add_callback(timer)
        trainer.train()
    return {
        "steps": len(timer.times),
        "epoch_s": sum(timer.times),
        "step_s_median": statistics.median(timer.times),
        "first_loss": first_loss,
        "first_batch": batch_examples(first),
        "rows": len(trainer.train_dataset),
        "tokens_per_step": [int(b["input_ids"].shape[1]) for b in batches],
        "attention": base.config._attn_implementation,
    }
