"""The self-describing run directory every training run leaves behind.

runs/<experiment>-<timestamp>/
  config.json          the resolved experiment config
  data_summary.json    rows read, dropped, duplicates, split sizes, token lengths
  metrics.jsonl        one JSON object per logged step and per validation
  generations.jsonl    with train.generate_every_eval: the fixed prompts' greedy answers at
                       each validation (`step`, `prompt`, `answer`), rewritten atomically
  adapter/             LoRA weights (adapter.npz) and their metadata (adapter.json)
  checkpoints/         the newest training checkpoints (`gemma_tune.training.checkpoint`):
    step-000040/         state.npz (weights, optimizer state) and state.json (loop state)
    best-000030/         with train.keep_best: the best step's trainable weights
  base_answers.json    the base model's answers, generated before training (reused on resume)
  reference_logps.npz  train.objective=dpo: every pair's answer log-probabilities under the
                       model before training (the DPO reference, computed once)
  samples.md           base vs tuned generations on validation prompts, side by side
  comparison.json      every system's answers and scores, means and changes
  report.html/.md      the report (`gemma_tune.report`), with loss_curves.png
  result.json          final metrics, parameter counts and timings (written last)
  tensorboard/         TensorBoard event files (train.report_to=["tensorboard"])
  wandb/               Weights & Biases run files (train.report_to=["wandb"])
  tracking.json        the run's name and W&B id for its trackers, kept across resumes
  evaluations/<time>/  later `python -m gemma_tune.evaluate --run=RUN_DIR` results

This module is the one place that spells these names, and every whole file written into a run
directory goes through `write_atomically` (a uniquely named temporary file in the same folder,
flushed to disk, then renamed over the old one), so a reader or a resumed run never sees half a
file. `metrics.jsonl` is the one exception by design: it is an append-only log whose readers
skip a line cut short by a kill. A run holds `gemma_tune.runs.lock.RunLock` on `.lock` for
its whole life, so a second run on the same directory is refused instead of mixing its files
with the first's; `gemma_tune.runs.integrity` checks a run's files before a model is loaded
for them. What is guaranteed, and which tests check it: docs/reliability.md.

Starting a run in a directory (creating it, resuming it, or clearing a failed start) is
`gemma_tune.runs.run_start`; metrics.jsonl while training, `gemma_tune.runs.metrics_log`; the
DPO reference log-probabilities, `gemma_tune.runs.reference_logps`.
"""

from __future__ import annotations

import datetime
import json
import os
import tempfile
from collections.abc import Callable
from typing import IO

# Every file and folder of a run directory, by what it holds. No other module spells these.
CONFIG = "config.json"
DATA_SUMMARY = "data_summary.json"
METRICS = "metrics.jsonl"
GENERATIONS = "generations.jsonl"  # `gemma_tune.evaluation.progress_generations`
ADAPTER_DIR = "adapter"
CHECKPOINTS_DIR = "checkpoints"
BASE_ANSWERS = "base_answers.json"
REFERENCE_LOGPS = "reference_logps.npz"
SAMPLES = "samples.md"
COMPARISON = "comparison.json"
REPORT_HTML = "report.html"
REPORT_MD = "report.md"
LOSS_CURVES = "loss_curves.png"
RESULT = "result.json"
TENSORBOARD_DIR = "tensorboard"
WANDB_DIR = "wandb"  # W&B writes WANDB_DIR/offline-run-* or run-* itself
TRACKING = "tracking.json"
EVALUATIONS_DIR = "evaluations"  # `python -m gemma_tune.evaluate` writes EVALUATIONS_DIR/<time>/
LOCK = ".lock"  # held (fcntl.flock) by the run using the directory; holds its PID

