"""The training loop: epochs of batches through `Trainer.train_step`, with progress, metrics,
validation, checkpoints, exact resume, and a clean stop on Ctrl-C or SIGTERM.

A run resumed from a checkpoint continues mid-epoch at the very batch it would have taken next
(the data order is a function of the seed and the epoch), with the same weights and optimizer
state, so it produces the same losses and the same final weights as an uninterrupted run.
Each checkpoint also records the step its validation results belong to (`validated_step`), so
a run stopped after its last step but before (or during) the final validation validates on
resume, and one stopped after it does not validate twice: the final metrics always equal the
uninterrupted run's.

`train.keep_best` and `train.early_stopping_patience` (`selection.Selection`) watch each
validation's loss: the best step's weights are saved beside the checkpoints as it is found,
the run stops after that many validations without improvement, and with `keep_best` it ends
with the best step's weights (what the adapter then holds). The best step and the count of
validations without improvement are part of every checkpoint, so a resume stays exact.
"""

from __future__ import annotations

import contextlib
import math
import signal
import time

import tqdm

from gemma_tune.training import batching, checkpoint, multihost, selection, trainer


class NonFiniteLossError(ArithmeticError):
    """The loss became NaN or infinite; the message names the step and the batch."""


class Interrupted(Exception):
    """Training stopped on SIGINT or SIGTERM after saving a checkpoint.

    Attributes:
      signal_number: the signal that asked for the stop.
      checkpoint_path: where the state was saved (None when the run has no directory).
    """

    def __init__(self, signal_number: int, step: int, checkpoint_path: str | None):
        name = signal.Signals(signal_number).name
        where = f"; checkpoint saved to {checkpoint_path}" if checkpoint_path else ""
        super().__init__(f"stopped by {name} after step {step}{where}")
        self.signal_number = signal_number
        self.checkpoint_path = checkpoint_path


class _StopRequests:
    """Turns SIGINT/SIGTERM into a request the loop honours between steps (a second Ctrl-C
    stops at once)."""

    def __init__(self):
        self.signal_number = None

    def _handle(self, signal_number, frame):
        del frame
        if self.signal_number is not None and signal_number == signal.SIGINT:
            raise KeyboardInterrupt
        self.signal_number = signal_number
        print(
            f"\n{signal.Signals(signal_number).name}: finishing the current step, then saving a "
            "checkpoint (Ctrl-C again to stop at once) ...",
            flush=True,
        )

    @contextlib.contextmanager
    def installed(self):
        """Handles SIGINT and SIGTERM while the block runs, restoring the old handlers after."""
        previous = {}
        try:
            for number in (signal.SIGINT, signal.SIGTERM):
                previous[number] = signal.signal(number, self._handle)
        except ValueError:  # Not the main thread: leave signals alone.
            pass
        try:
            yield self
        finally:
            for number, handler in previous.items():
                signal.signal(number, handler)


def total_train_steps(train_count: int, config) -> int:
    """Optimizer steps in the run: epochs x steps per epoch, capped by `train.max_steps`."""
    train = config.train
    steps = train.epochs * batching.steps_per_epoch(
        train_count, train.batch_size * train.grad_accum_steps
    )
    return min(steps, train.max_steps) if train.max_steps > 0 else steps


def fit(
    tuner: trainer.Trainer,
    train_encoded,
    validation_encoded,
    config,
    pad_id: int,
    log,
    run_path: str | None = None,
    resume_state: dict | None = None,
    on_validation=None,
) -> dict:
    """Runs the configured epochs (or `max_steps`, or until early stopping) and returns the
    final metrics, ending with the best step's weights when `train.keep_best`.

    Args:
      tuner: the Trainer to update (already restored from a checkpoint when resuming).
      train_encoded / validation_encoded: lists of `template.Encoded` (supervised), or
        `objectives.ScoredPairs` (DPO): what the trainer's objective batches. DPO pairs carry
        the reference scores of the tuner's weights as they are before the first step (the
        reference pass), from which the validation at step 0 is taken.
      config: the resolved experiment config (uses `train.*`, `sequence_length`, `seed`).
      pad_id: the tokenizer's padding id.
      log: a callable receiving one metrics dict per logged step or validation.
      run_path: where checkpoints go (`train.checkpoint_every`, at the end, and on a stop
        signal); None trains without checkpoints.
      resume_state: the state returned by `checkpoint.restore`, to continue a run.
      on_validation: called as `on_validation(step, tuner)` after each validation is logged
        (before the checkpoint that records it), e.g. to answer fixed prompts; None: nothing.

    Raises:
      NonFiniteLossError: the loss became NaN or infinite (earlier checkpoints are kept).
      Interrupted: SIGINT or SIGTERM arrived; a checkpoint of the last finished step is saved.
    """
    run = _Fit(
        tuner, train_encoded, validation_encoded, config, pad_id, log, run_path, on_validation
    )
    run.start(resume_state)
    progress = tqdm.tqdm(
        total=run.total_steps, initial=run.start_step, desc="train", unit="step", dynamic_ncols=True
    )
    stop = _StopRequests()
    with stop.installed(), contextlib.closing(progress):
        for epoch, step_in_epoch, order in run.batch_positions():
            run.train_step(epoch, step_in_epoch, order, progress)
            if stop.signal_number is not None:
                raise Interrupted(stop.signal_number, run.step, run.save())
            if run.periodic_save_due():
                run.save()
        if run.selection.stopped:
            print(run.stopped_message(), flush=True)
        run.validate_at_end()
        run.save()  # The final checkpoint: after the final validation, which it records.
    run.keep_best_weights()
    tuner.sync_to_model()
    return run.final_metrics()


