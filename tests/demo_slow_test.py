"""The demo on the real Gemma 3 270M: a shortened run still beats the base model (slow)."""

import json

import pytest

from gemma_tune import config as config_lib
from gemma_tune import train


@pytest.mark.slow
def test_short_demo_run_beats_the_base_model(tmp_path):
    # The full 40 training steps (the learning-rate schedule is part of the recipe); fewer
    # generated and scored examples than the demo, to keep CI short.
    config = config_lib.load("demo", ["eval.limit=16", "samples.count=2", "train.eval_batches=4"])
    run_path = train.run(config, str(tmp_path / "run"))
    with open(f"{run_path}/comparison.json") as f:
        comparison = json.load(f)
    assert comparison["count"] == 16
    means = comparison["means"]
    assert means["tuned"]["token_f1"] > means["base"]["token_f1"] + 0.2
    assert means["tuned"]["length_words"] < means["base"]["length_words"]
    with open(f"{run_path}/result.json") as f:
        result = json.load(f)
    assert result["val_loss"] < result["base_val_loss"]