# What a run writes, so that a start that failed before its first checkpoint can be cleared
# for a corrected config without touching anything else the folder holds.
RUN_FILES = (
    CONFIG,
    DATA_SUMMARY,
    METRICS,
    GENERATIONS,
    ADAPTER_DIR,
    CHECKPOINTS_DIR,
    BASE_ANSWERS,
    REFERENCE_LOGPS,
    SAMPLES,
    COMPARISON,
    REPORT_HTML,
    REPORT_MD,
    LOSS_CURVES,
    RESULT,
    TENSORBOARD_DIR,
    WANDB_DIR,
    TRACKING,
    EVALUATIONS_DIR,
)

# Inside an adapter directory (`gemma_tune.model.adapters`), which may also live outside a run.
ADAPTER_WEIGHTS = "adapter.npz"
ADAPTER_METADATA = "adapter.json"
# adapter.json's `schema_version`: 2 adds the field itself; files without it are version 1.
# 3 adds `layout` to LoRA/DoRA adapters (`lora.layout`); versions 1 and 2 are all "per_head".
ADAPTER_SCHEMA_VERSION = 3
# The LoRA layout of adapters written before schema 3 recorded one.
ADAPTER_LEGACY_LAYOUT = "per_head"

# Inside checkpoints/ (`gemma_tune.training.checkpoint`): `step-000040/`, written as
# `.partial-000040-<pid>/` and renamed when complete.
CHECKPOINT_PREFIX = "step-"
CHECKPOINT_BEST_PREFIX = "best-"  # `best-000030/`: the best step's weights (train.keep_best)
CHECKPOINT_PARTIAL = ".partial-"
# `sharded-000040/`: a full fine-tuning checkpoint's arrays, written by every host (Orbax).
CHECKPOINT_SHARDED_PREFIX = "sharded-"
CHECKPOINT_ARRAYS = "state.npz"
CHECKPOINT_STATE = "state.json"

Content = str | bytes | Callable[[IO[bytes]], None]


def write_atomically(path: str, content: Content, fsync: bool = True) -> str:
    """Writes `content` to `path` through a temporary file and a rename, so a reader (or a
    resumed run) never sees half a file; returns `path`.

    The temporary file has a unique name in the same folder (two writers never share one),
    is flushed to disk before `os.replace` puts it in place, and the folder is flushed after,
    so the new file survives a power cut as well as a killed process; on any failure the old
    file is untouched and the temporary one removed.

    Args:
      path: the file to (re)place.
      content: text, bytes, or a function that writes bytes into the open file (large arrays
        are streamed, e.g. `lambda f: numpy.savez(f, **arrays)`, rather than held twice).
      fsync: flush to disk (the default); False only where losing the file to a power cut
        is harmless.
    """
    folder, name = os.path.split(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=folder)
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp's 0600 would hide the file from others
        with open(fd, "w" if isinstance(content, str) else "wb") as f:
            if callable(content):
                content(f)
            else:
                f.write(content)
            if fsync:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    if fsync:
        fsync_directory(folder)
    return path


def _umask() -> int:
    """The process's umask: read from /proc where it can be (setting it to read it back would
    briefly change it for other threads), else set and restored."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0)
    os.umask(mask)
    return mask


def fsync_directory(path: str) -> None:
    """Flushes a folder's entries (a rename into it) to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_text(run_path: str, name: str, text: str) -> str:
    """Writes `text` to `run_path/name` atomically; returns the path."""
    return write_atomically(os.path.join(run_path, name), text)


def json_text(payload, **dump_options) -> str:
    """`payload` as the indented, key-sorted JSON (and final newline) the run directory holds;
    `dump_options` are passed to `json.dumps` (e.g. `default=float`)."""
    options = {"indent": 2, "sort_keys": True, "default": str, **dump_options}
    return json.dumps(payload, **options) + "\n"


def write_json(run_path: str, name: str, payload) -> str:
    """Writes `payload` as indented JSON to `run_path/name` atomically; returns the path."""
    return write_text(run_path, name, json_text(payload))


def read_json(run_path: str, name: str):
    """Reads `run_path/name` as JSON; None when the file does not exist.

    Raises:
      ValueError: the file is not valid JSON (cut short, or not gemma_tune's), naming it.
    """
    path = os.path.join(run_path, name)
    if not os.path.exists(path):
        return None
    with open(path, "rb") as f:
        text = f.read()
    try:
        return json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{path} is damaged: not valid JSON ({error})") from None


