"""Data and model parallelism over a device mesh, for Gemma 1, 2 and 3 alike.

    python -m gemma_tune.train --experiment=dolly_lora4 --set mesh.data=2 --set mesh.model=4 \
        --set train.batch_size=2 --set train.eval_batch_size=2          # 8 devices: 2 x 4
    python -m gemma_tune.train --experiment=dolly_lora4 --set mesh.model=-1   # model parallel

The mesh has two axes, "data" and "model" (`mesh.data` x `mesh.model` devices, default 1 x 1:
one device; -1 on one axis takes all the devices the other leaves). Batches are split along
"data". Every weight larger than `MIN_SHARDED_SIZE` elements is split along "model" on its
largest dimension that the axis divides, and kept whole otherwise; the same rule places each
optimizer slot like its weight (same shape, same layout). A rule on shapes rather than on
layer names works for every Gemma generation, including Gemma 3 (KerasHub has no layout for
it), and the number of key/value heads never has to divide the model axis: attention kernels
are split along their largest dimension, the hidden one (FFN kernels along the intermediate
one, the embedding along the vocabulary). XLA's SPMD partitioner inserts the communication;
the step's arithmetic is the same, so sharded and single-device runs give the same losses up
to float rounding (tested on 8 fake CPU devices:
`XLA_FLAGS=--xla_force_host_platform_device_count=8`).
"""

from __future__ import annotations

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

DATA, MODEL = "data", "model"
# Smaller arrays (norm scales, LoRA factors, scalars) are replicated: splitting them saves
# nothing and costs communication.
MIN_SHARDED_SIZE = 1 << 16


class MeshError(ValueError):
    """The mesh does not fit the devices or the batch sizes; the message says how to fix it."""


def make_mesh(data: int = 1, model: int = 1, devices=None) -> Mesh | None:
    """A ("data", "model") mesh over the first `data * model` devices, or None for one device.

    Args:
      data: devices along the data axis; -1 takes all devices not used by `model`.
      model: devices along the model axis; -1 takes all devices not used by `data`.
      devices: the devices to use (default: all of `jax.devices()`).

    Raises:
      MeshError: when the axes need more devices than there are, or -1 does not divide them.
    """
    devices = list(devices if devices is not None else jax.devices())
    count = len(devices)
    if data == -1 and model == -1:
        raise MeshError("mesh.data and mesh.model cannot both be -1")
    if data == -1:
        data = count // model if model > 0 and count % model == 0 else 0
    if model == -1:
        model = count // data if data > 0 and count % data == 0 else 0
    if data < 1 or model < 1 or data * model > count:
        raise MeshError(
            f"mesh.data x mesh.model must be at most the {count} available devices "
            f"(got {data} x {model}); -1 on one axis takes the devices the other leaves"
        )
    if data * model == 1:
        return None
    return Mesh(np.array(devices[: data * model]).reshape(data, model), (DATA, MODEL))


def weight_spec(shape: tuple[int, ...], model_size: int) -> PartitionSpec:
    """How one weight (or optimizer slot) of `shape` is laid out on the "model" axis."""
    if model_size <= 1 or int(np.prod(shape, dtype=np.int64)) < MIN_SHARDED_SIZE:
        return PartitionSpec()
    for axis in sorted(range(len(shape)), key=lambda a: -shape[a]):
        if shape[axis] % model_size == 0:
            spec = [None] * len(shape)
            spec[axis] = MODEL
            return PartitionSpec(*spec)
    return PartitionSpec()


def place_weights(arrays, mesh: Mesh | None):
    """Puts each array on the mesh with `weight_spec`'s layout (unchanged without a mesh)."""
    if mesh is None:
        return list(arrays)
    if jax.process_count() > 1:  # every process places its devices' parts of the same values
        arrays = [np.asarray(array) for array in arrays]
    model_size = mesh.shape[MODEL]
    return [
        jax.device_put(array, NamedSharding(mesh, weight_spec(tuple(array.shape), model_size)))
        for array in arrays
    ]


def place_batch(batch: dict, mesh: Mesh | None, batch_axis: int = 0) -> dict:
    """Splits every array of a batch along `batch_axis` over the "data" axis.

    Raises:
      ValueError: when the batch does not divide evenly over the data axis.
    """
    if mesh is None:
        return batch
    data_size = mesh.shape[DATA]
    placed = {}
    for name, array in batch.items():
        if array.shape[batch_axis] % data_size:
            raise ValueError(
                f"a batch of {array.shape[batch_axis]} rows does not split over "
                f"mesh.data={data_size} devices; make train.batch_size and "
                "train.eval_batch_size multiples of it"
            )
        spec = [None] * array.ndim
        spec[batch_axis] = DATA
        placed[name] = jax.device_put(array, NamedSharding(mesh, PartitionSpec(*spec)))
    return placed


def check_batch_sizes(mesh: Mesh | None, *batch_sizes: int) -> None:
    """Fails early (before any model loads) when a batch size does not split over the mesh.

    Raises:
      MeshError: naming the batch size and the data axis.
    """
    if mesh is None:
        return
    data_size = mesh.shape[DATA]
    for size in batch_sizes:
        if size % data_size:
            raise MeshError(
                f"batch size {size} does not split over mesh.data={data_size} devices; make "
                "train.batch_size and train.eval_batch_size multiples of it, or set mesh.data"
            )


def describe(mesh: Mesh | None) -> str:
    """One line for the run's log: the mesh, or "1 device" (and how many are unused)."""
    count = len(jax.devices())
    if mesh is None:
        unused = f" of {count} (set mesh.data / mesh.model to use more)" if count > 1 else ""
        return f"1 device{unused} ({jax.devices()[0].platform})"
    platform = mesh.devices.flat[0].platform
    axes = f"data {mesh.shape[DATA]} x model {mesh.shape[MODEL]}"
    return f"{mesh.devices.size} {platform} devices: {axes}"
