"""Training checkpoints: everything needed to continue a run exactly where it stopped.

    RUN_DIR/checkpoints/step-000040/
      state.npz    the trainable weights (keyed by variable path) and the optimizer's state
      state.json   step, tokens seen, time spent, validation results so far, array names

A checkpoint is written into a hidden `.partial-*` directory, flushed to disk and then renamed
into place, so a crash (or a kill) while writing leaves the previous checkpoints intact and the
half-written one is never read. A step saved again (a run resumed from its last step's
checkpoint saves that step again after the final validation) is the same weights with a
newer loop state: its files are replaced one at a time, each by an atomic rename, so the step's
checkpoint is complete and loadable at every moment, never deleted before its replacement is
in place. The data order needs no saving: it is a function of the seed and the epoch
(`batching.epoch_order`), and the step says how far into it the run got. Only the newest
`keep` checkpoints are kept. The names are `gemma_tune.runs.run_dir`'s, and each file is
written (and flushed to disk) through `run_dir.write_atomically`.

Full fine-tuning on several hosts (`method=full`, `mesh.distributed=true`: `is_sharded`) keeps
no `state.npz`: every host writes its own shards of the weights and the optimizer state to
`checkpoints/sharded-000040/` in process 0's run directory (`sharded_checkpoint`, Orbax), and
each process's `state.json` names that folder (`"sharded"`). The arrays are committed on
every host before any `state.json` is written, so a checkpoint listed as complete always has
them; old ones are pruned (by process 0) only after every process has written its newer one.

With `train.keep_best`, each new best step's trainable weights are also written, the same
way, to `checkpoints/best-000040/` (`save_best`); the regular checkpoints record which step
is best, and `prune_best` removes older best folders only once a checkpoint no longer needs
them, so the best step a resumed run reads back is always on disk.
"""

from __future__ import annotations

import os
import shutil
import zipfile

import numpy as np

import gemma_tune
from gemma_tune.runs import run_dir
from gemma_tune.training import multihost, sharded_checkpoint

DIRECTORY = run_dir.CHECKPOINTS_DIR
PREFIX = run_dir.CHECKPOINT_PREFIX
PARTIAL = run_dir.CHECKPOINT_PARTIAL
ARRAYS_FILE = run_dir.CHECKPOINT_ARRAYS
STATE_FILE = run_dir.CHECKPOINT_STATE


def is_sharded(config) -> bool:
    """Whether this run's checkpoints are written sharded by every host (full fine-tuning with
    `mesh.distributed=true` on several processes) rather than gathered.

    Raises:
      ValueError: such a run without Orbax installed, saying how to install it.
    """
    import jax

    distributed = config.get("mesh", {}).get("distributed", False)
    sharded = config.get("method") == "full" and distributed and jax.process_count() > 1
    if sharded:
        sharded_checkpoint.check_installed()
    return bool(sharded)


