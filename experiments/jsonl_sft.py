"""Supervised tuning on any local data file: JSONL, a JSON array, Parquet, a compressed file or
a saved Hugging Face dataset, in any supported format (OpenAI chat, ShareGPT, Alpaca, TRL
prompt/completion, plain text, Gemini, Vertex, AI Studio, Dolly; docs/data_formats.md).

    python -m gemma_tune.train --experiment=jsonl_sft:train.jsonl
    python -m gemma_tune.train --experiment=jsonl_sft --set data.path=train.jsonl \
        --set data.validation_path=validation.jsonl

The format is detected per file (`--set data.format=gemini` forces one); check a file first
with `python -m gemma_tune.data check train.jsonl`.
"""

from gemma_tune import config as config_lib


def get_config(arg=None):
    config = config_lib.base_config()
    config.description = "any local data file in a supported format (JSONL, JSON, Parquet, ...)"
    config.data.source = "file"
    config.data.path = arg or "train.jsonl"
    config.data.max_examples = 0
    config.data.validation_fraction = 0.1
    config.train.epochs = 2
    config.train.learning_rate = 1e-4
    config.train.grad_clip_norm = 1.0
    config.eval.prompts = ["Who are you and what can you help me with?"]
    return config
