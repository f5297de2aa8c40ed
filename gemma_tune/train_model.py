"""The model side of a `gemma_tune.train` run: the device mesh, the model prepared for its
tuning method and its parameter counts, the trainer (with the DPO reference, restored from the
newest checkpoint when resuming) and the adapter saved at the end.
"""

from __future__ import annotations

from gemma_tune import train_data


def make_mesh(config):
    """The device mesh, checked against the batch sizes."""
    from gemma_tune.training import sharding

    mesh = sharding.make_mesh(config.mesh.data, config.mesh.model)
    sharding.check_batch_sizes(mesh, config.train.batch_size, config.train.eval_batch_size)
    print(f"Devices: {sharding.describe(mesh)}", flush=True)
    return mesh


def prepare_model(config):
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
            remat=model.remat_mode(config.train.remat),
        )
    except ValueError as error:
        if init_from is None:
            raise
        raise ValueError(f"train.init_from={config.train.init_from}: {error}") from error
    if init_from is not None:
        print(f"Starting from the weights in {init_from}", flush=True)
    total, trainable = parameter_counts(config, prepared)
    print(
        f"Model {prepared.loaded.preset}: {total:,} parameters, {trainable:,} trainable "
        f"({100 * trainable / total:.3f}%): {model.describe_tuning(config)}",
        flush=True,
    )
    return prepared


def parameter_counts(config, prepared) -> tuple[int, int]:
    """`(total, trainable)`: the base's parameters plus the adapters' (full fine-tuning adds
    none), and those that train."""
    from gemma_tune import model

    _, trainable = model.parameter_counts(prepared.loaded)
    return prepared.base_parameters + (trainable if config.method != "full" else 0), trainable


def make_trainer(
    config, loaded, encoded: train_data.Encoded, mesh, run_path: str, resuming: bool, pad_id: int
):
    """The trainer (objective, optimizer and compiled step on the mesh), the DPO reference
    attached to the pairs, restored from the newest checkpoint when resuming; returns it and
    the loop state to resume (or None)."""
    from gemma_tune.evaluation import progress_generations
    from gemma_tune.runs import metrics_log
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
        metrics_log.truncate_metrics(run_path, tuner.step if latest else -1, validated)
        progress_generations.truncate(run_path, tuner.step if latest else -1, validated)
    return tuner, resume_state


def save_adapter(config, loaded, run_path: str) -> None:
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
