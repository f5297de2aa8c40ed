"""Our side of the train_speed benchmark: Gemma 3 270M with gemma_tune's LoRA and `Trainer`."""

from __future__ import annotations

import statistics
import time

import numpy as np
from train_speed_common import MATMUL_SIZE, RANK, matmul_rate, train_settings


class Ours:
    """Gemma 3 270M (or `preset`) with gemma_tune's LoRA and its compiled `Trainer` step."""

    def __init__(self, preset: str = "gemma3_270m_gguf", remat: str = "auto"):
        import jax

        import gemma_tune  # JAX backend

        gemma_tune.import_guard.install()  # as in `python -m gemma_tune.train`: no TensorFlow
        from gemma_tune import model
        from gemma_tune.training import optimizer, trainer

        self.jax = jax
        self.loaded = model.load(preset, "float32")
        model.enable_lora(self.loaded, RANK)
        self.remat = model.remat_mode(remat)  # what `train.remat` gives a run (auto: matmuls)
        model.enable_remat(self.loaded, self.remat)
        self.tuner = trainer.Trainer(
            self.loaded.causal_lm, optimizer.make(train_settings(), total_steps=1000)
        )
        backbone = self.loaded.backbone
        self.dims = {
            name: int(getattr(backbone, name))
            for name in (
                "num_layers",
                "hidden_dim",
                "intermediate_dim",
                "num_query_heads",
                "num_key_value_heads",
                "head_dim",
                "vocabulary_size",
            )
        }
        self.trainable_params = model.parameter_counts(self.loaded)[1]
        self._backbone_forward = jax.jit(
            lambda trainable, frozen, inputs: backbone.stateless_call(
                trainable, frozen, inputs, training=False
            )[0]
        )

    def prepare(self, rows: np.ndarray) -> dict:
        self.flat = {
            "token_ids": rows[:, :-1],
            "padding_mask": np.ones(rows[:, :-1].shape, bool),
            "target_ids": rows[:, 1:],
            "target_weights": np.ones(rows[:, 1:].shape, np.float32),
        }
        self.batch = {key: value[None] for key, value in self.flat.items()}  # [accum=1, B, L]
        start = time.perf_counter()
        first_loss = self.step()  # compiles; the update starts from LoRA B = 0 (the base model)
        first_step_s = time.perf_counter() - start
        # The program the step runs, as XLA counts it.
        start = time.perf_counter()
        lowered = self.tuner._train_step.lower(
            self.tuner.trainable,
            self.tuner.optimizer_state,
            self.tuner.frozen,
            self.batch,
            np.int32(0),
        )
        cost = lowered.compile().cost_analysis()
        cost = cost[0] if isinstance(cost, list) else cost
        return {
            "first_step_s": first_step_s,
            "first_loss": first_loss,
            "xla_flops": float((cost or {}).get("flops", -1)),
            "cost_analysis_s": time.perf_counter() - start,
        }

    def step(self) -> float:
        return self.tuner.train_step(self.batch)["loss"]  # float(): blocks on the result

    def breakdown(self, repeats: int) -> dict:
        """Median seconds of the backbone forward alone and of forward + loss (no gradient)."""
        inputs = {key: self.flat[key] for key in ("token_ids", "padding_mask")}
        tuner = self.tuner

        def backbone_only():
            self._backbone_forward(tuner.trainable, tuner.frozen, inputs).block_until_ready()

        timings = {}
        for name, run in (
            ("backbone_forward_s", backbone_only),
            ("forward_loss_s", lambda: tuner.evaluate([self.flat])),
        ):
            run()  # compile
            times = []
            for _ in range(repeats):
                start = time.perf_counter()
                run()
                times.append(time.perf_counter() - start)
            timings[name] = statistics.median(times)
        return timings

    def matmul(self) -> float:
        jnp = self.jax.numpy
        a = jnp.asarray(np.random.default_rng(0).standard_normal((MATMUL_SIZE,) * 2, np.float32))
        matmul = self.jax.jit(jnp.matmul)
        return matmul_rate(lambda: matmul(a, a).block_until_ready())

    def versions(self) -> dict:
        import keras
        import keras_hub

        return {
            "jax": self.jax.__version__,
            "keras": keras.__version__,
            "keras_hub": keras_hub.__version__,
        }
