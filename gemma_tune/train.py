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
"""

from __future__ import annotations

import dataclasses
import sys
import time

from absl import app, flags, logging

import gemma_tune
from gemma_tune import command_line, config_ranges, console
from gemma_tune import config as config_lib

FLAGS = flags.FLAGS
flags.DEFINE_string("experiment", None, "Experiment name[:arg] from experiments/, or 'list'.")
flags.DEFINE_multi_string("set", [], "Override a config field: --set train.max_steps=100.")
flags.DEFINE_string("workdir", None, "Run directory (default runs/<experiment>-<timestamp>).")
flags.DEFINE_bool("print_config", False, "Print the resolved config as JSON and exit.")
flags.DEFINE_string("resume", None, "Continue the unfinished run in this directory.")
flags.DEFINE_bool("overwrite", False, "Delete the run in --workdir and start over.")


@dataclasses.dataclass
class _Data:
    """The checked examples (retrieved context attached if asked), summary and retriever; for
    DPO also the pairs (the examples are then their prompts answered with the chosen answer)."""

    train_examples: list
    validation_examples: list
    summary: object
    retriever: object
    train_pairs: list | None = None
    validation_pairs: list | None = None


@dataclasses.dataclass
class _Encoded:
    """Training rows (packed if asked), the validation examples kept and their encodings."""

    train: list
    validation_kept: list
    validation: list


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
    data = _read_data(config)  # bad rows stop the run before anything is written
    _check_selection(config, data)
    progress_generations.check(config, bool(data.validation_examples))
    mesh = _make_mesh(config)
    with lock.RunLock(run_path):
        _run_locked(config, run_path, overwrite, data, mesh, started)
    return run_path


def _run_locked(config, run_path: str, overwrite: bool, data: _Data, mesh, started: float):
    """Everything that writes the run directory, from its config to its report, done while
    this process holds the directory's lock."""
    from gemma_tune.evaluation import progress_generations
    from gemma_tune.model import vision
    from gemma_tune.training import template, tracking

    resuming = _open_run_dir(config, run_path, overwrite)
    prepared = _prepare_model(config)
    chat_template = template.ChatTemplate(
        prepared.loaded.tokenizer,
        config.template.train_on_prompt,
        vision.image_inputs(prepared.loaded),
    )
    encoded = _encode(config, chat_template, data, run_path)
    evaluation = _answer_as_base(config, prepared.loaded, chat_template, data, encoded, run_path)
    tuner, resume_state = _make_trainer(
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
        _save_adapter(config, prepared.loaded, run_path)
        _finish(config, prepared, evaluation, final, run_path, started, trackers)
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


def _read_data(config) -> _Data:
    """Reads and checks the data, and attaches retrieved passages when `retrieval.train`."""
    from gemma_tune import model
    from gemma_tune.data import preference_sources, sources
    from gemma_tune.evaluation import retrieval

    print("Reading and checking the data ...", flush=True)
    _check_not_empty(config.data)
    if config.train.get("objective") == "dpo":
        train_pairs, validation_pairs, summary = preference_sources.load(config.data)
        train_chosen, validation_chosen = (
            [pair.chosen_example for pair in pairs] for pairs in (train_pairs, validation_pairs)
        )
        return _Data(train_chosen, validation_chosen, summary, None, train_pairs, validation_pairs)
    train_examples, validation_examples, summary = sources.load(
        config.data, images=model.reads_images(config.model.preset)
    )
    retriever = retrieval.from_config(config.retrieval)
    if retriever is not None and config.retrieval.train:
        print(f"Attaching {config.retrieval.top_k} retrieved passages to every prompt ...")
        train_examples, validation_examples = (
            retrieval.attach_context(items, retriever, config.retrieval.top_k)
            for items in (train_examples, validation_examples)
        )
    return _Data(train_examples, validation_examples, summary, retriever)


def _check_selection(config, data: _Data) -> None:
    """Refuses `train.keep_best` and `train.early_stopping_patience` where there is nothing
    to choose by: no validation data, or (for early stopping) no validation before the end.

    Raises:
      ValueError: naming the setting and what it needs.
    """
    train = config.train
    asked = [key for key in ("keep_best", "early_stopping_patience") if train.get(key)]
    if asked and not data.validation_examples:
        raise ValueError(
            f"train.{asked[0]} needs validation data: set data.validation_path or "
            "data.validation_fraction"
        )
    if train.get("early_stopping_patience") and not train.eval_every:
        raise ValueError(
            "train.early_stopping_patience needs validations during training: set train.eval_every"
        )


def _check_not_empty(data_config) -> None:
    """Refuses a data file with nothing in it, naming it, before any reader looks at it.

    Raises:
      ValueError: `data.path` or `data.validation_path` is an empty file.
    """
    import os

    if data_config.source != "file":
        return
    for key in ("path", "validation_path"):
        path = data_config[key]
        if path and os.path.isfile(path) and not _has_text(path):
            raise ValueError(f"data.{key}: {path} is empty; it holds no examples")


def _has_text(path: str) -> bool:
    """Whether the file holds anything but whitespace (reading up to its first text)."""
    with open(path, "rb") as f:
        while chunk := f.read(1 << 16):
            if chunk.strip():
                return True
    return False


def _make_mesh(config):
    """The device mesh, checked against the batch sizes."""
    from gemma_tune.training import sharding

    mesh = sharding.make_mesh(config.mesh.data, config.mesh.model)
    sharding.check_batch_sizes(mesh, config.train.batch_size, config.train.eval_batch_size)
    print(f"Devices: {sharding.describe(mesh)}", flush=True)
    return mesh


def _open_run_dir(config, run_path: str, overwrite: bool) -> bool:
    """Creates (or reopens, to resume) the run directory and writes the config; returns
    whether an unfinished run of this config is being resumed."""
    from gemma_tune.runs import run_dir

    resuming = run_dir.prepare(run_path, config.to_dict(), overwrite)
    run_dir.write_config(run_path, config.to_dict())
    return resuming


def _prepare_model(config):
    """Loads the model and prepares it for the configured tuning method (LoRA/DoRA adapters
    on a float or quantized base, or every weight), through `gemma_tune.model.prepare`."""
    from gemma_tune import model
    from gemma_tune.model import prepare
    from gemma_tune.runs import tuned_run

    init_from = tuned_run.init_adapter_path(config)
    try:
        prepared = prepare.prepare(
            config.model.preset,
            prepare.Tuning.from_config(config),
            config.model.dtype,
            seed=config.seed,
            adapter_dir=init_from,
            remat=config.train.remat,
        )
    except ValueError as error:
        if init_from is None:
            raise
        raise ValueError(f"train.init_from={config.train.init_from}: {error}") from error
    if init_from is not None:
        print(f"Starting from the weights in {init_from}", flush=True)
    total, trainable = _parameter_counts(config, prepared)
    print(
        f"Model {prepared.loaded.preset}: {total:,} parameters, {trainable:,} trainable "
        f"({100 * trainable / total:.3f}%): {model.describe_tuning(config)}",
        flush=True,
    )
    return prepared


def _parameter_counts(config, prepared) -> tuple[int, int]:
    """`(total, trainable)`: the base's parameters plus the adapters' (full fine-tuning adds
    none), and those that train."""
    from gemma_tune import model

    _, trainable = model.parameter_counts(prepared.loaded)
    return prepared.base_parameters + (trainable if config.method != "full" else 0), trainable


def _encode(config, chat_template, data: _Data, run_path: str) -> _Encoded:
    """Encodes the examples, writes the data summary, and packs the training rows if asked."""
    from gemma_tune.runs import run_dir
    from gemma_tune.training import encoding, packing, preference_data

    if data.train_pairs is not None:
        train_encoded, val_kept, val_encoded = preference_data.encode(
            config, chat_template, data.summary, data.train_pairs, data.validation_pairs
        )
    else:
        train_encoded, val_kept, val_encoded = encoding.encode_examples(
            config, chat_template, data.summary, data.train_examples, data.validation_examples
        )
    run_dir.write_data_summary(run_path, data.summary.to_dict())
    print(data.summary.format(), flush=True)
    if config.train.packing and data.train_pairs is None:  # Pairs: packed by `encode`.
        examples_count = len(train_encoded)
        train_encoded = packing.combine(train_encoded, config.sequence_length)
        filled = packing.fill(train_encoded, config.sequence_length)
        print(
            f"Packed {examples_count} training examples into {len(train_encoded)} rows of "
            f"{config.sequence_length} tokens ({100 * filled:.0f}% of the slots hold tokens)",
            flush=True,
        )
    return _Encoded(train_encoded, val_kept, val_encoded)


def _answer_as_base(config, loaded, chat_template, data: _Data, encoded: _Encoded, run_path):
    """The base model's answers, before any update (reused when resuming)."""
    from gemma_tune.evaluation import answers, run_evaluation

    evaluation = run_evaluation.RunEvaluation(
        loaded,
        chat_template,
        config,
        encoded.validation_kept[: config.eval.limit] if config.eval.limit > 0 else [],
        data.train_examples[: config.samples.count],
        data.retriever,
    )
    evaluation.answer(answers.BASE, run_path)
    return evaluation


def _make_trainer(
    config, loaded, encoded: _Encoded, mesh, run_path: str, resuming: bool, pad_id: int
):
    """The trainer (objective, optimizer and compiled step on the mesh), the DPO reference
    attached to the pairs, restored from the newest checkpoint when resuming; returns it and
    the loop state to resume (or None)."""
    from gemma_tune.evaluation import progress_generations
    from gemma_tune.runs import run_dir
    from gemma_tune.training import (
        batching,
        checkpoint,
        loop,
        objectives,
        optimizer,
        preference_data,
        trainer,
    )

    total_steps = loop.total_train_steps(len(encoded.train), config)
    objective = objectives.from_config(config)
    rows = objective.rows(encoded.train) + objective.rows(encoded.validation)
    tuner = trainer.Trainer(
        loaded.causal_lm,
        optimizer.make(config.train, total_steps),
        config.train.grad_clip_norm,
        max_targets_per_row=batching.max_targets_per_row(rows),
        mesh=mesh,
        objective=objective,
    )
    if resuming:
        checkpoint.remove_partial(run_path)
    agreed = checkpoint.latest_on_every_process(run_path)  # a collective: every process calls it
    latest = agreed if resuming else None
    if objective.name == "dpo":  # before any checkpoint replaces the reference weights
        preference_data.attach_reference(
            tuner,
            encoded.train,
            encoded.validation,
            config=config,
            pad_id=pad_id,
            run_path=run_path,
            has_checkpoint=latest is not None,
        )
    resume_state = None
    if resuming:
        if latest:
            resume_state = checkpoint.restore(latest, tuner)
            print(f"Resuming from {latest} (step {tuner.step} of {total_steps})", flush=True)
        validated = bool(resume_state) and resume_state.get("validated_step") == tuner.step
        run_dir.truncate_metrics(run_path, tuner.step if latest else -1, validated)
        progress_generations.truncate(run_path, tuner.step if latest else -1, validated)
    return tuner, resume_state


def _train(
    config, tuner, encoded: _Encoded, pad_id: int, run_path: str, resume_state, trackers,
    on_validation=None,
):  # fmt: skip
    """The training loop, logging to metrics.jsonl and the trackers (and calling
    `on_validation(step, tuner)` after each validation); returns the loop's final metrics."""
    from gemma_tune.runs import run_dir
    from gemma_tune.training import loop

    total_steps = loop.total_train_steps(len(encoded.train), config)
    metrics_log = run_dir.MetricsLog(run_path)

    def log(record: dict) -> None:
        metrics_log(record)
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
        metrics_log.close()


def _save_adapter(config, loaded, run_path: str) -> None:
    """Writes the trained weights and how they were trained to the run's adapter directory."""
    from gemma_tune.model import adapters
    from gemma_tune.runs import run_dir

    adapters.save(
        loaded.causal_lm,
        run_dir.adapter_dir(run_path),
        {
            "base_preset": loaded.preset,
            "base_fingerprint": loaded.base_fingerprint,
            "method": config.method,
            "quantize": config.model.quantize,
            "int4_block_size": config.model.int4_block_size,
            **adapters.lora_settings(loaded.causal_lm),
        },
    )


def _finish(config, prepared, evaluation, final: dict, run_path, started: float, trackers) -> None:
    """The tuned model's answers, the comparison, result.json (written last but the report)
    and the report; the fixed prompts' answers and the result go to the trackers; prints the
    results (the validation results where no comparison table showed them, the report and the
    run directory) to stdout, which `main` keeps for results."""
    from gemma_tune.evaluation import answers
    from gemma_tune.reporting import report
    from gemma_tune.runs import run_dir

    evaluation.answer(answers.TUNED)
    final = evaluation.finish(run_path, final)
    prompts = list(config.eval.prompts)
    trackers.log_generations(
        final["steps"], answers.qualitative_records(prompts, evaluation.free_answers)
    )
    total, trainable = _parameter_counts(config, prepared)
    result = {
        **final,
        "parameters_total": total,
        "parameters_trainable": trainable,
        "wall_seconds": time.perf_counter() - started,
    }
    run_dir.write_result(run_path, result)
    trackers.finish(result)
    html_path, _ = report.write(run_path)
    console.result(f"Report: {html_path}")
    if not evaluation.eval_examples:  # Otherwise the comparison table showed them.
        for name in ("val_loss", "val_accuracy", "val_perplexity"):
            if name in final:
                before = final.get(f"base_{name}")
                was = f" (base model: {before:.4f})" if before is not None else ""
                console.result(f"{name}: {final[name]:.4f}{was}")
    console.result(f"Run directory: {run_path}")


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
