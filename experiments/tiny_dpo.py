"""Smoke run of preference tuning (DPO) on a tiny random Gemma, offline, in seconds.

    python -m gemma_tune.train --experiment=tiny_dpo            # Gemma 3 architecture
    python -m gemma_tune.train --experiment=tiny_dpo:gemma4     # or gemma1, gemma2, gemma4_moe

A two-layer Gemma with a generated SentencePiece vocabulary is tuned with DPO on generated
pairs: a colour question whose answer is in the prompt, the right colour preferred to another
(`gemma_tune.testing.tiny_preference_pairs`). Every DPO stage runs: the reference pass, the
pair batches, the DPO loss and metrics, validation, the base-vs-tuned comparison and report.
Measured on 2 CPU cores: see docs/preference.md.
"""

from gemma_tune import config as config_lib


def get_config(arg=None):
    config = config_lib.base_config()
    config.description = "tiny random Gemma tuned with DPO on generated pairs: a smoke run"
    config.model.preset = f"tiny:{arg or 'gemma3'}"
    config.model.dtype = "float32"
    config.lora.rank = 8
    config.sequence_length = 96
    config.data.source = "tiny"
    config.data.max_examples = 0
    config.data.validation_fraction = 0.25
    config.train.objective = "dpo"
    config.dpo.beta = 0.5
    config.train.epochs = 4
    config.train.batch_size = 4
    config.train.learning_rate = 2e-2
    config.train.weight_decay = 0.0
    config.train.schedule = "cosine"
    config.train.warmup_steps = 2
    config.train.grad_clip_norm = 1.0
    config.train.log_every = 5
    config.train.eval_every = 10
    config.samples.count = 3
    config.samples.max_new_tokens = 6
    config.eval.limit = 12
    return config
