"""Summarization on WikiLingua English (TFDS), as in the Gemini supervised-tuning guide.

    python -m gemma_tune.train --experiment=wikilingua_summarize

TFDS `gem/wiki_lingua_english_en` (TFDS downloads it on first use), each article turned into
"Summarize the following text:" + article -> summary, 512 tokens, Gemma-2B LoRA rank 4,
2000 training examples, validation split off the data, ROUGE-L is the metric to watch.
"""

from gemma_tune import config as config_lib


def get_config(arg=None):
    del arg
    config = config_lib.base_config()
    config.description = "WikiLingua English summarization from TFDS (Gemini SFT guide)"
    config.sequence_length = 512
    config.data.source = "tfds"
    config.data.name = "gem/wiki_lingua_english_en"
    config.data.max_examples = 2000
    config.train.learning_rate = 1e-4
    config.train.warmup_steps = 20
    config.train.schedule = "cosine"
    config.train.grad_clip_norm = 1.0
    config.samples.max_new_tokens = 96
    config.eval.primary_metric = "rougeL_f1"
    config.eval.prompts = [
        "Summarize the following text: To boil an egg, put it in a pot of cold water, bring "
        "the water to a boil, then simmer for nine minutes and cool the egg in cold water.",
        "What is the capital of Japan?",  # a question, not a summary: style should not leak
    ]
    return config
