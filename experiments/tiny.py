"""Smoke run: the whole pipeline on a tiny random Gemma, offline, in seconds.

    python -m gemma_tune.train --experiment=tiny            # Gemma 1 architecture
    python -m gemma_tune.train --experiment=tiny:gemma3     # or gemma2, gemma4, gemma4_moe

A two-layer Gemma with a generated SentencePiece vocabulary learns a few dozen generated
instruction/response pairs (colour questions and "repeat after me"). On 2 CPU cores the run
takes about 20 s: 102 steps, training loss from about 6.9 to about 3, validation token accuracy
about 0.5 (a random tiny model cannot do much better with frozen weights; the point is that
every stage runs). The tests run it for Gemma 1, 2 and 3.
"""

from gemma_tune import config as config_lib


def get_config(arg=None):
    architecture = arg or "gemma1"
    config = config_lib.base_config()
    config.description = "tiny random Gemma on generated data: a seconds-long offline smoke run"
    config.model.preset = f"tiny:{architecture}"
    config.model.dtype = "float32"
    config.lora.rank = 8
    config.sequence_length = 96
    config.data.source = "tiny"
    config.data.max_examples = 0
    config.data.validation_fraction = 0.125
    config.train.epochs = 6
    config.train.batch_size = 2
    config.train.learning_rate = 3e-2
    config.train.weight_decay = 0.0
    config.train.schedule = "cosine"
    config.train.warmup_steps = 4
    config.train.grad_clip_norm = 1.0
    config.train.log_every = 5
    config.train.eval_every = 40
    config.samples.count = 3
    config.samples.max_new_tokens = 12
    config.eval.prompts = ["Repeat after me: the cat likes red apples."]
    return config