def save(run_path: str, trainer, state: dict, keep: int = 2, sharded: bool = False) -> str:
    """Writes a checkpoint of `trainer` and the loop's `state` atomically; returns its path.

    Args:
      run_path: the run directory.
      trainer: a `gemma_tune.training.trainer.Trainer` (its trainable weights, optimizer state,
        step).
      state: JSON-serializable loop state (tokens seen, elapsed time, validation results).
      keep: how many of the newest checkpoints to keep (at least 1).
      sharded: every process writes its own shards of the arrays (`is_sharded`) instead of
        each gathering them; every process must call `save` then.

    Raises:
      OSError: when the checkpoint cannot be written (full disk, no permission), naming where.
    """
    root = run_dir.checkpoints_dir(run_path)
    final = os.path.join(root, run_dir.checkpoint_name(trainer.step))
    partial = os.path.join(root, run_dir.partial_checkpoint_name(trainer.step, os.getpid()))
    trainable_paths = [v.path for v in trainer.backbone.trainable_variables]
    optimizer_paths = [v.path for v in trainer.optimizer.variables]
    record = {
        **state,
        "step": trainer.step,
        "trainable_paths": trainable_paths,
        "optimizer_paths": optimizer_paths,
        "gemma_tune_version": gemma_tune.__version__,
    }
    arrays = None
    if sharded:
        record["sharded"] = _save_sharded(run_path, trainer)
    else:
        arrays = {
            f"trainable/{path}": multihost.to_host(array)
            for path, array in zip(trainable_paths, trainer.trainable, strict=True)
        }
        arrays.update(
            {
                f"optimizer/{i:05d}": multihost.to_host(a)
                for i, a in enumerate(trainer.optimizer_state)
            }
        )
    try:
        os.makedirs(partial, exist_ok=True)
        if arrays is not None:
            arrays_path = os.path.join(partial, ARRAYS_FILE)
            run_dir.write_atomically(arrays_path, lambda f: np.savez(f, **arrays), fsync=True)
        state_text = run_dir.json_text(record, default=float)
        run_dir.write_atomically(os.path.join(partial, STATE_FILE), state_text, fsync=True)
        if os.path.exists(final):
            _replace_files(partial, final)
        else:
            os.rename(partial, final)
        run_dir.fsync_directory(root)
    except OSError as error:
        shutil.rmtree(partial, ignore_errors=True)
        raise OSError(f"cannot write checkpoint {final}: {error.strerror or error}") from error
    if sharded:  # every process's state.json of this step exists before any prune below
        multihost.barrier(f"checkpoint {trainer.step} written")
    for old in list_complete(run_path)[: -max(keep, 1)]:
        shutil.rmtree(old, ignore_errors=True)
    if sharded:
        _prune_sharded(run_path)
    return final


def _save_sharded(run_path: str, trainer) -> str:
    """Writes this process's shards of the trainer's arrays into the step's sharded folder in
    process 0's run directory; returns that folder relative to `run_path` (for state.json)."""
    primary = multihost.primary_run_path(run_path)
    folder = os.path.join(
        run_dir.checkpoints_dir(primary), run_dir.sharded_checkpoint_name(trainer.step)
    )
    os.makedirs(run_dir.checkpoints_dir(run_path), exist_ok=True)
    sharded_checkpoint.save(
        folder, {"trainable": trainer.trainable, "optimizer": trainer.optimizer_state}
    )
    return os.path.relpath(folder, run_path)


def _sharded_folders(run_path: str) -> dict[int, list[str]]:
    """This run directory's sharded folders (process 0's), by step; Orbax's temporary ones
    (`sharded-000040.orbax-checkpoint-tmp-...`) included under their step."""
    root = run_dir.checkpoints_dir(run_path)
    if not os.path.isdir(root):
        return {}
    prefix = run_dir.CHECKPOINT_SHARDED_PREFIX
    found = {}
    for name in os.listdir(root):
        digits = name[len(prefix) : len(prefix) + 6]
        if name.startswith(prefix) and digits.isdigit():
            found.setdefault(int(digits), []).append(os.path.join(root, name))
    return found


def _prune_sharded(run_path: str) -> None:
    """Deletes the sharded folders of steps whose checkpoint was pruned (process 0's run
    directory holds them; elsewhere there are none)."""
    kept = {os.path.basename(path) for path in list_complete(run_path)}
    for step, paths in _sharded_folders(run_path).items():
        if run_dir.checkpoint_name(step) not in kept:
            for path in paths:
                shutil.rmtree(path, ignore_errors=True)


def save_best(run_path: str, trainer) -> str:
    """Writes `trainer`'s trainable weights as the best step's (`checkpoints/best-NNNNNN/`),
    atomically as `save` does; returns the folder. A step written again (a resumed run
    redoing it) is replaced file by file, the same weights."""
    root = run_dir.checkpoints_dir(run_path)
    final = os.path.join(root, run_dir.best_checkpoint_name(trainer.step))
    partial_name = run_dir.partial_checkpoint_name(trainer.step, os.getpid()) + "-best"
    partial = os.path.join(root, partial_name)
    trainable_paths = [v.path for v in trainer.backbone.trainable_variables]
    arrays = {
        f"trainable/{path}": multihost.to_host(array)
        for path, array in zip(trainable_paths, trainer.trainable, strict=True)
    }
    record = {"step": trainer.step, "trainable_paths": trainable_paths}
    try:
        os.makedirs(partial, exist_ok=True)
        arrays_path = os.path.join(partial, ARRAYS_FILE)
        run_dir.write_atomically(arrays_path, lambda f: np.savez(f, **arrays), fsync=True)
        run_dir.write_atomically(os.path.join(partial, STATE_FILE), run_dir.json_text(record))
        if os.path.exists(final):
            _replace_files(partial, final)
        else:
            os.rename(partial, final)
        run_dir.fsync_directory(root)
    except OSError as error:
        shutil.rmtree(partial, ignore_errors=True)
        raise OSError(f"cannot write checkpoint {final}: {error.strerror or error}") from error
    return final


