"""Extractive question answering on SQuAD from TFDS, as in the Gemini and OpenAI tuning guides.

    python -m gemma_tune.train --experiment=squad_qa

TFDS `squad`: question + passage (as context) -> the first gold answer; short answers make
exact match and token F1 the metrics to compare against the base model's baseline.
"""

from gemma_tune import config as config_lib


def get_config(arg=None):
    del arg
    config = config_lib.base_config()
    config.description = "SQuAD question answering with the passage in the prompt (EM/F1)"
    config.sequence_length = 384
    config.data.source = "tfds"
    config.data.name = "squad"
    config.data.keep_context = True
    config.data.max_examples = 2000
    config.train.learning_rate = 1e-4
    config.train.warmup_steps = 20
    config.train.schedule = "cosine"
    config.train.grad_clip_norm = 1.0
    config.samples.max_new_tokens = 32
    config.eval.prompts = [
        "Answer in a few words: what is the largest planet in the Solar System?",
        "Write one sentence about the ocean.",  # does the tuned model still write freely?
    ]
    return config
