"""Experiment trackers: TensorBoard, Weights & Biases and Trackio, as `train.report_to` asks.

    python -m gemma_tune.train --experiment=tiny --set 'train.report_to=["tensorboard"]'
    tensorboard --logdir runs/                      # then open the printed address
    WANDB_MODE=offline python -m gemma_tune.train --experiment=tiny \
        --set 'train.report_to=["wandb"]'         # then: wandb sync RUN_DIR/wandb/offline-run-*

Every record `metrics.jsonl` gets (training loss, accuracy, learning rate, gradient norm,
tokens/s at each logged step; `val_*` at each validation, `val_*` at step 0 for the base model)
goes to each tracker as scalars named like its keys, at its step; at the end the fixed
prompts' answers (`eval.prompts`, base and tuned) go as one table, `generations`, and W&B's
run summary gets result.json's numbers. With `train.generate_every_eval`, each validation's
answers to the fixed prompts also go as a table, `generations_during_training`, at its step
(`gemma_tune.evaluation.progress_generations`). Where each writes:

- `tensorboard`: `RUN_DIR/tensorboard/` event files (`pip install 'gemma_tune[tensorboard]'`;
  TensorFlow is not needed). A resumed run first writes a purge marker at its next step, so
  TensorBoard drops what the stopped run logged after its checkpoint.
- `wandb`: a W&B run in `RUN_DIR/wandb/` (`pip install 'gemma_tune[wandb]'`), project
  `$WANDB_PROJECT` or `gemma_tune`, named after the run directory; `WANDB_MODE=offline`
  keeps it on disk for a later `wandb sync`. A resumed run continues the same W&B run id
  (`tracking.json`).
- `trackio`: a Trackio run (`pip install 'gemma_tune[trackio]'`) in Trackio's local store
  (`$TRACKIO_DIR`, by default under the Hugging Face cache), project `$TRACKIO_PROJECT` or
  `gemma_tune`; `trackio show` opens it. It needs no network.

`check_installed` runs before any work, so a missing package stops the run at once naming
the extra to install. With several hosts, only process 0 feeds W&B and Trackio (each
process's run directory still gets its own TensorBoard files).
"""

from __future__ import annotations

import importlib.util
import os
import uuid

from gemma_tune.runs import run_dir

TRACKERS = ("tensorboard", "wandb", "trackio")
PROJECT = "gemma_tune"


def requested(train_config) -> list[str]:
    """The trackers `train.report_to` names, in order and once each; the older
    `train.tensorboard=true` adds `tensorboard`."""
    names = list(train_config.get("report_to", []))
    if train_config.get("tensorboard", False):
        names.append("tensorboard")
    return list(dict.fromkeys(names))


def check_installed(train_config) -> None:
    """Fails before any work when a requested tracker's package is not installed.

    Raises:
      OSError: naming the tracker and the extra that installs it.
    """
    for name in requested(train_config):
        if importlib.util.find_spec(name) is None:
            raise OSError(
                f"train.report_to names {name}, which is not installed: "
                f"pip install 'gemma_tune[{name}]'"
            )


def _numbers(record: dict) -> dict:
    """The record's numbers but its step (what a tracker plots)."""
    return {
        key: float(value)
        for key, value in record.items()
        if key != "step" and isinstance(value, (int, float)) and not isinstance(value, bool)
    }


class _TensorBoard:
    """Event files in RUN_DIR/tensorboard, written with TensorBoard's own writer."""

    def __init__(self, run_path: str, start_step: int):
        from tensorboard.compat.proto import event_pb2
        from tensorboard.summary.writer import event_file_writer

        self._event_pb2 = event_pb2
        self._writer = event_file_writer.EventFileWriter(
            os.path.join(run_path, run_dir.TENSORBOARD_DIR)
        )
        if start_step > 0:  # TensorBoard drops the stopped run's events from here on.
            start = event_pb2.SessionLog(status=event_pb2.SessionLog.START)
            self._add(event_pb2.Event(step=start_step + 1, session_log=start))

    def _add(self, event) -> None:
        import time

        event.wall_time = time.time()
        self._writer.add_event(event)

    def log(self, step: int, numbers: dict) -> None:
        from tensorboard.compat.proto import summary_pb2

        values = [summary_pb2.Summary.Value(tag=k, simple_value=v) for k, v in numbers.items()]
        self._add(self._event_pb2.Event(step=step, summary=summary_pb2.Summary(value=values)))
        self._writer.flush()

    def table(self, step: int, name: str, columns: list[str], rows: list[list[str]]) -> None:
        from tensorboard.plugins.text import summary_v2

        def cell(text: str) -> str:
            return str(text).replace("|", "\\|").replace("\n", "<br>")

        lines = ["| " + " | ".join(columns) + " |", "|" + " --- |" * len(columns)]
        lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows]
        summary = summary_v2.text_pb(name, "\n".join(lines))
        self._add(self._event_pb2.Event(step=step, summary=summary))
        self._writer.flush()

    def summary(self, result: dict) -> None:
        del result  # result.json is beside the event files

    def close(self, failed: bool) -> None:
        del failed
        self._writer.close()


