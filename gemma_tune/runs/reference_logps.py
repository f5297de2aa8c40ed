"""reference_logps.npz: a DPO run's reference log-probabilities (every pair's answers under
the model before training), computed once and kept so that a resumed run reuses them.
"""

from __future__ import annotations

import os

from gemma_tune.runs import run_dir


def write_reference(run_path: str, arrays: dict) -> str:
    """Writes the DPO reference log-probabilities (name -> float32 array) atomically."""
    import numpy as np

    path = os.path.join(run_path, run_dir.REFERENCE_LOGPS)
    return run_dir.write_atomically(path, lambda f: np.savez(f, **arrays))


def read_reference(run_path: str) -> dict | None:
    """The DPO reference log-probabilities written by `write_reference`, or None if absent.

    Raises:
      ValueError: the file is damaged (cut short by a kill or a full disk), naming it.
    """
    import zipfile

    import numpy as np

    path = os.path.join(run_path, run_dir.REFERENCE_LOGPS)
    if not os.path.exists(path):
        return None
    try:
        with np.load(path) as arrays:
            return {name: arrays[name] for name in arrays.files}
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as error:
        raise ValueError(f"{path} is damaged ({error}); delete it to recompute it") from error
