"""Adapters are keyed by layer path, restore the tuned model exactly, and refuse other bases."""

import numpy as np
import pytest

from gemma_tune import model
from gemma_tune.model import adapters


def _tuned(seed=0, rank=4, architecture="gemma3"):
    loaded = model.load(f"tiny:{architecture}", "float32", seed=seed)
    model.enable_lora(loaded, rank)
    rng = np.random.default_rng(1)
    for variable in loaded.causal_lm.trainable_variables:
        variable.assign(rng.normal(0, 0.1, variable.shape).astype(np.float32))
    return loaded


def _logits(loaded):
    ids = np.array([[2, 10, 20, 30, 40, 50]], np.int32)
    inputs = {"token_ids": ids, "padding_mask": np.ones_like(ids, bool)}
    return np.asarray(loaded.causal_lm(inputs))


def test_round_trip_restores_the_tuned_model(tmp_path):
    tuned = _tuned()
    adapters.save(tuned.causal_lm, str(tmp_path), {"base_preset": "tiny:gemma3", "rank": 4})
    fresh = model.load("tiny:gemma3", "float32", seed=0)
    model.enable_lora(fresh, 4)
    assert not np.allclose(_logits(fresh), _logits(tuned))
    metadata = adapters.load(fresh.causal_lm, str(tmp_path))
    np.testing.assert_allclose(_logits(fresh), _logits(tuned), rtol=1e-5, atol=1e-5)
    assert all("lora" in path for path in metadata["weights"])
    with np.load(tmp_path / adapters.WEIGHTS_FILE) as arrays:
        assert set(arrays.files) == {v.path for v in tuned.causal_lm.trainable_variables}


def test_refuses_a_different_base_model(tmp_path):
    adapters.save(_tuned(seed=0).causal_lm, str(tmp_path), {"base_preset": "tiny:gemma3"})
    other = model.load("tiny:gemma3", "float32", seed=5)
    model.enable_lora(other, 4)
    with pytest.raises(ValueError, match="other base weights"):
        adapters.load(other.causal_lm, str(tmp_path))


def test_refuses_a_different_rank_naming_the_weight(tmp_path):
    adapters.save(_tuned(rank=4).causal_lm, str(tmp_path), {"base_preset": "tiny:gemma3"})
    other = model.load("tiny:gemma3", "float32", seed=0)
    model.enable_lora(other, 2)
    with pytest.raises(ValueError, match="lora_kernel_a has shape"):
        adapters.load(other.causal_lm, str(tmp_path))
