"""Loss, token accuracy and perplexity of a model on reference responses, outside training.

`python -m gemma_tune.evaluate` scores the base and the tuned model's loss on the same examples
it generates for; training gets the same numbers from its validation passes.
"""

from __future__ import annotations

from gemma_tune.training import trainer


class ReferenceLoss:
    """Measures the model's current weights on examples' reference responses.

    Args:
      causal_lm: the KerasHub CausalLM (its current variables are measured; call `reload`
        after changing them, e.g. after loading an adapter).
      chat_template: encodes examples exactly as training does (loss on model turns only).
      sequence_length: examples are truncated to this many tokens, as in training.
      batch_size: examples per forward pass.
    """

    def __init__(self, causal_lm, chat_template, sequence_length: int, batch_size: int = 4):
        self._template = chat_template
        self._length = sequence_length
        self._batch_size = batch_size
        self._tuner = trainer.Trainer(causal_lm, optimizer=None)

    def reload(self) -> None:
        """Picks up weights changed in the Keras model since the last call."""
        self._tuner.load_from_model()

    def __call__(self, examples) -> dict[str, float]:
        """`{"loss", "accuracy", "perplexity", "target_tokens"}` over the examples' reference
        tokens (examples whose response the sequence length cuts away count nothing)."""
        encoded = [self._template.encode(item, self._length) for item in examples]
        encoded = [item for item in encoded if item.target_weights.sum() > 0]
        if not encoded:
            return {}
        batches = trainer.eval_batches(
            encoded, self._batch_size, self._length, self._template.pad_id
        )
        return self._tuner.evaluate(batches)