class _WandB:
    """A Weights & Biases run in RUN_DIR/wandb, resumed by the id in tracking.json."""

    def __init__(self, run_path: str, config_dict: dict, ids: dict):
        import wandb

        self._wandb = wandb
        self._run = wandb.init(
            project=os.environ.get("WANDB_PROJECT", PROJECT),
            name=ids["name"],
            id=ids["wandb_id"],
            resume="allow",
            dir=run_path,
            config=config_dict,
            settings=wandb.Settings(console="off", save_code=False),
        )

    def log(self, step: int, numbers: dict) -> None:
        self._run.log(numbers, step=step)

    def table(self, step: int, name: str, columns: list[str], rows: list[list[str]]) -> None:
        self._run.log({name: self._wandb.Table(columns=columns, data=rows)}, step=step)

    def summary(self, result: dict) -> None:
        self._run.summary.update(_numbers(result))

    def close(self, failed: bool) -> None:
        self._run.finish(exit_code=1 if failed else 0)  # W&B marks a failed run as such


class _Trackio:
    """A Trackio run in Trackio's local store, continued by name when the run resumes."""

    def __init__(self, config_dict: dict, ids: dict):
        import trackio

        self._trackio = trackio
        self._run = trackio.init(
            project=os.environ.get("TRACKIO_PROJECT", PROJECT),
            name=ids["name"],
            config=config_dict,
            resume="allow",
            embed=False,
        )

    def log(self, step: int, numbers: dict) -> None:
        self._run.log(numbers, step=step)

    def table(self, step: int, name: str, columns: list[str], rows: list[list[str]]) -> None:
        self._run.log({name: self._trackio.Table(columns=columns, data=rows)}, step=step)

    def summary(self, result: dict) -> None:
        del result  # Trackio has no run summary; result.json holds it

    def close(self, failed: bool) -> None:
        del failed
        self._run.finish()


class Trackers:
    """The trackers of one run; every method feeds all of them (none: does nothing).

    Args:
      config: the run's resolved config (`train.report_to`; the whole of it goes to W&B and
        Trackio as the run's config).
      run_path: the run directory.
      start_step: the step the run resumes after (0 for a new run).
    """

    def __init__(self, config, run_path: str, start_step: int = 0):
        self.names = requested(config.train)
        self._trackers = []
        if not self.names:
            return
        import jax

        main_process = jax.process_index() == 0
        config_dict = config.to_dict()
        ids = run_dir.tracking_ids(run_path, lambda: uuid.uuid4().hex[:12])
        for name in self.names:
            if name == "tensorboard":
                self._trackers.append(_TensorBoard(run_path, start_step))
            elif name == "wandb" and main_process:
                self._trackers.append(_WandB(run_path, config_dict, ids))
            elif name == "trackio" and main_process:
                self._trackers.append(_Trackio(config_dict, ids))

    def log(self, record: dict) -> None:
        """Logs one metrics.jsonl record's numbers at its step."""
        numbers = _numbers(record)
        for tracker in self._trackers:
            tracker.log(int(record.get("step", 0)), numbers)

    def log_generations(self, step: int, qualitative: list[dict]) -> None:
        """Logs the fixed prompts' answers (the comparison's `qualitative` records: each
        prompt with every system's answer) as one table, `generations`, at `step`."""
        if not qualitative or not self._trackers:
            return
        systems = list(qualitative[0]["answers"])
        rows = [[item["prompt"], *(item["answers"][s] for s in systems)] for item in qualitative]
        for tracker in self._trackers:
            tracker.table(step, "generations", ["prompt", *systems], rows)

    def log_table(self, step: int, name: str, columns: list[str], rows: list[list[str]]) -> None:
        """Logs one table (text cells) under `name` at `step`, e.g. the fixed prompts' answers
        at a validation during training (`train.generate_every_eval`)."""
        for tracker in self._trackers:
            tracker.table(step, name, columns, rows)

    def finish(self, result: dict) -> None:
        """Gives the trackers the run's result (W&B's run summary) and closes them."""
        for tracker in self._trackers:
            tracker.summary(result)
        self.close()

    def close(self, failed: bool = False) -> None:
        """Closes every tracker (flushing what they hold), telling those that record it
        whether the run failed (stopped by an error or a signal); safe to call twice."""
        trackers, self._trackers = self._trackers, []
        for tracker in trackers:
            tracker.close(failed)
