"""Reference run: Gemma-2B, LoRA rank 4, on 1000 Dolly-15k examples without context.

    python -m gemma_tune.train --experiment=dolly_lora4

Reproduces Google's "Fine-tune Gemma models in Keras using LoRA" tutorial:
preset `gemma_2b_en` (Kaggle access needed), Dolly-15k from Hugging Face, the first 1000 rows
that have no context (`--set data.keep_context=true` keeps rows with context and puts the
passage in the prompt), 256 tokens, LoRA rank 4 on query/value, AdamW lr 5e-5 with weight decay
0.01 (none on norms and biases), 1 epoch, batch 1; sparse categorical accuracy is reported.
Google reports about 0.9 s/step on a Colab T4 (about 15 minutes for the epoch).
"""

from gemma_tune import config as config_lib


def get_config(arg=None):
    del arg
    config = config_lib.base_config()
    config.description = "Gemma-2B LoRA r4 on 1000 Dolly-15k examples (Google's tutorial)"
    # The tutorial's own before/after prompts.
    config.eval.prompts = [
        "What should I do on a trip to Europe?",
        "Explain the process of photosynthesis in a way that a child could understand.",
    ]
    return config
