"""gemma_tune: fine-tune Gemma with LoRA on Keras 3, KerasHub and JAX.

Importing the package selects the JAX backend for Keras (unless `KERAS_BACKEND` is already set)
and quiets TensorFlow's start-up logging; TensorFlow is only used by KerasHub's tokenizers.
"""

import os

os.environ.setdefault("KERAS_BACKEND", "jax")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

__version__ = "0.1.0"
