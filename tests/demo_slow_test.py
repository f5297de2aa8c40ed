"""The demos on the real Gemma 3 270M (slow): a shortened supervised run still beats the base
model, and DPO from it on the bundled pairs of the demo's own mistakes raises the held-out
reward accuracy and margin. One test, so the supervised run is made once whichever test
process runs it."""

import json

import pytest

from gemma_tune import config as config_lib
from gemma_tune import train


def _json(path):
    with open(path) as f:
        return json.load(f)


def _json_lines(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


@pytest.mark.slow
def test_short_demo_beats_the_base_model_and_dpo_from_it_raises_reward_accuracy(tmp_path):
    # The full 40 training steps (the learning-rate schedule is part of the recipe); fewer
    # generated and scored examples than the demo, to keep CI short.
    config = config_lib.load("demo", ["eval.limit=16", "samples.count=2", "train.eval_batches=4"])
    demo_run = train.run(config, str(tmp_path / "demo"))
    comparison = _json(f"{demo_run}/comparison.json")
    assert comparison["count"] == 16
    means = comparison["means"]
    assert means["tuned"]["token_f1"] > means["base"]["token_f1"] + 0.2
    assert means["tuned"]["length_words"] < means["base"]["length_words"]
    result = _json(f"{demo_run}/result.json")
    assert result["val_loss"] < result["base_val_loss"]

    # DPO from it: 24 steps on the first 96 training pairs instead of 76 on 304; every
    # held-out pair scored, 16 prompts answered greedily and sampled.
    overrides = ["data.max_examples=96", "eval.limit=16", "samples.count=2"]
    config = config_lib.load(f"demo_dpo:{demo_run}", overrides)
    run_path = train.run(config, str(tmp_path / "dpo"))
    validations = [r for r in _json_lines(f"{run_path}/metrics.jsonl") if "val_loss" in r]
    start, end = validations[0], validations[-1]
    assert start["step"] == 0 and start["val_rewards/margins"] == 0.0
    assert end["val_rewards/accuracies"] > 0.6
    assert end["val_rewards/margins"] > 0.2  # beta 0.1: > 2 nats between the log-ratios
    assert end["val_logps/rejected"] < start["val_logps/rejected"]
    comparison = _json(f"{run_path}/comparison.json")
    assert comparison["systems"] == ["base", "base+sampled", "tuned", "tuned+sampled"]
    assert comparison["losses"]["tuned"]["rewards/accuracies"] == end["val_rewards/accuracies"]