def prune_best(run_path: str, best_step: int | None) -> None:
    """Deletes the best-weights folders of steps other than `best_step` (call it right
    after a checkpoint that records `best_step` is saved)."""
    root = run_dir.checkpoints_dir(run_path)
    if not os.path.isdir(root):
        return
    keep = run_dir.best_checkpoint_name(best_step) if best_step is not None else None
    for name in os.listdir(root):
        if name.startswith(run_dir.CHECKPOINT_BEST_PREFIX) and name != keep:
            shutil.rmtree(os.path.join(root, name), ignore_errors=True)


def restore_best(run_path: str, trainer, best_step: int) -> None:
    """Puts the best step's trainable weights (`save_best`) into `trainer`, keeping its
    optimizer state and step (the run is over; only the weights are written after).

    Raises:
      ValueError: the folder is missing, damaged, or of other variables, naming it.
    """
    path = os.path.join(run_dir.checkpoints_dir(run_path), run_dir.best_checkpoint_name(best_step))
    state = run_dir.read_json(path, STATE_FILE)
    trainable_paths = [v.path for v in trainer.backbone.trainable_variables]
    if state is None or state.get("step") != best_step:
        raise ValueError(f"{path} is missing: the best step's weights cannot be kept")
    if state["trainable_paths"] != trainable_paths:
        raise ValueError(f"{path} is for other trainable variables")
    trainable, _ = _read_arrays(os.path.join(path, ARRAYS_FILE), trainable_paths, 0)
    trainer.set_state(trainable, trainer.optimizer_state, trainer.step)


def _replace_files(partial: str, final: str) -> None:
    """Moves a re-saved step's files over the old ones, arrays first: each rename is atomic
    and both versions hold the same step's weights, so `final` stays loadable throughout."""
    for name in (ARRAYS_FILE, STATE_FILE):
        os.replace(os.path.join(partial, name), os.path.join(final, name))
    run_dir.fsync_directory(final)
    os.rmdir(partial)


def list_complete(run_path: str) -> list[str]:
    """Complete checkpoints of a run, oldest first (partial writes are not listed)."""
    root = run_dir.checkpoints_dir(run_path)
    if not os.path.isdir(root):
        return []
    names = sorted(
        name
        for name in os.listdir(root)
        if name.startswith(PREFIX) and os.path.exists(os.path.join(root, name, STATE_FILE))
    )
    return [os.path.join(root, name) for name in names]


def latest(run_path: str) -> str | None:
    """The newest complete checkpoint of a run, or None."""
    complete = list_complete(run_path)
    return complete[-1] if complete else None


def latest_on_every_process(run_path: str) -> str | None:
    """The newest complete checkpoint that every process holds: `latest` on one process.

    On several hosts each process writes its own run directory's `state.json`, so a kill
    between two processes' writes of the same step leaves one a step ahead. Resuming each from
    its own newest would continue the processes from different steps (their collectives then
    mix two steps' weights), so the processes gather their newest steps and all resume from the
    oldest of them; a process ahead deletes its newer checkpoints first (they are redone).

    Every process must call it (it is a collective), also on a fresh run.

    Raises:
      ValueError: some processes have checkpoints and others none (a run resumed with more
        processes than it had), or a process lacks the step the others agreed on (its older
        checkpoints deleted by hand); naming each process's newest step.
    """
    import jax

    newest = latest(run_path)
    if jax.process_count() == 1:
        return newest
    steps = [_step_of(path) for path in list_complete(run_path)]
    mine = steps[-1] if steps else -1
    newest_steps = multihost.gather_ints([mine])[:, 0]
    common = int(newest_steps.min())
    if common < 0 < newest_steps.max():
        raise ValueError(
            f"the processes' newest checkpoints are at steps {newest_steps.tolist()} (-1: none): "
            "a run resumes on as many processes as it had, or on one"
        )
    holds = common < 0 or common in steps
    if not multihost.gather_ints([int(holds)])[:, 0].all():
        raise ValueError(
            f"the processes' newest checkpoints are at steps {newest_steps.tolist()} and not "
            f"every process holds step {common}: delete the checkpoints after the oldest step "
            "every process holds (or start again with --overwrite)"
        )
    if mine > common:
        for path in list_complete(run_path):
            if _step_of(path) > common:
                shutil.rmtree(path)
        remove_partial(run_path)  # the sharded arrays of the steps removed above
        print(
            f"Process {jax.process_index()}: checkpoint step {mine} is newer than step "
            f"{common}, the newest every process holds; resuming from step {common}",
            flush=True,
        )
    return latest(run_path)


