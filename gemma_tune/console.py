"""Where a command's output goes: status and progress to stderr, results to stdout.

    with console.status_to_stderr():       # what the block prints goes to stderr ...
        console.result("Run directory: runs/x")   # ... but a result still reaches stdout

The commands (`train`, `sample`, `evaluate`, `export`, `data check`) run their work inside
`status_to_stderr()`, so `answer=$(python -m gemma_tune.sample ...)` or
`python -m gemma_tune.train ... | tail -1` see results alone. The library prints its few
results with `result()`; outside any `status_to_stderr()` block (the Python API in a notebook)
that is a plain `print`, so a notebook shows status and results together as before. Progress
bars (tqdm) write to stderr by themselves.
"""

from __future__ import annotations

import contextlib
import sys

# The stdout each active `status_to_stderr` block replaced, innermost last: where `result`
# prints.
_result_streams: list = []


@contextlib.contextmanager
def status_to_stderr():
    """Sends what the block prints (loading messages, progress) to stderr, keeping stdout for
    the results that code inside the block prints with `result()`."""
    _result_streams.append(sys.stdout)
    try:
        with contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        _result_streams.pop()


def result(text: str) -> None:
    """Prints `text`, a result of the command (a comparison table, where its output went), to
    stdout, also inside `status_to_stderr()`; outside it this is `print`."""
    print(text, file=_result_streams[-1] if _result_streams else sys.stdout, flush=True)
