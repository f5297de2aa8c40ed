"""Keeps KerasHub and Keras from importing TensorFlow, which gemma_tune never runs.

KerasHub imports `tensorflow` and `tensorflow_text` when they are installed (they are: its
package requires tensorflow-text), only to support `tf.data` pipelines and the TensorFlow
backend; Keras imports TensorFlow on first use of `keras.utils.set_random_seed`, to seed it
too. gemma_tune tokenizes with the `sentencepiece` package (KerasHub's own fallback when
TensorFlow is absent, the same ids) and runs on JAX, so TensorFlow costs every training,
sampling and evaluation process ~0.7 GiB of resident memory and seconds of start-up for
nothing (`benchmarks/RESULTS.md`, "Resident memory").

gemma_tune's commands (`python -m gemma_tune.<command>`, `gemma-tune <command>`) run with
the guard: `import gemma_tune` installs it in such a process (`is_command_process`). Code that
imports gemma_tune as a library (a notebook, a script) keeps KerasHub as it is, TensorFlow
included, unless it calls `install()` before KerasHub is first imported (the benchmarks do, to
measure what the commands do): a KerasHub user's own `Gemma3CausalLMPreprocessor` needs it.

`install()` puts a finder first on `sys.meta_path` that refuses `import tensorflow` and
`import tensorflow_text` when KerasHub or Keras asks for them and TensorFlow is not loaded yet;
both treat that as "not installed" (Keras remembers it: a TensorFlow loaded later is not seeded
by `keras.utils.set_random_seed`, and Keras' `tf.io.gfile` paths such as `gs://` need
TensorFlow imported first). Imports from anywhere else pass: a user's own
`import tensorflow` works, and so do `tensorflow_datasets` (which imports TensorFlow itself)
and everything after it. Once TensorFlow is loaded the finder refuses nothing.
"""

from __future__ import annotations

import importlib.abc
import inspect
import os
import sys

REFUSED = ("tensorflow", "tensorflow_text")
ASKERS = ("keras_hub", "keras")
# Preset locations KerasHub reads through TensorFlow's file system (`tf.io.gfile`); every other
# location (a name, a local directory, kaggle://, hf://) needs no TensorFlow.
GFILE_SCHEMES = ("gs://", "s3://", "hdfs://")


class _KerasHubTensorFlowFinder(importlib.abc.MetaPathFinder):
    """Refuses KerasHub's and Keras' imports of TensorFlow while TensorFlow is not loaded."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname not in REFUSED or "tensorflow" in sys.modules:
            return None
        if not _asked_by_keras():
            return None
        raise ModuleNotFoundError(
            f"gemma_tune keeps Keras and KerasHub from importing {fullname} (never used; see "
            "gemma_tune.import_guard)",
            name=fullname,
        )


def _asked_by_keras() -> bool:
    """Whether the import being run was asked for by KerasHub or Keras: the first frame
    outside Python's import machinery (and `importlib.import_module`) belongs to one of
    `ASKERS`."""
    frame = inspect.currentframe().f_back.f_back  # past this function and find_spec
    while frame is not None and frame.f_globals.get("__name__", "").startswith("importlib"):
        frame = frame.f_back
    if frame is None:
        return False
    module = frame.f_globals.get("__name__", "")
    return any(module == name or module.startswith(name + ".") for name in ASKERS)


def is_command_process(argv: list[str] | None = None) -> bool:
    """Whether this process is one of gemma_tune's commands: started as
    `python -m gemma_tune.<module>` or through the `gemma-tune` console script (`argv`
    defaults to the interpreter's original command line, `sys.orig_argv`)."""
    argv = sys.orig_argv if argv is None else argv
    words = iter(argv[1:])
    for word in words:  # the interpreter's own options, up to what it runs
        if word == "-m":
            return next(words, "").startswith("gemma_tune.")
        if word in ("-X", "-W"):
            next(words, None)  # the option's value
        elif not word.startswith("-") or word == "-c":
            return os.path.basename(word) == "gemma-tune"
    return False


def install() -> None:
    """Puts the finder first on `sys.meta_path` (once). It only matters if it runs before
    KerasHub is first imported: `import gemma_tune` calls it in a command's process, before
    any other gemma_tune module; other code calls it first thing."""
    if not any(isinstance(finder, _KerasHubTensorFlowFinder) for finder in sys.meta_path):
        sys.meta_path.insert(0, _KerasHubTensorFlowFinder())


def load_for_preset(preset: str) -> None:
    """Imports TensorFlow for a preset that KerasHub can only read through `tf.io.gfile`
    (`gs://`, `s3://`, `hdfs://`), so that loading it works as it does without gemma_tune."""
    if preset.startswith(GFILE_SCHEMES):
        import tensorflow  # noqa: F401