def read_config(run_path: str) -> dict:
    """The run's resolved config as written at its start (`config.json`).

    Raises:
      FileNotFoundError: when `run_path` is not a run directory.
    """
    config = read_json(run_path, CONFIG)
    if config is None:
        raise FileNotFoundError(f"{run_path} is not a run directory (no {CONFIG})")
    return config


def write_config(run_path: str, config_dict: dict) -> str:
    """Writes the resolved config (`config.json`), the first file of a run; returns its path."""
    return write_json(run_path, CONFIG, config_dict)


def write_data_summary(run_path: str, summary: dict) -> str:
    """Writes the data summary (`data_summary.json`); returns its path."""
    return write_json(run_path, DATA_SUMMARY, summary)


def write_result(run_path: str, result: dict) -> str:
    """Writes the final metrics (`result.json`); with the report written after it, it marks
    the run as finished (`is_finished`); returns its path."""
    return write_json(run_path, RESULT, result)


def is_finished(run_path: str) -> bool:
    """Whether the run wrote everything: `result.json` and, after it, the report
    (`report.md` is its last file). A run stopped between the two is resumed, which redoes
    the end from the final checkpoint."""
    return all(os.path.exists(os.path.join(run_path, name)) for name in (RESULT, REPORT_MD))


def read_metrics(run_path: str) -> list[dict]:
    """Every record of `metrics.jsonl`, in order; a line cut short by a kill is skipped, and a
    run without the file has none."""
    path = os.path.join(run_path, METRICS)
    if not os.path.exists(path):
        return []
    records = []
    with open(path) as f:
        for line in f:
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return records


def adapter_dir(run_path: str) -> str:
    """Where the run's adapter (`adapter.npz`, `adapter.json`) is written."""
    return os.path.join(run_path, ADAPTER_DIR)


def checkpoints_dir(run_path: str) -> str:
    """Where the run's checkpoints (`step-NNNNNN/`) are written."""
    return os.path.join(run_path, CHECKPOINTS_DIR)


def checkpoint_name(step: int) -> str:
    """The directory name of the checkpoint after `step` (`step-000040`)."""
    return f"{CHECKPOINT_PREFIX}{step:06d}"


def partial_checkpoint_name(step: int, pid: int) -> str:
    """The hidden name a checkpoint is written under before it is complete."""
    return f"{CHECKPOINT_PARTIAL}{step:06d}-{pid}"


def sharded_checkpoint_name(step: int) -> str:
    """The folder of a step's sharded arrays (`sharded-000040`, in process 0's checkpoints)."""
    return f"{CHECKPOINT_SHARDED_PREFIX}{step:06d}"


def best_checkpoint_name(step: int) -> str:
    """The directory name of the best step's weights (`best-000030`, train.keep_best)."""
    return f"{CHECKPOINT_BEST_PREFIX}{step:06d}"


def default_path(experiment: str, root: str = "runs") -> str:
    """`runs/<experiment>-<YYYYmmdd-HHMMSS>`, with `:` in the name made filesystem-safe; an
    experiment file (`path/to/mine.py[:arg]`) is named by its file name (`mine[-arg]`)."""
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    path, dot_py, arg = experiment.partition(".py")
    if dot_py and (not arg or arg.startswith(":")):
        experiment = os.path.basename(path) + arg
    return os.path.join(root, f"{experiment.replace(':', '-').replace(os.sep, '-')}-{stamp}")


def tracking_ids(run_path: str, new_id: Callable[[], str]) -> dict:
    """The run's tracker identity (`tracking.json`: `name`, `wandb_id`), written on the first
    start and read back on every resume, so a resumed run continues the same tracked run."""
    ids = read_json(run_path, TRACKING)
    if ids is None:
        ids = {"name": os.path.basename(os.path.abspath(run_path)), "wandb_id": new_id()}
        write_json(run_path, TRACKING, ids)
    return ids
