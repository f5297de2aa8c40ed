"""Q&A pairs from a CSV, optionally with a retrieved-context column (a Discord Q&A bot's data).

    python -m gemma_tune.train --experiment=csv_qa --set data.path=qa.csv
    python -m gemma_tune.train --experiment=csv_qa --set data.path=qa.csv \
        --set data.context_column=context        # tune "with RAG" from a context column
    python -m gemma_tune.train --experiment=csv_qa --set data.path=qa.csv \
        --set retrieval.corpus=docs/             # retrieve passages from your documents:
                                                 # base, base+context, tuned, tuned+context

Columns default to `input` and `output`; rename them with `--set data.input_column=question`
and `--set data.output_column=answer`.
"""

from gemma_tune import config as config_lib


def get_config(arg=None):
    config = config_lib.base_config()
    config.description = "input/output pairs from a local CSV (optionally with a context column)"
    config.data.source = "file"
    config.data.path = arg or "qa.csv"
    config.data.format = "csv"
    config.data.max_examples = 0
    config.data.validation_fraction = 0.1
    config.train.epochs = 3
    config.train.learning_rate = 1e-4
    config.train.grad_clip_norm = 1.0
    config.eval.prompts = ["Who are you and what can you help me with?"]
    return config
