"""The training loop: epochs of batches through `Trainer.train_step`, with progress, metrics,
validation, checkpoints, exact resume, and a clean stop on Ctrl-C or SIGTERM.

A run resumed from a checkpoint continues mid-epoch at the very batch it would have taken next
(the data order is a function of the seed and the epoch), with the same weights and optimizer
state, so it produces the same losses and the same final weights as an uninterrupted run.
"""

from __future__ import annotations

import contextlib
import math
import signal
import time

import tqdm

from gemma_tune.training import batching, checkpoint, trainer


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
) -> dict:
    """Runs the configured epochs (or `max_steps`) and returns the final metrics.

    Args:
      tuner: the Trainer to update (already restored from a checkpoint when resuming).
      train_encoded / validation_encoded: lists of `template.Encoded`.
      config: the resolved experiment config (uses `train.*`, `sequence_length`, `seed`).
      pad_id: the tokenizer's padding id.
      log: a callable receiving one metrics dict per logged step or validation.
      run_path: where checkpoints go (`train.checkpoint_every`, at the end, and on a stop
        signal); None trains without checkpoints.
      resume_state: the state returned by `checkpoint.restore`, to continue a run.

    Raises:
      NonFiniteLossError: the loss became NaN or infinite (earlier checkpoints are kept).
      Interrupted: SIGINT or SIGTERM arrived; a checkpoint of the last finished step is saved.
    """
    train = config.train
    length = config.sequence_length
    per_step = train.batch_size * train.grad_accum_steps
    steps_in_epoch = batching.steps_per_epoch(len(train_encoded), per_step)
    total_steps = total_train_steps(len(train_encoded), config)
    state = dict(resume_state or {})

    def validate(step: int) -> dict:
        batches = trainer.eval_batches(
            validation_encoded, train.eval_batch_size, length, pad_id, train.eval_batches
        )
        result = {f"val_{k}": v for k, v in tuner.evaluate(batches).items()}
        log({"step": step, **result})
        return result

    base_validation = state.get("base_validation", {})
    last_validation = state.get("last_validation", {})
    if validation_encoded and train.eval_at_start and not resume_state:
        base_validation = {f"base_{k}": v for k, v in validate(0).items()}
    start_step = tuner.step
    step = start_step
    tokens_seen = state.get("tokens_seen", 0.0)
    elapsed_before = state.get("elapsed_s", 0.0)
    started = time.perf_counter()

    saved = {}

    def save() -> str | None:
        if run_path is None:
            return None
        if step in saved:
            return saved[step]
        loop_state = {
            "tokens_seen": tokens_seen,
            "elapsed_s": elapsed_before + time.perf_counter() - started,
            "base_validation": base_validation,
            "last_validation": last_validation,
        }
        saved[step] = checkpoint.save(run_path, tuner, loop_state, train.keep_checkpoints)
        return saved[step]

    progress = tqdm.tqdm(
        total=total_steps, initial=start_step, desc="train", unit="step", dynamic_ncols=True
    )
    stop = _StopRequests()
    with stop.installed(), contextlib.closing(progress):
        for epoch in range(train.epochs):
            order = batching.epoch_order(len(train_encoded), config.seed, epoch, train.shuffle)
            for step_in_epoch in range(steps_in_epoch):
                if step >= total_steps:
                    break
                if epoch * steps_in_epoch + step_in_epoch < start_step:
                    continue  # Done before the checkpoint this run resumed from.
                batch = batching.train_batch(
                    train_encoded,
                    order,
                    step_in_epoch,
                    train.batch_size,
                    train.grad_accum_steps,
                    length,
                    pad_id,
                    train.length_bucket,
                )
                learning_rate = tuner.learning_rate()
                metrics = tuner.train_step(batch)
                step += 1
                if not math.isfinite(metrics["loss"]):
                    last = checkpoint.latest(run_path) if run_path else None
                    kept = f"; the last good checkpoint is {last}" if last else ""
                    raise NonFiniteLossError(
                        f"loss became {metrics['loss']} at step {step} (epoch {epoch}, batch "
                        f"{step_in_epoch}){kept}; lower train.learning_rate or set "
                        "train.grad_clip_norm"
                    )
                tokens_seen += float(batch["padding_mask"].sum())
                elapsed = elapsed_before + time.perf_counter() - started
                tokens_per_s = tokens_seen / max(elapsed, 1e-9)
                progress.update(1)
                progress.set_postfix(loss=f"{metrics['loss']:.4f}", tok_s=f"{tokens_per_s:.0f}")
                if step % train.log_every == 0 or step == total_steps:
                    log(
                        {
                            "step": step,
                            "epoch": epoch,
                            "learning_rate": learning_rate,
                            "tokens_per_s": tokens_per_s,
                            "elapsed_s": elapsed,
                            **metrics,
                        }
                    )
                if validation_encoded and train.eval_every and step % train.eval_every == 0:
                    last_validation = validate(step)
                if stop.signal_number is not None:
                    raise Interrupted(stop.signal_number, step, save())
                if train.checkpoint_every and step % train.checkpoint_every == 0:
                    save()
        finished_before = bool(resume_state) and step == start_step and last_validation
        if validation_encoded and not finished_before:
            if not train.eval_every or step % train.eval_every:
                last_validation = validate(step)
        save()
    tuner.sync_to_model()
    return {
        "steps": step,
        "train_seconds": elapsed_before + time.perf_counter() - started,
        **base_validation,
        **last_validation,
    }
