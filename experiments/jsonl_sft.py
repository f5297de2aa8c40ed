"""Supervised tuning on any local JSONL: Gemini, Vertex, AI Studio, OpenAI or Dolly rows.

    python -m gemma_tune.train --experiment=jsonl_sft:train.jsonl
    python -m gemma_tune.train --experiment=jsonl_sft --set data.path=train.jsonl \
        --set data.validation_path=validation.jsonl

The format is detected per file (`--set data.format=gemini` forces one); check a file first
with `python -m gemma_tune.data check train.jsonl`.
"""

from gemma_tune import config as config_lib


def get_config(arg=None):
    config = config_lib.base_config()
    config.description = "any local JSONL (Gemini/Vertex/AI Studio/OpenAI/Dolly rows)"
    config.data.source = "file"
    config.data.path = arg or "train.jsonl"
    config.data.max_examples = 0
    config.data.validation_fraction = 0.1
    config.train.epochs = 2
    config.train.learning_rate = 1e-4
    config.train.grad_clip_norm = 1.0
    config.eval.prompts = ["Who are you and what can you help me with?"]
    return config
