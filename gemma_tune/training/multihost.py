"""Training on several hosts at once (a TPU pod slice, several GPU machines) with
`jax.distributed`: one process per host, every device of every host in one mesh.

    # on every host, the same command (TPU pods, SLURM and Open MPI need no more):
    python -m gemma_tune.train --experiment=dolly_lora4 --set mesh.distributed=true \\
        --set mesh.data=-1
    # elsewhere, name the coordinator (process 0's host:port), the count and each process id:
    ... --set mesh.coordinator=10.0.0.1:1234 --set mesh.num_processes=2 --set mesh.process_id=0

Every process reads the same data in the same order (the order is a function of the seed), so
each one can place its own devices' part of every batch and weight from identical host
arrays; XLA's collectives do the rest. Each process writes a complete run directory: process
0 the one asked for, process N `<workdir>.processN` (identical results; on hosts without a
shared disk each resumes from its own checkpoints), and is its only writer, holding its lock
(`gemma_tune.runs.lock`). Arrays spread over other hosts' devices are gathered
(`process_allgather`) before they are saved, so a checkpoint resumes on any device layout:
a run stopped on two hosts can continue on one (`mesh.*` may change on resume;
tests/reliability_multihost_test.py). Full fine-tuning (`method=full`) is the exception: its
checkpoint arrays are written sharded, each host its own part, into process 0's run directory
(`training/sharded_checkpoint.py`), which all hosts must reach.
"""

from __future__ import annotations

import jax
import numpy as np

from gemma_tune.training import sharding


def initialize(mesh_config) -> None:
    """Starts `jax.distributed` when `mesh.distributed` is set; must run before any JAX
    computation. Coordinator, process count and id come from the config where given, else
    from the environment (Cloud TPU, SLURM, Open MPI).

    Raises:
      sharding.MeshError: when the mesh is one device (nothing would be shared).
    """
    if not mesh_config.distributed:
        return
    if mesh_config.data == 1 and mesh_config.model == 1:
        raise sharding.MeshError(
            "mesh.distributed=true with a one-device mesh would train the same model on every "
            "host separately; set mesh.data=-1 (data parallel over all hosts' devices) or "
            "mesh.model"
        )
    # CPU-only processes (tests, a CPU cluster) need a collectives library across processes.
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(
        coordinator_address=mesh_config.coordinator or None,
        num_processes=mesh_config.num_processes or None,
        process_id=mesh_config.process_id if mesh_config.process_id >= 0 else None,
    )
    print(
        f"Process {jax.process_index()} of {jax.process_count()}: "
        f"{jax.local_device_count()} local of {jax.device_count()} devices",
        flush=True,
    )


def run_path(workdir: str) -> str:
    """This process's run directory: `workdir` on process 0, `workdir.processN` elsewhere."""
    index = jax.process_index()
    return workdir if index == 0 else f"{workdir}.process{index}"


def primary_run_path(run_path: str) -> str:
    """Process 0's run directory, from this process's `run_path` (`run_path(workdir)`)."""
    suffix = f".process{jax.process_index()}"
    if jax.process_index() and run_path.endswith(suffix):
        return run_path[: -len(suffix)]
    return run_path


def barrier(name: str) -> None:
    """Waits until every process reaches the barrier called `name` (no-op on one process)."""
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(name)


def gather_ints(values: list[int]) -> np.ndarray:
    """Every process's `values` (the same length on each), as a `[processes, len(values)]`
    array; on one process just `[values]`. Used to agree on a step before resuming."""
    local = np.asarray(values, dtype=np.int64)
    if jax.process_count() == 1:
        return local[None]
    from jax.experimental import multihost_utils

    return np.asarray(multihost_utils.process_allgather(local)).reshape(jax.process_count(), -1)


def to_host(array) -> np.ndarray:
    """A NumPy copy of `array`, gathered from every process when it spans other hosts."""
    if isinstance(array, jax.Array) and not array.is_fully_addressable:
        from jax.experimental import multihost_utils

        return np.asarray(multihost_utils.process_allgather(array, tiled=True))
    return np.asarray(array)
