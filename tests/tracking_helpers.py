"""Reading back what the trackers wrote, for the tracking tests: TensorBoard event files (as
TensorBoard itself loads them, purges included), a W&B offline run file, a Trackio run.

Trackio reads its store's folder (`TRACKIO_DIR`) once, when it is first imported, so this
module points it at a temporary folder for the whole test session as it is imported (at
collection, before any test imports trackio); tests never write the user's store.
"""

import atexit
import glob
import json
import os
import shutil
import struct
import sys
import tempfile

from gemma_tune.runs import run_dir

if "trackio" not in sys.modules:
    TRACKIO_DIR = tempfile.mkdtemp(prefix="gemma_tune_trackio_")
    os.environ["TRACKIO_DIR"] = TRACKIO_DIR
    atexit.register(shutil.rmtree, TRACKIO_DIR, ignore_errors=True)
else:
    TRACKIO_DIR = None


def trackio_usable() -> bool:
    """Whether trackio is installed and writes to this session's temporary store."""
    import importlib.util

    if importlib.util.find_spec("trackio") is None or TRACKIO_DIR is None:
        return False
    from trackio import utils

    return str(utils.TRACKIO_DIR) == TRACKIO_DIR


# Keys of metrics.jsonl records the trackers plot (numbers), by step.
SKIPPED = {"step"}


def expected_scalars(records: list[dict]) -> dict[tuple[str, int], float]:
    """`(key, step) -> value` for every number in metrics.jsonl-style records."""
    return {
        (key, record["step"]): float(value)
        for record in records
        for key, value in record.items()
        if key not in SKIPPED and isinstance(value, (int, float)) and not isinstance(value, bool)
    }


def tensorboard_scalars(run_path: str) -> dict[tuple[str, int], float]:
    """`(tag, step) -> value` as TensorBoard shows them (a purge drops later steps)."""
    from tensorboard.backend.event_processing import event_accumulator

    folder = os.path.join(run_path, run_dir.TENSORBOARD_DIR)
    accumulator = event_accumulator.EventAccumulator(folder, size_guidance={"scalars": 0})
    accumulator.Reload()
    return {
        (tag, event.step): event.value
        for tag in accumulator.Tags()["scalars"]
        for event in accumulator.Scalars(tag)
    }


def tensorboard_texts(run_path: str) -> dict[str, list[str]]:
    """Every text summary's values, by tag."""
    from tensorboard.backend.event_processing import event_accumulator
    from tensorboard.util import tensor_util

    folder = os.path.join(run_path, run_dir.TENSORBOARD_DIR)
    accumulator = event_accumulator.EventAccumulator(folder, size_guidance={"tensors": 0})
    accumulator.Reload()
    return {
        tag: [
            tensor_util.make_ndarray(e.tensor_proto).item().decode()
            for e in accumulator.Tensors(tag)
        ]
        for tag in accumulator.Tags()["tensors"]
    }


def _wandb_records(path: str):
    """The protobuf records of a `.wandb` file (a LevelDB-style log of 32 KiB blocks)."""
    from wandb.proto import wandb_internal_pb2

    with open(path, "rb") as f:
        data = f.read()
    ident, _, _ = struct.unpack("<4sHB", data[:7])
    assert ident == b":W&B", path
    position, block, pending = 7, 32768, b""
    while position + 7 <= len(data):
        left = block - position % block
        if left < 7:
            position += left
            continue
        _, length, kind = struct.unpack("<IHB", data[position : position + 7])
        pending += data[position + 7 : position + 7 + length]
        position += 7 + length
        if kind in (1, 4):  # a full record, or the last piece of one
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            pending = b""
            yield record


def wandb_history(run_path: str) -> tuple[dict[tuple[str, int], object], list[dict]]:
    """`(key, step) -> value` of the W&B offline run's history, and its history rows."""
    [path] = glob.glob(os.path.join(run_path, run_dir.WANDB_DIR, "offline-run-*", "run-*.wandb"))
    values, rows = {}, []
    for record in _wandb_records(path):
        if record.WhichOneof("record_type") != "history":
            continue
        row = {
            i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in record.history.item
        }
        rows.append(row)
        for key, value in row.items():
            if not key.startswith("_"):
                values[(key, row["_step"])] = value
    return values, rows
