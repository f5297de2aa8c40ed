"""Tune a Gemma with LoRA: `python -m gemma_tune.train --experiment=NAME[:ARG]`.

    python -m gemma_tune.train --experiment=list                  # what can I run?
    python -m gemma_tune.train --experiment=tiny                  # offline smoke run, seconds
    python -m gemma_tune.train --experiment=dolly_lora4           # the reference run
    python -m gemma_tune.train --experiment=dolly_lora4 --print_config
    python -m gemma_tune.train --experiment=jsonl_sft:data.jsonl --set lora.rank=8 \
        --set train.max_steps=200 --workdir=runs/mine
    python -m gemma_tune.train --resume=runs/mine                   # after Ctrl-C or a crash

Reads and checks all the data first (bad rows stop the run before any model is loaded), then
loads the model, enables LoRA, trains and writes a self-describing run directory (see
`gemma_tune.runs.run_dir`). The last line printed says where it is. Checkpoints are written every
`train.checkpoint_every` steps, at the end, and on Ctrl-C or SIGTERM; rerunning the same command
on the same `--workdir` (or `--resume=RUN_DIR`) continues exactly where the run stopped.
`train.report_to` feeds TensorBoard, W&B or Trackio (`gemma_tune.training.tracking`);
`train.keep_best` and `train.early_stopping_patience` choose the step kept and when to stop.
`train.objective=dpo` tunes on preference pairs (`gemma_tune.training.objectives`), after a
reference pass over the pairs (`gemma_tune.training.preference_data`); `train.init_from=RUN_DIR`
starts from another run's adapter (DPO after supervised tuning).

This module holds the flags and the order of a run's steps (`run`); the steps themselves are in
`gemma_tune.train_data` (the data, examples or preference pairs), `gemma_tune.train_model`
(mesh, model, trainer, adapter) and `gemma_tune.train_results` (base answers, result, report).
"""

from __future__ import annotations

import sys
import time

from absl import app, flags, logging

import gemma_tune
from gemma_tune import command_line, config_ranges, console, train_data, train_model, train_results
from gemma_tune import config as config_lib

FLAGS = flags.FLAGS
flags.DEFINE_string("experiment", None, "Experiment name[:arg] from experiments/, or 'list'.")
flags.DEFINE_multi_string("set", [], "Override a config field: --set train.max_steps=100.")
flags.DEFINE_string("workdir", None, "Run directory (default runs/<experiment>-<timestamp>).")
flags.DEFINE_bool("print_config", False, "Print the resolved config as JSON and exit.")
flags.DEFINE_string("resume", None, "Continue the unfinished run in this directory.")
flags.DEFINE_bool("overwrite", False, "Delete the run in --workdir and start over.")


def run(config, workdir: str, overwrite: bool = False) -> str:
    """Runs one experiment end to end and returns the run directory.

    Rerunning it on a directory that holds an unfinished run of the same config resumes from
    the newest checkpoint; another run's directory is refused unless `overwrite`.

    Args:
      config: a resolved, locked experiment config (`gemma_tune.config.load`).
      workdir: the run directory to create (or to resume).
      overwrite: delete whatever run `workdir` holds and start over.

    Raises:
      ValueError: a setting out of its range (`config_ranges.check`), before anything is
        written.
      lock.RunLocked: another live run holds `workdir`.
    """
    from gemma_tune.evaluation import progress_generations
    from gemma_tune.runs import lock
    from gemma_tune.training import objectives

    started = time.perf_counter()
    config_ranges.check(config)  # every setting in range before anything is written
    objectives.check_config(config)
    run_path = _start(config, workdir)
    data = train_data.read_data(config)  # bad rows stop the run before anything is written
    train_data.check_selection(config, data)
    progress_generations.check(config, bool(data.validation_examples))
    mesh = train_model.make_mesh(config)
    with lock.RunLock(run_path):
        _run_locked(config, run_path, overwrite, data, mesh, started)
    return run_path


def _run_locked(
    config, run_path: str, overwrite: bool, data: train_data.Data, mesh, started: float
):
    """Everything that writes the run directory, from its config to its report, done while
    this process holds the directory's lock."""
    from gemma_tune.evaluation import progress_generations
    from gemma_tune.model import vision
    from gemma_tune.training import template, tracking

    resuming = _open_run_dir(config, run_path, overwrite)
    prepared = train_model.prepare_model(config)
    chat_template = template.ChatTemplate(
        prepared.loaded.tokenizer,
        config.template.train_on_prompt,
        vision.image_inputs(prepared.loaded),
    )
    encoded = train_data.encode(config, chat_template, data, run_path)
    evaluation = train_results.answer_as_base(
        config, prepared.loaded, chat_template, data, encoded, run_path
    )
    tuner, resume_state = train_model.make_trainer(
        config, prepared.loaded, encoded, mesh, run_path, resuming, chat_template.pad_id
    )
    trackers = tracking.Trackers(config, run_path, tuner.step)
    on_validation = progress_generations.from_config(
        config, prepared.loaded.causal_lm, chat_template, run_path, trackers
    )
    try:
        final = _train(
            config, tuner, encoded, chat_template.pad_id, run_path, resume_state, trackers,
            on_validation,
        )  # fmt: skip
        train_model.save_adapter(config, prepared.loaded, run_path)
        train_results.finish(config, prepared, evaluation, final, run_path, started, trackers)
    except BaseException:
        trackers.close(failed=True)
        raise


