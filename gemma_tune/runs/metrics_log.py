"""metrics.jsonl while a run trains: appended one record per line (`MetricsLog`) and cut
back to the checkpoint a resumed run continues from (`truncate_metrics`). Reading it back is
`gemma_tune.runs.run_dir.read_metrics`.
"""

from __future__ import annotations

import json
import os

from gemma_tune.runs import run_dir


def truncate_metrics(run_path: str, last_step: int, keep_last_validation: bool = True) -> None:
    """Drops metrics.jsonl records after `last_step` (those of steps a resumed run redoes),
    and the validation record of `last_step` itself unless `keep_last_validation` (the
    checkpoint it resumes from was saved before that validation, which is then redone)."""
    path = os.path.join(run_path, run_dir.METRICS)
    if not os.path.exists(path):
        return
    with open(path) as f:
        records = [line for line in f if line.strip()]
    kept = []
    for line in records:
        try:
            record = json.loads(line)
        except json.JSONDecodeError:  # A line cut short by a kill.
            continue
        step = record.get("step", 0)
        validation = any(key.startswith("val_") for key in record)
        redone = step == last_step > 0 and validation and not keep_last_validation
        if step <= last_step and not redone:
            kept.append(line if line.endswith("\n") else line + "\n")
    run_dir.write_atomically(path, "".join(kept))


class MetricsLog:
    """Appends one JSON line per event to `metrics.jsonl`; the trackers of
    `train.report_to` get the same records (`gemma_tune.training.tracking`)."""

    def __init__(self, run_path: str):
        self.path = os.path.join(run_path, run_dir.METRICS)
        self._file = open(self.path, "a")

    def __call__(self, record: dict) -> None:
        """Appends `record` as one line (flushed, so a kill loses at most the line being
        written)."""
        self._file.write(json.dumps(record, sort_keys=True) + "\n")
        self._file.flush()

    def close(self) -> None:
        """Closes the log file."""
        self._file.close()
