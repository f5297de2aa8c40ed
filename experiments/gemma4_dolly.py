"""The reference Dolly run on Gemma 4: E2B, LoRA rank 4, 1000 Dolly-15k examples, 256 tokens.

    python -m gemma_tune.train --experiment=gemma4_dolly
    python -m gemma_tune.train --experiment=gemma4_dolly --set model.preset=gemma4_4b
    python -m gemma_tune.train --experiment=gemma4_dolly --set model.quantize=int8   # 16 GB GPUs

The same recipe as `dolly_lora4` (Google's Gemma LoRA tutorial: the first 1000 Dolly rows
without context, LoRA rank 4 on query/value, AdamW lr 5e-5, one epoch, batch 1) on KerasHub's
`gemma4_2b` preset (Kaggle access needed), in Gemma 4's chat format (`<|turn>user ...
<turn|>`). The preset carries vision and audio encoders; gemma_tune loads it with the vision
encoder (frozen; text rows leave it idle, and `model.quantize` keeps it in float) and without
the audio one. Memory per preset and method: docs/methods.md#gemma-4.
"""

from gemma_tune import config as config_lib


def get_config(arg=None):
    del arg
    config = config_lib.base_config()
    config.description = "Gemma 4 E2B LoRA r4 on 1000 Dolly-15k examples (the tutorial recipe)"
    config.model.preset = "gemma4_2b"
    config.eval.prompts = [
        "What should I do on a trip to Europe?",
        "Explain the process of photosynthesis in a way that a child could understand.",
    ]
    return config