def _start(config, workdir: str) -> str:
    """Starts JAX across hosts (before any JAX work), says what runs, and returns this host's
    run path."""
    from gemma_tune.training import multihost, tracking

    multihost.initialize(config.mesh)
    workdir = multihost.run_path(workdir)
    print(f"gemma_tune {gemma_tune.__version__}: experiment {config.experiment}", flush=True)
    tracking.check_installed(config.train)
    return workdir


def _open_run_dir(config, run_path: str, overwrite: bool) -> bool:
    """Creates (or reopens, to resume) the run directory and writes the config; returns
    whether an unfinished run of this config is being resumed."""
    from gemma_tune.runs import run_dir, run_start

    resuming = run_start.prepare(run_path, config.to_dict(), overwrite)
    run_dir.write_config(run_path, config.to_dict())
    return resuming


def _train(
    config, tuner, encoded: train_data.Encoded, pad_id: int, run_path: str, resume_state, trackers,
    on_validation=None,
):  # fmt: skip
    """The training loop, logging to metrics.jsonl and the trackers (and calling
    `on_validation(step, tuner)` after each validation); returns the loop's final metrics."""
    from gemma_tune.runs import metrics_log
    from gemma_tune.training import loop

    total_steps = loop.total_train_steps(len(encoded.train), config)
    metrics_file = metrics_log.MetricsLog(run_path)

    def log(record: dict) -> None:
        metrics_file(record)
        trackers.log(record)

    data_unit = "pairs" if tuner.objective.name == "dpo" else "examples"
    print(
        f"Training {total_steps} steps on {len(encoded.train)} "
        f"{'packed rows' if config.train.packing else data_unit} "
        f"(batch {config.train.batch_size} x accumulation {config.train.grad_accum_steps}, "
        f"{config.sequence_length} tokens) ...",
        flush=True,
    )
    try:
        return loop.fit(
            tuner,
            encoded.train,
            encoded.validation,
            config,
            pad_id,
            log,
            run_path=run_path,
            resume_state=resume_state,
            on_validation=on_validation,
        )
    finally:
        metrics_file.close()


def _config_from_flags():
    """The run's config from --experiment/--set or --resume, its tuning settings checked.

    Raises:
      ValueError / FileNotFoundError: a bad experiment, setting or run directory.
    """
    from gemma_tune import model

    if FLAGS.resume:
        if FLAGS.set:
            raise ValueError("--resume continues a run as it was configured; drop --set")
        config = config_lib.from_run(FLAGS.resume)
    else:
        config = config_lib.load(FLAGS.experiment, FLAGS.set)
    if not FLAGS.print_config:
        model.check_tuning(config)
    return config


def main(argv) -> int:
    """The command line: flags -> config -> `run`; returns the exit status (2 for a bad
    config, 1 for bad data or a failed run, 128 + the signal when interrupted). Errors are
    one line on stderr (`command_line`; `--debug` shows the traceback); status and progress go
    to stderr, the results (comparison table, `Report: ...`, `Run directory: ...`) to stdout."""
    logging.set_verbosity(logging.WARNING)
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    if FLAGS.experiment == "list":
        print(config_lib.describe_experiments())
        return 0
    if bool(FLAGS.experiment) == bool(FLAGS.resume):
        raise app.UsageError(
            "give --experiment=NAME (--experiment=list shows them) or --resume=RUN_DIR"
        )
    command_line.import_keras_hub_quietly()
    try:
        config = _config_from_flags()
    except (ValueError, FileNotFoundError) as error:
        if FLAGS.debug:
            raise
        print(command_line.one_line(error), file=sys.stderr)
        return 2
    if FLAGS.print_config:
        print(config_lib.to_json(config))
        return 0
    from gemma_tune.runs import run_dir
    from gemma_tune.training import loop

    workdir = FLAGS.resume or FLAGS.workdir or run_dir.default_path(config.experiment)
    try:
        with console.status_to_stderr():  # results reach stdout through console.result
            run(config, workdir, overwrite=FLAGS.overwrite)
    except loop.Interrupted as stop:
        print(
            f"Interrupted: {stop}. Rerun the same command (or --resume={workdir}) to continue.",
            file=sys.stderr,
        )
        return 128 + stop.signal_number
    return 0


if __name__ == "__main__":
    command_line.run(main)
