"""The self-describing run directory every training run leaves behind.

runs/<experiment>-<timestamp>/
  config.json          the resolved experiment config
  data_summary.json    rows read, dropped, duplicates, split sizes, token lengths
  metrics.jsonl        one JSON object per logged step and per validation
  adapter/             LoRA weights (adapter.npz) and their metadata (adapter.json)
  checkpoints/         the newest training checkpoints (`gemma_tune.training.checkpoint`)
  base_answers.json    the base model's answers, generated before training (reused on resume)
  samples.md           base vs tuned generations on validation prompts, side by side
  comparison.json      every system's answers and scores, means and changes
  report.html/.md      the report (`gemma_tune.report`), with loss_curves.png
  result.json          final metrics, parameter counts and timings (written last)
"""

from __future__ import annotations

import datetime
import json
import os
import shutil

# Every file and folder of a run directory, by what it holds. No other module spells these.
CONFIG = "config.json"
DATA_SUMMARY = "data_summary.json"
METRICS = "metrics.jsonl"
ADAPTER_DIR = "adapter"
CHECKPOINTS_DIR = "checkpoints"
BASE_ANSWERS = "base_answers.json"
SAMPLES = "samples.md"
COMPARISON = "comparison.json"
REPORT_HTML = "report.html"
REPORT_MD = "report.md"
LOSS_CURVES = "loss_curves.png"
RESULT = "result.json"
TENSORBOARD_DIR = "tensorboard"


def write_atomically(path: str, content: str | bytes) -> str:
    """Writes `content` to `path` through a temporary file and a rename, so a reader (or a
    resumed run) never sees half a file; returns `path`."""
    tmp = path + ".tmp"
    with open(tmp, "wb" if isinstance(content, bytes) else "w") as f:
        f.write(content)
    os.replace(tmp, path)
    return path


def write_text(run_path: str, name: str, text: str) -> str:
    """Writes `text` to `run_path/name` atomically; returns the path."""
    return write_atomically(os.path.join(run_path, name), text)


def read_json(run_path: str, name: str):
    """Reads `run_path/name` as JSON; None when the file does not exist."""
    path = os.path.join(run_path, name)
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def default_path(experiment: str, root: str = "runs") -> str:
    """`runs/<experiment>-<YYYYmmdd-HHMMSS>`, with `:` in the name made filesystem-safe."""
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    return os.path.join(root, f"{experiment.replace(':', '-')}-{stamp}")


def create(path: str) -> str:
    """Creates the run directory; refuses one that already holds a run's results.

    Raises:
      FileExistsError: when `path` already has a `config.json`.
      PermissionError / OSError: when it cannot be created or written, with the path named.
    """
    if os.path.exists(os.path.join(path, "config.json")):
        raise FileExistsError(
            f"{path} already holds a run (config.json exists); choose another --workdir"
        )
    try:
        os.makedirs(path, exist_ok=True)
        probe = os.path.join(path, ".write_test")
        with open(probe, "w") as f:
            f.write("ok")
        os.remove(probe)
    except OSError as error:
        raise OSError(f"cannot write the run directory {path}: {error.strerror}") from error
    return path


def prepare(path: str, config_dict: dict, overwrite: bool = False) -> bool:
    """Creates a run directory, or reopens an unfinished run of the same config to resume it.

    Returns:
      True when `path` holds an unfinished run of this very config (the caller resumes it).

    Raises:
      FileExistsError: `path` holds a finished run, or a run of another config (the keys that
        differ are named), and `overwrite` is False.
      OSError: the directory cannot be created or written.
    """
    if os.path.exists(os.path.join(path, "config.json")):
        if overwrite:
            print(f"Deleting the run in {path} (--overwrite) ...", flush=True)
            shutil.rmtree(path)
        elif os.path.exists(os.path.join(path, "result.json")):
            raise FileExistsError(
                f"{path} holds a finished run; choose another --workdir or pass --overwrite"
            )
        else:
            with open(os.path.join(path, "config.json")) as f:
                saved = json.load(f)
            differences = _differences(saved, json.loads(json.dumps(config_dict, default=str)))
            if differences:
                raise FileExistsError(
                    f"{path} holds an unfinished run of another config (differs in "
                    f"{', '.join(differences[:5])}); choose another --workdir, pass --overwrite, "
                    f"or continue that run with --resume={path}"
                )
            return True
    create(path)
    return False


def _differences(saved, wanted, prefix: str = "") -> list[str]:
    if isinstance(saved, dict) and isinstance(wanted, dict):
        keys = sorted(set(saved) | set(wanted))
        return [
            difference
            for key in keys
            for difference in _differences(saved.get(key), wanted.get(key), f"{prefix}{key}.")
        ]
    return [] if saved == wanted else [prefix.rstrip(".")]


def truncate_metrics(run_path: str, last_step: int) -> None:
    """Drops metrics.jsonl records after `last_step` (those of steps a resumed run redoes)."""
    path = os.path.join(run_path, "metrics.jsonl")
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
        if record.get("step", 0) <= last_step:
            kept.append(line if line.endswith("\n") else line + "\n")
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.writelines(kept)
    os.replace(tmp, path)


def write_json(run_path: str, name: str, payload) -> str:
    """Writes `payload` as indented JSON to `run_path/name` atomically; returns the path."""
    text = json.dumps(payload, indent=2, sort_keys=True, default=str) + "\n"
    return write_text(run_path, name, text)


def check_tensorboard() -> None:
    """Fails early, before any work, when TensorBoard logging is asked for but not installed."""
    import importlib.util

    if importlib.util.find_spec("tensorboard") is None:
        raise OSError("train.tensorboard=true needs: pip install 'gemma_tune[tensorboard]'")


class MetricsLog:
    """Appends one JSON line per event to `metrics.jsonl` (and to TensorBoard if asked)."""

    def __init__(self, run_path: str, tensorboard: bool = False):
        self.path = os.path.join(run_path, "metrics.jsonl")
        self._file = open(self.path, "a")
        self._writer = None
        if tensorboard:
            import tensorflow as tf

            self._writer = tf.summary.create_file_writer(os.path.join(run_path, "tensorboard"))

    def __call__(self, record: dict) -> None:
        self._file.write(json.dumps(record, sort_keys=True) + "\n")
        self._file.flush()
        if self._writer is not None:
            import tensorflow as tf

            with self._writer.as_default(step=int(record.get("step", 0))):
                for key, value in record.items():
                    if key != "step" and isinstance(value, (int, float)):
                        tf.summary.scalar(key, value)
            self._writer.flush()

    def close(self) -> None:
        self._file.close()
        if self._writer is not None:
            self._writer.close()
