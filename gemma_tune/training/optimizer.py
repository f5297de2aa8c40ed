"""AdamW with a learning-rate schedule, as in Google's Gemma LoRA tutorial.

Weight decay skips norm scales and biases (`exclude_from_weight_decay(["bias", "scale"])`).
Schedules: "constant", or linear warmup followed by "cosine" or "linear" decay to zero.
"""

from __future__ import annotations

import math

import keras

SCHEDULES = ("constant", "cosine", "linear")


@keras.saving.register_keras_serializable("gemma_tune")
class WarmupDecay(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warmup from 0 to `peak` over `warmup_steps`, then constant/cosine/linear decay.

    Decay reaches zero at `total_steps`; "constant" holds `peak` after warmup.
    """

    def __init__(self, peak: float, warmup_steps: int, total_steps: int, kind: str):
        if kind not in SCHEDULES:
            raise ValueError(f"unknown schedule {kind!r}; choose one of {SCHEDULES}")
        self.peak = peak
        self.warmup_steps = warmup_steps
        self.total_steps = max(total_steps, 1)
        self.kind = kind

    def __call__(self, step):
        ops = keras.ops
        step = ops.cast(step, "float32")
        warmup = float(max(self.warmup_steps, 0))
        warm = ops.minimum((step + 1.0) / max(warmup, 1.0), 1.0) if warmup else 1.0
        progress = ops.clip((step - warmup) / max(self.total_steps - warmup, 1.0), 0.0, 1.0)
        if self.kind == "cosine":
            decay = 0.5 * (1.0 + ops.cos(math.pi * progress))
        elif self.kind == "linear":
            decay = 1.0 - progress
        else:
            decay = 1.0
        return self.peak * warm * decay

    def get_config(self):
        return {
            "peak": self.peak,
            "warmup_steps": self.warmup_steps,
            "total_steps": self.total_steps,
            "kind": self.kind,
        }


def make(train_config, total_steps: int) -> keras.optimizers.AdamW:
    """Builds the AdamW optimizer from `config.train`.

    Args:
      train_config: needs `learning_rate`, `weight_decay`, `schedule`, `warmup_steps`,
        `adam_beta1`, `adam_beta2`, `adam_epsilon`.
      total_steps: optimizer steps in the run, for the decay schedules.
    """
    schedule = WarmupDecay(
        peak=train_config.learning_rate,
        warmup_steps=train_config.warmup_steps,
        total_steps=total_steps,
        kind=train_config.schedule,
    )
    optimizer = keras.optimizers.AdamW(
        learning_rate=schedule,
        weight_decay=train_config.weight_decay,
        beta_1=train_config.adam_beta1,
        beta_2=train_config.adam_beta2,
        epsilon=train_config.adam_epsilon,
    )
    optimizer.exclude_from_weight_decay(var_names=["bias", "scale"])
    return optimizer
