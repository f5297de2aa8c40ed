"""A small demo dataset bundled with gemma_tune, written for this project (Apache-2.0).

`handbook.md` is the member handbook of Ottermere Makerspace, a fictional community workshop.
The JSONL files (Dolly format) ask short-answer questions about it, in two tasks:

  rag_train.jsonl, rag_validation.jsonl: with the relevant handbook section as context
    ("closed_qa"); validation holds sections never seen in training.
  closed_train.jsonl, closed_validation.jsonl: closed book, empty context ("open_qa");
    validation asks the trained facts in new wordings.

`make_demo_data.py` regenerates the JSONL files; README.md has the details and row counts.
`vision/` holds generated images with questions for `experiments/tiny_vision.py`
(`make_vision_data.py` regenerates them; `make_vision_data.OUTPUT` is the folder).
Use `path("rag_train.jsonl")` to get a file's absolute path.
"""

from __future__ import annotations

import os

_HERE = os.path.dirname(os.path.abspath(__file__))


def available() -> list[str]:
    """The names of the bundled data files (everything but Python sources), sorted."""
    return sorted(
        name
        for name in os.listdir(_HERE)
        if os.path.isfile(os.path.join(_HERE, name))
        and not name.endswith((".py", ".pyc"))
        and not name.startswith(".")
    )


def path(name: str) -> str:
    """The absolute path of the bundled file `name`, e.g. "rag_train.jsonl".

    Raises:
      FileNotFoundError: if no bundled file has that name; the message lists those there are.
    """
    names = available()
    if name not in names:
        raise FileNotFoundError(
            f"no bundled file named {name!r}; available: {', '.join(names) or '(none)'}"
        )
    return os.path.join(_HERE, name)
