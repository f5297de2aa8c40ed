"""gemma_tune: fine-tune Gemma with LoRA on Keras 3, KerasHub and JAX.

    import gemma_tune
    run = gemma_tune.finetune("train.jsonl", experiment="jsonl_sft")
    print(run.generate("Hello!"))

`finetune`, `load_run` and `Run` are the Python API (`gemma_tune.api`). Importing the package
selects the JAX backend for Keras (unless `KERAS_BACKEND` is already set) and quiets
TensorFlow's start-up logging; TensorFlow is only used by KerasHub's tokenizers.
"""

import os

os.environ.setdefault("KERAS_BACKEND", "jax")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

__version__ = "0.1.0"

__all__ = ["Run", "finetune", "load_run"]


def __getattr__(name: str):
    """The API names, imported on first use (importing the package stays light)."""
    if name in __all__:
        from gemma_tune import api

        return getattr(api, name)
    raise AttributeError(f"module 'gemma_tune' has no attribute {name!r}")