def _step_of(checkpoint_path: str) -> int:
    """The step a `step-NNNNNN` checkpoint directory holds."""
    return int(os.path.basename(checkpoint_path)[len(PREFIX) :])


def remove_partial(run_path: str) -> None:
    """Deletes leftovers of checkpoint writes that were interrupted (also sharded arrays of a
    step after the newest complete checkpoint, which a resumed run writes again)."""
    root = run_dir.checkpoints_dir(run_path)
    if os.path.isdir(root):
        for name in os.listdir(root):
            if name.startswith(PARTIAL):
                shutil.rmtree(os.path.join(root, name), ignore_errors=True)
    newest = latest(run_path)
    newest_step = _step_of(newest) if newest else -1
    for step, paths in _sharded_folders(run_path).items():
        if step > newest_step:
            for path in paths:
                shutil.rmtree(path, ignore_errors=True)


def _read_arrays(arrays_path: str, trainable_paths: list[str], optimizer_count: int):
    """`(trainable, optimizer_state)` from a checkpoint's `state.npz`.

    Raises:
      ValueError: the file is damaged or lacks an array, naming it.
    """
    try:
        with np.load(arrays_path) as arrays:
            trainable = [arrays[f"trainable/{p}"] for p in trainable_paths]
            optimizer_state = [arrays[f"optimizer/{i:05d}"] for i in range(optimizer_count)]
    except (zipfile.BadZipFile, KeyError, ValueError, OSError, EOFError) as error:
        raise ValueError(f"{arrays_path} is damaged ({error}); delete that checkpoint") from None
    return trainable, optimizer_state


def restore(path: str, trainer) -> dict:
    """Loads a checkpoint into `trainer` (weights, optimizer state, step); returns its state.

    Raises:
      ValueError: when the checkpoint's variables do not match the trainer's model, naming
        the first difference (a checkpoint of another model or another LoRA setup), or when
        one of its files is damaged (cut short, not what it should be), naming the file.
    """
    state = run_dir.read_json(path, STATE_FILE)
    trainable_paths = [v.path for v in trainer.backbone.trainable_variables]
    if state["trainable_paths"] != trainable_paths:
        mismatch = sorted(set(state["trainable_paths"]) ^ set(trainable_paths))[:3]
        raise ValueError(f"checkpoint {path} is for other trainable variables: {mismatch}")
    if len(state["optimizer_paths"]) != len(trainer.optimizer_state):
        raise ValueError(f"checkpoint {path} has another optimizer state layout")
    if state.get("sharded"):
        folder = os.path.normpath(os.path.join(path, os.pardir, os.pardir, state["sharded"]))
        arrays = sharded_checkpoint.restore(
            folder, {"trainable": trainer.trainable, "optimizer": trainer.optimizer_state}
        )
        trainer.set_placed_state(arrays["trainable"], arrays["optimizer"], state["step"])
        return state
    trainable, optimizer_state = _read_arrays(
        os.path.join(path, ARRAYS_FILE), trainable_paths, len(trainer.optimizer_state)
    )
    for name, loaded, current in zip(trainable_paths, trainable, trainer.trainable, strict=True):
        if loaded.shape != tuple(current.shape):
            raise ValueError(
                f"checkpoint {path}: {name} has shape {loaded.shape}, "
                f"the model expects {tuple(current.shape)}"
            )
    trainer.set_state(trainable, optimizer_state, state["step"])
    return state
