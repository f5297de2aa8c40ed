"""The tuning state and its one compiled JAX step (forward, masked loss, gradient
accumulation, clipping, AdamW), and validation; the loop around it is `gemma_tune.training.loop`.

The step is a pure function of (trainable weights, optimizer state, batch) built on Keras'
`stateless_call`/`stateless_apply`, so the whole update compiles once with XLA and runs
unchanged on CPU, GPU and TPU. Frozen weights are passed in, never copied out.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from gemma_tune.model import families, keras_compat, lora, vision
from gemma_tune.training import multihost, objectives, packing, sharding


class Trainer:
    """Holds the tuning state of one CausalLM and updates it one batch at a time.

    Args:
      causal_lm: a KerasHub CausalLM whose trainable variables (the LoRA factors) are tuned.
      optimizer: a Keras optimizer (see `gemma_tune.training.optimizer.make`); None for a
        Trainer that only evaluates.
      grad_clip_norm: clip the global gradient norm to this (0 disables clipping).
      max_targets_per_row: the most loss-carrying tokens in any row (`batching`); the LM head
        is computed for that many positions per row only. 0 computes it everywhere.
      logits_chunk_size: positions per LM-head chunk.
      mesh: a `sharding.make_mesh` mesh to split batches and weights over, or None.
      objective: what the step optimizes (`objectives.Supervised`, the default, or
        `objectives.Preference` for DPO).
    """

    def __init__(
        self,
        causal_lm,
        optimizer,
        grad_clip_norm: float = 0.0,
        max_targets_per_row: int = 0,
        logits_chunk_size: int = 256,
        mesh=None,
        objective=None,
    ):
        self.causal_lm = causal_lm
        self.objective = objective or objectives.Supervised()
        self.backbone = causal_lm.backbone
        self._family = families.of_backbone(self.backbone)
        self.optimizer = optimizer
        self.mesh = mesh
        self.step = 0
        self._max_targets_per_row = max_targets_per_row
        self._chunk_size = logits_chunk_size
        self.optimizer_state = []
        if optimizer is not None:
            self.schedule = keras_compat.learning_rate_schedule(optimizer)
            optimizer.build(self.backbone.trainable_variables)
            # Not copied: nothing reads the optimizer's own Keras variables while training, so
            # the step may donate their buffers and the state is held once (AdamW's two
            # moments are 2x the trainable weights: 9 GiB for full fine-tuning of Gemma 2B in
            # bf16). `sync_to_model` writes them back.
            self.optimizer_state = sharding.place_weights(
                [v.value for v in optimizer.variables], mesh
            )
        self.load_from_model()
        self._embedding_slot = self._find_embeddings()
        self._embedding_scale_slot = self._find_embedding_scale()
        self._dropout_seeds = [
            index
            for index, variable in enumerate(self.backbone.non_trainable_variables)
            if variable.path.endswith(lora.DROPOUT_SEED)
        ]
        self._grad_clip_norm = float(grad_clip_norm)
        self._train_step = jax.jit(self._step, donate_argnums=(0, 1))
        self._eval_step = jax.jit(lambda t, f, b: self._sums(t, f, b, training=False))
        self._pair_log_probs = jax.jit(
            lambda t, f, b: self.objective.pair_log_probs(
                self._head_args(t, f, b, training=False), b
            )
        )

    def load_from_model(self) -> None:
        """(Re)reads the weights from the Keras model, e.g. after loading an adapter into it."""
        # Copies: the step donates these buffers, which must not be the Keras variables' own.
        self.trainable = sharding.place_weights(
            [jnp.array(v.value, copy=True) for v in self.backbone.trainable_variables], self.mesh
        )
        self.frozen = sharding.place_weights(
            [v.value for v in self.backbone.non_trainable_variables], self.mesh
        )

    def _find_embeddings(self) -> tuple[str, int]:
        """Where the tied embedding matrix sits: ("trainable" | "frozen", index)."""
        target = id(self.backbone.token_embedding.embeddings)
        for group, variables in (
            ("trainable", self.backbone.trainable_variables),
            ("frozen", self.backbone.non_trainable_variables),
        ):
            for index, variable in enumerate(variables):
                if id(variable) == target:
                    return group, index
        raise RuntimeError("the backbone's token embedding matrix was not found")

    def _find_embedding_scale(self) -> int | None:
        """The frozen index of an int8 embedding's per-token scale (`gemma_tune.model.quantize`)."""
        scale = getattr(self.backbone.token_embedding, "embeddings_scale", None)
        if scale is None:
            return None
        paths = [v.path for v in self.backbone.non_trainable_variables]
        return paths.index(scale.path)

    def _head_args(self, trainable, frozen, batch, training=True, counter=None) -> dict:
        """The backbone's final hidden states for `batch` and the LM head's other arguments
        (`loss.head_sums` / `loss.head_row_log_probs`)."""
        if training and counter is not None:
            frozen = lora.set_dropout_counter(frozen, self._dropout_seeds, counter)
        segment_ids = batch.get("segment_ids")
        inputs = self._family.backbone_inputs(
            batch["token_ids"], batch["padding_mask"], packing.positions(segment_ids)
        )
        inputs.update(vision.backbone_inputs(self.backbone, batch))
        with packing.segment_attention(self.backbone, segment_ids):
            hidden, _ = self.backbone.stateless_call(trainable, frozen, inputs, training=training)
        group, index = self._embedding_slot
        embeddings = (trainable if group == "trainable" else frozen)[index]
        scale_slot = self._embedding_scale_slot
        rows = batch["token_ids"].shape[0]
        return dict(
            hidden=hidden,
            embeddings=embeddings,
            target_ids=batch["target_ids"],
            target_weights=batch["target_weights"],
            embedding_scale=None if scale_slot is None else frozen[scale_slot],
            soft_cap=self.backbone.token_embedding.logit_soft_cap,
            max_targets=rows * self._max_targets_per_row,
            chunk_size=self._chunk_size,
            embedding_grad=group == "trainable",
        )

    def _sums(self, trainable, frozen, batch, training=True, counter=None) -> dict:
        """The objective's sums (loss and metrics) of one batch."""
        head_args = self._head_args(trainable, frozen, batch, training, counter)
        return self.objective.sums(head_args, batch)

    def _step(self, trainable, optimizer_state, frozen, batch, step):
        def loss_sum_fn(weights, micro_batch, counter):
            sums = self._sums(weights, frozen, micro_batch, counter=counter)
            return sums["loss"], sums

        grad_fn = jax.value_and_grad(loss_sum_fn, has_aux=True)
        micro_batches = batch["token_ids"].shape[0]

        def accumulate(carry, inputs):
            micro_batch, micro_index = inputs
            grads, totals = carry
            (_, micro_sums), micro_grads = grad_fn(
                trainable, micro_batch, step * micro_batches + micro_index
            )
            grads = jax.tree.map(jnp.add, grads, micro_grads)
            totals = {name: totals[name] + micro_sums[name] for name in totals}
            return (grads, totals), None

        zero = jnp.zeros((), jnp.float32)
        start = (
            jax.tree.map(jnp.zeros_like, trainable),
            {name: zero for name in self.objective.sum_names},
        )
        (grads, totals), _ = jax.lax.scan(
            accumulate, start, (batch, jnp.arange(micro_batches, dtype=jnp.int32))
        )
        denominator = jnp.maximum(totals[self.objective.count], 1.0)
        grads = jax.tree.map(lambda g: g / denominator.astype(g.dtype), grads)
        grad_norm = jnp.sqrt(sum(jnp.sum(jnp.square(g.astype(jnp.float32))) for g in grads))
        if self._grad_clip_norm > 0:
            scale = jnp.minimum(1.0, self._grad_clip_norm / (grad_norm + 1e-6))
            grads = [g * scale.astype(g.dtype) for g in grads]
        trainable, optimizer_state = self.optimizer.stateless_apply(
            optimizer_state, grads, trainable
        )
        metrics = {**self.objective.means(totals), "grad_norm": grad_norm}
        return trainable, optimizer_state, metrics

    def train_step(self, batch: dict[str, np.ndarray]) -> dict[str, float]:
        """Applies one optimizer update for a `[accumulation, batch, L]` batch; returns metrics."""
        self._check_target_budget(batch)
        self.trainable, self.optimizer_state, metrics = self._train_step(
            self.trainable,
            self.optimizer_state,
            self.frozen,
            sharding.place_batch(batch, self.mesh, batch_axis=1),
            jnp.asarray(self.step, jnp.int32),
        )
        self.step += 1
        return {name: float(value) for name, value in metrics.items()}

    def _check_target_budget(self, batch) -> None:
        if self._max_targets_per_row:
            per_row = (np.asarray(batch["target_weights"]) > 0).sum(axis=-1)
            if per_row.max() > self._max_targets_per_row:
                raise ValueError(
                    f"a row has {per_row.max()} target tokens, more than max_targets_per_row="
                    f"{self._max_targets_per_row}; compute it with batching.max_targets_per_row"
                )

    def evaluate(self, batches) -> dict[str, float]:
        """The objective's validation metrics over an iterable of batches, without dropout
        (supervised: mean loss, accuracy and perplexity over weighted tokens)."""
        totals = dict.fromkeys(self.objective.sum_names, 0.0)
        for batch in batches:
            self._check_target_budget(batch)
            sums = self._eval_step(
                self.trainable, self.frozen, sharding.place_batch(batch, self.mesh)
            )
            for name in totals:
                totals[name] += float(sums[name])
        return self.objective.validation_metrics(totals)

    def pair_log_probs(self, batch) -> tuple[np.ndarray, np.ndarray]:
        """`(chosen, rejected)`: each pair slot's summed answer-token log-probabilities under
        the current weights, without dropout (`objectives.Preference.pair_log_probs`, packed
        batches included): the DPO reference pass."""
        self._check_target_budget(batch)
        values = self._pair_log_probs(
            self.trainable, self.frozen, sharding.place_batch(batch, self.mesh)
        )
        return tuple(multihost.to_host(side) for side in values)

    def set_state(self, trainable, optimizer_state, step: int) -> None:
        """Replaces the tuning state (from a checkpoint), keeping each array's dtype."""
        self.trainable = sharding.place_weights(
            [jnp.asarray(a, c.dtype) for a, c in zip(trainable, self.trainable, strict=True)],
            self.mesh,
        )
        self.optimizer_state = sharding.place_weights(
            [
                jnp.asarray(a, c.dtype)
                for a, c in zip(optimizer_state, self.optimizer_state, strict=True)
            ],
            self.mesh,
        )
        self.step = int(step)

    def set_placed_state(self, trainable, optimizer_state, step: int) -> None:
        """Replaces the tuning state with arrays already laid out on this trainer's devices (a
        sharded checkpoint read back shard by shard, which no host holds whole)."""
        self.trainable, self.optimizer_state = list(trainable), list(optimizer_state)
        self.step = int(step)

    def learning_rate(self) -> float:
        """The learning rate the next step will use."""
        if callable(self.schedule):
            return float(self.schedule(self.step))
        return float(self.schedule)

    def sync_to_model(self) -> None:
        """Writes the tuned weights back into the Keras model's variables (gathered onto one
        device when training was sharded, where the model's generation runs)."""

        def gathered(value):
            return multihost.to_host(value) if self.mesh is not None else value

        for variable, value in zip(self.backbone.trainable_variables, self.trainable, strict=True):
            variable.assign(gathered(value))
        for variable, value in zip(self.optimizer.variables, self.optimizer_state, strict=True):
            variable.assign(gathered(value))


def eval_batches(encoded, batch_size: int, sequence_length: int, pad_id: int, limit: int = 0):
    """Yields `[batch_size, L]` validation batches of supervised examples (at most `limit`
    batches when positive)."""
    return objectives.Supervised().eval_batches(encoded, batch_size, sequence_length, pad_id, limit)
