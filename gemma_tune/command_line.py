"""What every command (train, sample, evaluate, export, data check) shares: a user error is one
line on stderr and a non-zero exit, `--debug` shows its traceback, and status goes to stderr.

    python -m gemma_tune.sample --run=runs/missing --prompt=hi
    error: runs/missing is not a run directory (no config.json)       # exit status 1
    python -m gemma_tune.sample --run=runs/missing --prompt=hi --debug   # the traceback

A user error is one gemma_tune raises on purpose about what it was given: a setting out of
range, a missing or damaged file, a run directory in use, data without examples (`ValueError`,
`OSError` and their subclasses, a damaged `.npz`, a diverged loss). Anything else is a bug and
keeps its traceback. Status and progress go to stderr and results to stdout, so
`answer=$(python -m gemma_tune.sample --run=RUN_DIR --prompt=...)` captures only the answer and
`run=$(python -m gemma_tune.train ... | tail -1)` only `Run directory: ...`. A command runs its
work inside `status_to_stderr()`; the few result lines printed inside it go through `result()`
to the real stdout (`gemma_tune.console`). From Python (a notebook) nothing is redirected.
"""

from __future__ import annotations

import contextlib
import os
import sys
import zipfile
from collections.abc import Callable

from absl import app, flags

FLAGS = flags.FLAGS
flags.DEFINE_bool("debug", False, "On an error, show its traceback instead of one line.")

# Exit status of a command stopped by a user error, and by Ctrl-C (128 + SIGINT, as shells do).
USER_ERROR_STATUS = 1
INTERRUPTED_STATUS = 130


def is_user_error(error: BaseException) -> bool:
    """Whether `error` is about the command's input (a bad setting or file, a locked run, a
    diverged loss), which the user can fix, rather than a bug in gemma_tune."""
    if isinstance(error, (ValueError, OSError, zipfile.BadZipFile)):
        return True
    return type(error).__name__ == "NonFiniteLossError"


def one_line(error: BaseException) -> str:
    """`error: <message>`, the message's lines joined, for stderr.

    Data errors list every bad row on its own line (`file:line: field: problem`); those keep
    their lines, since each is one finding.
    """
    message = str(error).strip() or type(error).__name__
    if type(error).__name__ != "DataError":
        message = " ".join(line.strip() for line in message.splitlines())
    return f"error: {message}"


def call(main: Callable[[list[str]], int | None], argv: list[str]) -> int:
    """Runs a command's `main(argv)` and returns its exit status; a user error is printed as
    one line on stderr (with `--debug`, raised with its traceback) and exits 1, and Ctrl-C
    outside training (which saves a checkpoint first) prints "interrupted" and exits 130."""
    try:
        return main(argv) or 0
    except KeyboardInterrupt:
        if FLAGS.debug:
            raise
        print("interrupted", file=sys.stderr, flush=True)
        return INTERRUPTED_STATUS
    except Exception as error:
        if FLAGS.debug or not is_user_error(error):
            raise
        print(one_line(error), file=sys.stderr, flush=True)
        return USER_ERROR_STATUS


def run(main: Callable[[list[str]], int | None]) -> None:
    """`absl.app.run` for a command: parses the flags, then `call(main, argv)`, and exits
    with its status."""
    app.run(lambda argv: sys.exit(call(main, argv)))


@contextlib.contextmanager
def _native_stderr_silenced():
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def import_keras_hub_quietly() -> None:
    """Imports KerasHub with the C++ start-up lines of TensorFlow (which KerasHub's tokenizers
    load) kept off stderr: they are not gemma_tune's, and `TF_CPP_MIN_LOG_LEVEL` no longer
    hides them. A failed import still raises, with its traceback."""
    if "keras_hub" in sys.modules:
        return
    with _native_stderr_silenced():
        import keras_hub  # noqa: F401
