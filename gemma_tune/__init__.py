"""gemma_tune: fine-tune Gemma with LoRA on Keras 3, KerasHub and JAX.

    import gemma_tune
    run = gemma_tune.finetune("train.jsonl", experiment="jsonl_sft")
    print(run.generate("Hello!"))

`finetune`, `load_run` and `Run` are the Python API (`gemma_tune.api`). Importing the package
selects the JAX backend for Keras (unless `KERAS_BACKEND` is already set), sets the XLA flags
of `gemma_tune.xla_flags` (a memory-minimizing order for CPU programs), keeps KerasHub from
importing TensorFlow in gemma_tune's commands, which never run it (`gemma_tune.import_guard`:
~0.7 GiB less memory per process), and quiets TensorFlow's start-up logging where something
else loads it.
"""

import os

from gemma_tune import import_guard, xla_flags

os.environ.setdefault("KERAS_BACKEND", "jax")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
if import_guard.is_command_process():
    import_guard.install()
xla_flags.apply()

__version__ = "0.1.0"

__all__ = ["Run", "finetune", "load_run"]


def __getattr__(name: str):
    """The API names, imported on first use (importing the package stays light)."""
    if name in __all__:
        from gemma_tune import api

        return getattr(api, name)
    raise AttributeError(f"module 'gemma_tune' has no attribute {name!r}")