class _Fit:
    """One `fit`: the data, the settings and the loop's running state (step, tokens seen, time,
    validation results), which is what a checkpoint keeps besides the trainer's arrays."""

    def __init__(
        self, tuner, train_encoded, validation_encoded, config, pad_id, log, run_path,
        on_validation=None,
    ):  # fmt: skip
        self.tuner, self.log, self.run_path = tuner, log, run_path
        self.objective = tuner.objective
        self.on_validation = on_validation
        self.train_encoded, self.validation_encoded = train_encoded, validation_encoded
        self.config, self.train, self.pad_id = config, config.train, pad_id
        per_step = self.train.batch_size * self.train.grad_accum_steps
        self.steps_in_epoch = batching.steps_per_epoch(len(train_encoded), per_step)
        self.total_steps = total_train_steps(len(train_encoded), config)
        self._saved: dict[tuple, str | None] = {}
        self.sharded = bool(run_path) and checkpoint.is_sharded(config)  # each host its shards

    def start(self, resume_state: dict | None) -> None:
        """Takes up the resumed run's state, or measures the base model (`eval_at_start`)."""
        state = dict(resume_state or {})
        self.base_validation = state.get("base_validation", {})
        self.last_validation = state.get("last_validation", {})
        # The step `last_validation` measured (None: unknown, as in checkpoints written before
        # this was recorded, which makes the end of the run validate again).
        self.validated_step = state.get("validated_step")
        self.selection = selection.Selection.from_state(
            state.get("selection"),
            self.train.get("keep_best", False),
            self.train.get("early_stopping_patience", 0),
        )
        self._best_in_memory = None  # the best weights of a run without a directory
        if self.validation_encoded and self.train.eval_at_start and not resume_state:
            self.base_validation = {
                f"base_{k}": v for k, v in self.validate(0, at_start=True).items()
            }
        self.start_step = self.step = self.tuner.step
        self.tokens_seen = state.get("tokens_seen", 0.0)
        self.elapsed_before = state.get("elapsed_s", 0.0)
        self.started = time.perf_counter()

    def elapsed(self) -> float:
        """Training seconds, those before a resume included."""
        return self.elapsed_before + time.perf_counter() - self.started

    def validate(self, step: int, at_start: bool = False) -> dict:
        """The objective's validation metrics at `step` (logged), as `val_*`: loss, accuracy
        and perplexity for supervised tuning, DPO's rewards for pairs. `at_start` (before any
        step of a run not resumed): a DPO run's policy is still its reference, whose scores of
        the validation pairs give the metrics without a forward pass."""
        settings = (
            self.validation_encoded,
            self.train.eval_batch_size,
            self.config.sequence_length,
            self.pad_id,
            self.train.eval_batches,
        )
        metrics = self.objective.reference_validation(*settings) if at_start else None
        if metrics is None:
            metrics = self.tuner.evaluate(self.objective.eval_batches(*settings))
        result = {f"val_{k}": v for k, v in metrics.items()}
        self.log({"step": step, **result})
        if self.on_validation is not None:
            self.on_validation(step, self.tuner)
        return result

    def periodic_save_due(self) -> bool:
        """Whether `train.checkpoint_every` asks for a checkpoint now; not at the last step,
        whose checkpoint is written after the final validation, recording it."""
        every = self.train.checkpoint_every
        return bool(every) and self.step % every == 0 and self.step < self.total_steps

    def save(self) -> str | None:
        """Checkpoints the current step (None without a run directory); once per step and
        validation state, so a step re-saved after its validation records that it is done."""
        if self.run_path is None:
            return None
        key = (self.step, self.validated_step)
        if key not in self._saved:
            loop_state = {
                "tokens_seen": self.tokens_seen,
                "elapsed_s": self.elapsed(),
                "base_validation": self.base_validation,
                "last_validation": self.last_validation,
                "validated_step": self.validated_step,
                "selection": self.selection.to_state(),
            }
            self._saved[key] = checkpoint.save(
                self.run_path, self.tuner, loop_state, self.train.keep_checkpoints, self.sharded
            )
            if self.selection.keep_best:  # this checkpoint names the one best step still needed
                checkpoint.prune_best(self.run_path, self.selection.best_step)
        return self._saved[key]

    def batch_positions(self):
        """Yields `(epoch, step_in_epoch, order)` for each step still to train: the data order
        is a function of the seed and the epoch, so a resumed run skips what it did before."""
        for epoch in range(self.train.epochs):
            order = batching.epoch_order(
                len(self.train_encoded), self.config.seed, epoch, self.train.shuffle
            )
            for step_in_epoch in range(self.steps_in_epoch):
                if self.step >= self.total_steps or self.selection.stopped:
                    return
                if epoch * self.steps_in_epoch + step_in_epoch < self.start_step:
                    continue  # Done before the checkpoint this run resumed from.
                yield epoch, step_in_epoch, order

    def train_step(self, epoch: int, step_in_epoch: int, order, progress) -> None:
        """One optimizer step on the batch at this position, then progress, the metrics log and
        the periodic validation.

        Raises:
          NonFiniteLossError: naming the step, the batch and the last good checkpoint.
        """
        train = self.train
        batch = self.objective.train_batch(
            self.train_encoded,
            order,
            step_in_epoch,
            train,
            self.config.sequence_length,
            self.pad_id,
        )
        learning_rate = self.tuner.learning_rate()
        metrics = self.tuner.train_step(batch)
        self.step += 1
        if not math.isfinite(metrics["loss"]):
            self._diverged(metrics["loss"], epoch, step_in_epoch)
        self.tokens_seen += float(batch["padding_mask"].sum())
        elapsed = self.elapsed()
        tokens_per_s = self.tokens_seen / max(elapsed, 1e-9)
        progress.update(1)
        progress.set_postfix(**self.objective.progress(metrics), tok_s=f"{tokens_per_s:.0f}")
        if self.step % train.log_every == 0 or self.step == self.total_steps:
            self.log(
                {
                    "step": self.step,
                    "epoch": epoch,
                    "learning_rate": learning_rate,
                    "tokens_per_s": tokens_per_s,
                    "elapsed_s": elapsed,
                    **metrics,
                }
            )
        if self.validation_encoded and train.eval_every and self.step % train.eval_every == 0:
            self.last_validation = self.validate(self.step)
            self.validated_step = self.step
            self._observe(may_stop=self.step < self.total_steps)

    def _observe(self, may_stop: bool) -> None:
        """Gives the validation just made to the selection, saving the weights when they are
        the best so far and `keep_best` wants them."""
        improved = self.selection.observe(self.step, self.last_validation, may_stop)
        if not (improved and self.selection.keep_best):
            return
        if self.run_path is not None:
            checkpoint.save_best(self.run_path, self.tuner)
        else:
            self._best_in_memory = [multihost.to_host(a) for a in self.tuner.trainable]

    def stopped_message(self) -> str:
        """Why training stopped before its last step (early stopping)."""
        best = self.selection.best_validation.get(selection.LOSS, float("nan"))
        return (
            f"Early stopping after step {self.step} of {self.total_steps}: val_loss did not "
            f"improve in {self.selection.without_improvement} validations (best {best:.4f} "
            f"at step {self.selection.best_step})"
        )

    def keep_best_weights(self) -> None:
        """With `keep_best`, puts the best step's weights back into the trainer (after the
        final checkpoint, which keeps the last step's for an exact resume)."""
        best_step = self.selection.best_step
        if not self.selection.keep_best or best_step is None or best_step == self.step:
            return
        if self.run_path is not None:
            checkpoint.restore_best(self.run_path, self.tuner, best_step)
        elif self._best_in_memory is not None:
            tuner = self.tuner
            tuner.set_state(self._best_in_memory, tuner.optimizer_state, tuner.step)
        print(f"Keeping step {best_step}'s weights (lowest val_loss)", flush=True)

    def _diverged(self, loss: float, epoch: int, step_in_epoch: int):
        last = checkpoint.latest(self.run_path) if self.run_path else None
        kept = f"; the last good checkpoint is {last}" if last else ""
        raise NonFiniteLossError(
            f"loss became {loss} at step {self.step} (epoch {epoch}, batch "
            f"{step_in_epoch}){kept}; lower train.learning_rate or set "
            "train.grad_clip_norm"
        )

    def validate_at_end(self) -> None:
        """Validates the final weights unless the results already are of this step (the last
        step's periodic validation, or a resumed run whose checkpoint recorded it)."""
        if self.validation_encoded and self.validated_step != self.step:
            self.last_validation = self.validate(self.step)
            self.validated_step = self.step
            self._observe(may_stop=False)

    def final_metrics(self) -> dict:
        """Steps, training time, the validation before training and of the kept weights (the
        best step's with `keep_best`), which step was kept and why training stopped."""
        kept = self.selection.kept_step(self.step)
        kept_validation = self.selection.best_validation if kept != self.step else {}
        return {
            "steps": self.step,
            "train_seconds": self.elapsed(),
            **self.base_validation,
            **(kept_validation or self.last_validation),
            **self.selection.summary(self.step),
        }
