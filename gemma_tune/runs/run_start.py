"""Starting a run directory: creating it, claiming an unfinished run of the same config to
resume it, or clearing a start that failed before its first checkpoint; and the settings that
may differ on a resume (`RESUMABLE_CHANGES`). The files themselves are named in
`gemma_tune.runs.run_dir`; call `prepare` with the directory's `gemma_tune.runs.lock.RunLock`
held.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile

from gemma_tune.runs import run_dir

# Settings that may change between a stop and a resume: the device layout (more or fewer
# devices or hosts). A checkpoint holds whole arrays gathered to the host and every layout
# trains on the same batches, so the run continues, equal within float rounding (the order
# of the sums changes with the layout). The trackers fed (`train.report_to`) change nothing
# the run computes, so they may change too.
RESUMABLE_CHANGES = ("mesh.", "train.report_to", "train.tensorboard")


def has_checkpoint(run_path: str) -> bool:
    """Whether the run saved a complete checkpoint (one it could resume from)."""
    root = run_dir.checkpoints_dir(run_path)
    if not os.path.isdir(root):
        return False
    return any(
        name.startswith(run_dir.CHECKPOINT_PREFIX)
        and os.path.exists(os.path.join(root, name, run_dir.CHECKPOINT_STATE))
        for name in os.listdir(root)
    )


def create(path: str) -> str:
    """Creates the run directory; refuses one that already holds a run's results.

    Raises:
      FileExistsError: when `path` already has a `config.json`.
      PermissionError / OSError: when it cannot be created or written, with the path named.
    """
    if os.path.exists(os.path.join(path, run_dir.CONFIG)):
        raise FileExistsError(
            f"{path} already holds a run ({run_dir.CONFIG} exists); choose another --workdir"
        )
    make_writable_dir(path)
    return path


def make_writable_dir(path: str) -> None:
    """Creates `path` if needed and checks that files can be written into it.

    Raises:
      OSError: naming the run directory and why (a file in the way, no permission).
    """
    try:
        os.makedirs(path, exist_ok=True)
        probe_fd, probe = tempfile.mkstemp(prefix=".write_test.", dir=path)
        os.close(probe_fd)
        os.remove(probe)
    except OSError as error:
        raise OSError(f"cannot write the run directory {path}: {error.strerror}") from error


def prepare(path: str, config_dict: dict, overwrite: bool = False) -> bool:
    """Creates a run directory, or reopens an unfinished run of the same config to resume it.

    A run of another config that stopped before its first checkpoint (a start that failed)
    has nothing to resume: its files are removed and the directory starts over. Call it with
    the directory's `lock.RunLock` held.

    Returns:
      True when `path` holds an unfinished run of this very config, its device layout
      (`RESUMABLE_CHANGES`) aside; the caller resumes it and rewrites its config.

    Raises:
      FileExistsError: `path` holds a finished run, or a run of another config that saved a
        checkpoint (the keys that differ are named), and `overwrite` is False.
      OSError: the directory cannot be created or written.
    """
    if os.path.exists(os.path.join(path, run_dir.CONFIG)):
        if overwrite:
            print(f"Deleting the run in {path} (--overwrite) ...", file=sys.stderr, flush=True)
            remove_run_files(path)
        elif run_dir.is_finished(path):
            raise FileExistsError(
                f"{path} holds a finished run; choose another --workdir or pass --overwrite"
            )
        else:
            saved = run_dir.read_config(path)
            wanted = json.loads(json.dumps(config_dict, default=str))
            differences = [
                key for key in _differences(saved, wanted) if not key.startswith(RESUMABLE_CHANGES)
            ]
            if not differences:
                return True
            if has_checkpoint(path):
                raise FileExistsError(
                    f"{path} holds an unfinished run of another config (differs in "
                    f"{', '.join(differences[:5])}); choose another --workdir, pass --overwrite, "
                    f"or continue that run with --resume={path}"
                )
            print(
                f"{path} holds a start of another config that stopped before its first "
                f"checkpoint (differs in {', '.join(differences[:5])}); starting over",
                file=sys.stderr,
                flush=True,
            )
            remove_run_files(path)
    create(path)
    return False


def remove_run_files(path: str) -> None:
    """Deletes what a run wrote into `path` (`RUN_FILES`, and temporary files a killed write
    left), keeping the folder, its lock and anything else it holds."""
    leftovers = [n for n in os.listdir(path) if n.startswith(".") and n.endswith(".tmp")]
    for name in (*run_dir.RUN_FILES, *leftovers):
        target = os.path.join(path, name)
        if os.path.isdir(target) and not os.path.islink(target):
            shutil.rmtree(target)
        elif os.path.lexists(target):
            os.remove(target)


def _differences(saved, wanted, prefix: str = "") -> list[str]:
    if isinstance(saved, dict) and isinstance(wanted, dict):
        keys = sorted(set(saved) | set(wanted))
        return [
            difference
            for key in keys
            for difference in _differences(saved.get(key), wanted.get(key), f"{prefix}{key}.")
        ]
    return [] if saved == wanted else [prefix.rstrip(".")]
