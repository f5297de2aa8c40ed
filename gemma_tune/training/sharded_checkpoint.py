"""The arrays of a full fine-tuning checkpoint on several hosts, written by every host, each
its own shards, with Orbax: no host gathers the whole model.

    RUN_DIR/checkpoints/sharded-000040/      process 0's run directory (every host writes here)
      ocdbt.process_0/ ocdbt.process_1/ ...  each host's shards of every array
      _METADATA, manifest.ocdbt, ...         Orbax's index, written by process 0
    RUN_DIR(.processN)/checkpoints/step-000040/state.json   "sharded": where the arrays are

With `method=full` and `mesh.distributed=true` the weights and the optimizer state (three
times the model in float32) are split over the hosts' devices, and gathering them for a
checkpoint (`multihost.to_host`, what a LoRA checkpoint does: its adapters are small) would put
the whole state in every host's memory. Instead every process calls `save` with the same
folder, in process 0's run directory, which must therefore be on a disk every host can reach
(a shared file system or a bucket path, as Orbax always needs for multi-host checkpoints);
Orbax writes each host's shards beside the others and commits the folder (a temporary name
renamed at the end) once all are written. `restore` reads them back into arrays laid out as
the trainer's are now: on the same mesh each host reads its own shards and the resume is exact;
Orbax also reshards onto another layout. Install with `pip install 'gemma_tune[multihost]'`
(orbax-checkpoint, tensorstore); it is imported only here, only for such runs.
"""

from __future__ import annotations

import os

import jax

INSTALL_HINT = "pip install 'gemma_tune[multihost]' (orbax-checkpoint)"


def _orbax():
    """The `orbax.checkpoint` module.

    Raises:
      ValueError: it is not installed, saying how to install it.
    """
    try:
        import orbax.checkpoint as ocp
    except ImportError as error:
        raise ValueError(
            "method=full with mesh.distributed=true writes sharded checkpoints with Orbax, "
            f"which is not installed ({error}); {INSTALL_HINT}"
        ) from None
    return ocp


def check_installed() -> None:
    """Raises ValueError, saying how to install it, when Orbax is missing (call it before
    training, not at the first checkpoint)."""
    _orbax()


def is_complete(directory: str) -> bool:
    """Whether `directory` holds a committed Orbax checkpoint (Orbax writes under a temporary
    name and renames it at the end, after its metadata)."""
    return os.path.isfile(os.path.join(directory, "_CHECKPOINT_METADATA"))


def save(directory: str, arrays: dict[str, list]) -> None:
    """Writes `arrays` (name -> list of `jax.Array`s, sharded over every process's devices)
    to `directory`; every process calls it with the same folder and writes only its own
    shards. A folder already complete is kept: it holds the same step's weights (a step saved
    again after its final validation).

    Raises:
      OSError: the folder cannot be written, naming it.
    """
    ocp = _orbax()
    if is_complete(directory):
        return
    checkpointer = ocp.StandardCheckpointer()
    try:
        checkpointer.save(os.path.abspath(directory), arrays)
        checkpointer.wait_until_finished()
    except (OSError, ValueError) as error:
        raise OSError(f"cannot write the sharded arrays {directory}: {error}") from error
    finally:
        checkpointer.close()


def restore(directory: str, like: dict[str, list]) -> dict[str, list]:
    """Reads `directory` into arrays of the shapes, dtypes and shardings of `like` (the
    trainer's current arrays): each process reads the shards its devices hold.

    Raises:
      ValueError: the folder is missing, incomplete, or of other shapes, naming it.
    """
    ocp = _orbax()
    if not is_complete(directory):
        raise ValueError(f"{directory} is missing or incomplete: this checkpoint cannot be resumed")
    target = jax.tree.map(
        lambda array: jax.ShapeDtypeStruct(array.shape, array.dtype, sharding=array.sharding),
        like,
    )
    checkpointer = ocp.StandardCheckpointer()
    try:
        return checkpointer.restore(os.path.abspath(directory), target)
    except (ValueError, KeyError, OSError) as error:
        raise ValueError(f"{directory} does not fit this model's arrays: {error}") from None
    finally:
        checkpointer.close()
