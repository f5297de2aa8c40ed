"""DPO through the training command (`train.objective=dpo`) on a tiny Gemma: held-out reward
accuracy rises, the reference is the model before training (the base, or the run named by
`train.init_from`), a killed run resumes to the same losses and adapter, and settings that
cannot apply to DPO are refused before anything is written."""

import json
import math
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from gemma_tune import config as config_lib
from gemma_tune import train
from gemma_tune.data import preference_sources
from gemma_tune.evaluation import preference_scores, run_evaluation
from gemma_tune.model import prepare
from gemma_tune.runs import reference_logps, run_dir, tuned_run
from gemma_tune.training import pair_encoding, template


def _json(path):
    with open(path) as f:
        return json.load(f)


def _records(run_path):
    return run_dir.read_metrics(run_path)


def _validations(run_path):
    return [r for r in _records(run_path) if "val_loss" in r]


def _adapter(run_path):
    with np.load(os.path.join(run_path, "adapter", "adapter.npz")) as arrays:
        return {name: arrays[name] for name in arrays.files}


def _run(tmp_path, name, *overrides):
    config = config_lib.load("tiny_dpo", list(overrides))
    return train.run(config, str(tmp_path / name))


def _scores(loaded, config, pairs):
    """Both answers' log-probabilities of `pairs` under `loaded`, scored apart from training."""
    chat_template = template.ChatTemplate(loaded.tokenizer)
    encoded = [
        pair_encoding.encode_pair(chat_template, pair, config.sequence_length) for pair in pairs
    ]
    scorer = preference_scores.PairScorer(
        loaded.causal_lm, chat_template.pad_id, config.sequence_length
    )
    return scorer(encoded)


@pytest.mark.slow  # two tiny runs and a scoring pass, ~2 min on 2 CPU cores
def test_dpo_run_raises_reward_accuracy_with_the_base_as_reference(tmp_path):
    run_path = _run(tmp_path, "dpo")
    validations = _validations(run_path)
    first, last = validations[0], validations[-1]
    assert first["step"] == 0
    # At step 0 the policy is the reference: the DPO loss is log 2 and no reward is earned.
    assert first["val_loss"] == pytest.approx(math.log(2), abs=1e-4)
    assert first["val_rewards/margins"] == pytest.approx(0, abs=1e-4)
    assert last["val_loss"] < math.log(2) - 0.03
    assert last["val_rewards/accuracies"] > 0.5
    assert last["val_rewards/margins"] > 0.1
    train_records = [r for r in _records(run_path) if "rewards/accuracies" in r]
    assert train_records and all("logps/chosen" in r and "pairs" in r for r in train_records)

    result = run_dir.read_json(run_path, run_dir.RESULT)
    assert result["val_rewards/accuracies"] == last["val_rewards/accuracies"]
    assert "base_val_likelihood_accuracy" in result
    summary = run_dir.read_json(run_path, run_dir.DATA_SUMMARY)
    assert summary["unit"] == "pairs"
    with open(os.path.join(run_path, run_dir.REPORT_MD)) as f:
        assert "Held-out DPO reward accuracy" in f.read()

    # The saved reference equals the base model's scores computed apart from the run.
    config = config_lib.load("tiny_dpo")
    _, validation_pairs, _ = preference_sources.load(config.data)
    loaded = prepare.prepare(
        config.model.preset, prepare.Tuning.from_config(config), "float32", seed=config.seed
    ).loaded
    chosen, rejected = _scores(loaded, config, validation_pairs)
    reference = reference_logps.read_reference(run_path)
    np.testing.assert_allclose(reference["validation_chosen"], chosen, atol=2e-4)
    np.testing.assert_allclose(reference["validation_rejected"], rejected, atol=2e-4)


@pytest.mark.slow  # one tiny run, 58 s on 2 CPU cores shared with other jobs
def test_packed_dpo_run_learns_with_its_step_zero_validation_from_the_reference(tmp_path):
    # Rows of 2 * 161 tokens hold two of these pairs (about 60 tokens a side).
    run_path = _run(
        tmp_path, "packed", "train.packing=true", "train.batch_size=2", "sequence_length=160"
    )
    validations = _validations(run_path)
    first, last = validations[0], validations[-1]
    # Taken from the reference scores: the policy is the reference, exactly.
    assert first["step"] == 0 and first["val_loss"] == pytest.approx(math.log(2), abs=1e-6)
    assert first["val_rewards/margins"] == 0 and first["val_rewards/accuracies"] == 0
    assert last["val_rewards/accuracies"] > 0.5 and last["val_loss"] < math.log(2) - 0.03
    train_records = [r for r in _records(run_path) if "rewards/accuracies" in r]
    assert max(r["pairs"] for r in train_records) > 2  # a step of 2 rows held more pairs
    reference = reference_logps.read_reference(run_path)  # by pair, not by packed row
    summary = run_dir.read_json(run_path, run_dir.DATA_SUMMARY)
    assert len(reference["train_chosen"]) == summary["train_count"]
    assert len(reference["validation_rejected"]) == summary["validation_count"]


@pytest.mark.slow  # a supervised and a DPO tiny run, ~2 min on 2 CPU cores
def test_init_from_starts_dpo_from_a_supervised_run_whose_model_is_the_reference(tmp_path):
    sft = train.run(
        config_lib.load("tiny:gemma3", ["train.epochs=1", "eval.limit=0", "samples.count=0"]),
        str(tmp_path / "sft"),
    )
    run_path = _run(tmp_path, "dpo", f"train.init_from={sft}", "train.max_steps=2")
    config = config_lib.load("tiny_dpo")
    _, validation_pairs, _ = preference_sources.load(config.data)
    tuned = tuned_run.load_tuned(sft, dtype="float32").loaded
    chosen, _ = _scores(tuned, config, validation_pairs)
    reference = reference_logps.read_reference(run_path)
    np.testing.assert_allclose(reference["validation_chosen"], chosen, atol=2e-4)
    # Evaluating the DPO run afterwards compares against the supervised model it started
    # from, as its training did: the same base and tuned answers.
    during = _json(os.path.join(run_path, run_dir.COMPARISON))
    again_path = run_evaluation.evaluate(run_path, out=str(tmp_path / "evaluation"))
    again = _json(os.path.join(again_path, run_dir.COMPARISON))
    assert [item["answers"] for item in again["examples"]] == [
        item["answers"] for item in during["examples"]
    ]
    own_adapter = os.path.join(run_path, "adapter")
    by_hand = run_evaluation.resolve_target(run_path, None, own_adapter, None, "x")
    assert by_hand.base_adapter is None  # an adapter given by hand: the pretrained base

    with pytest.raises(ValueError, match=r"train.init_from=.*shape"):
        _run(tmp_path, "wrong_rank", f"train.init_from={sft}", "lora.rank=4")
    with pytest.raises(FileNotFoundError, match=r"train.init_from=.*no adapter"):
        _run(tmp_path, "missing", f"train.init_from={tmp_path / 'nothing'}")


def _command(run_path):
    sets = ["train.log_every=1", "train.checkpoint_every=3", "train.eval_every=0"]
    sets += ["eval.limit=0", "samples.count=0"]
    args = [arg for setting in sets for arg in ("--set", setting)]
    return [
        sys.executable,
        "-m",
        "gemma_tune.train",
        "--experiment=tiny_dpo",
        f"--workdir={run_path}",
        *args,
    ]


def _losses(run_path):
    return [(r["step"], r["loss"]) for r in _records(run_path) if "loss" in r]


@pytest.mark.slow  # three tiny runs as subprocesses, ~3 min on 2 CPU cores
def test_a_killed_dpo_run_resumes_to_the_uninterrupted_losses_and_adapter(tmp_path):
    uninterrupted, resumed = str(tmp_path / "whole"), str(tmp_path / "resumed")
    subprocess.run(_command(uninterrupted), check=True, capture_output=True)
    process = subprocess.Popen(
        _command(resumed), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.time() + 300
    while time.time() < deadline:
        assert process.poll() is None, "the run ended before it could be stopped"
        if os.path.exists(os.path.join(resumed, run_dir.METRICS)):
            if any(step >= 5 for step, _ in _losses(resumed)):
                break
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert os.path.exists(os.path.join(resumed, run_dir.REFERENCE_LOGPS))
    subprocess.run(_command(resumed), check=True, capture_output=True)
    resumed_losses, whole_losses = np.array(_losses(resumed)), np.array(_losses(uninterrupted))
    assert resumed_losses.shape == whole_losses.shape
    np.testing.assert_allclose(resumed_losses, whole_losses, atol=1e-6)
    for name, array in _adapter(uninterrupted).items():
        np.testing.assert_allclose(_adapter(resumed)[name], array, atol=1e-6)


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["retrieval.corpus=handbook.md"], "retrieval.corpus does not apply"),
        (["template.train_on_prompt=true"], "template.train_on_prompt does not apply"),
        (["train.objective=sft", "dpo.beta=0.3"], "dpo.beta is set but train.objective is 'sft'"),
        (["data.source=tfds"], "data.source='tfds' cannot hold preference pairs"),
    ],
)
def test_settings_that_cannot_apply_to_dpo_are_refused_before_anything_is_written(
    tmp_path, overrides, message
):
    config = config_lib.load("tiny_dpo", overrides)
    with pytest.raises(ValueError, match=message):
        train.run(config, str(tmp_path / "run"))
    assert not os.path.exists(tmp_path / "run" / run_dir.CONFIG)


def test_dpo_settings_out_of_range_name_the_key():
    with pytest.raises(ValueError, match=r"dpo.beta=0.0: must be > 0"):
        config_lib.load("tiny_dpo", ["dpo.beta=0"])
    with pytest.raises(ValueError, match=r"dpo.loss=\"kto\": must be one of sigmoid"):
        config_lib.load("tiny_dpo", ["dpo.loss=kto"])
    with pytest.raises(ValueError, match=r"train.objective=\"ppo\": must be one of sft, dpo"):
        config_lib.load("tiny_dpo", ["train.objective=ppo"])


def test_preference_source_splits_by_prompt_and_counts_pairs(tmp_path):
    path = tmp_path / "pairs.jsonl"
    rows = [
        {"prompt": f"Q{i % 5}?", "chosen": f"yes {i}", "rejected": f"no {i}"} for i in range(20)
    ]
    rows.append(dict(rows[0]))  # a repeated pair
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    config = config_lib.load("tiny_dpo", ["data.source=file", f"data.path={path}"])
    train_pairs, validation_pairs, summary = preference_sources.load(config.data)
    assert summary.rows_read == 21 and summary.duplicates_removed == 1
    assert len(train_pairs) + len(validation_pairs) == 20 and validation_pairs
    held_out = {pair.prompt for pair in validation_pairs}
    assert not held_out & {pair.prompt for pair in train_pairs}
    assert "train pairs: " in summary.format()


@pytest.mark.slow  # three tiny runs, ~2 min on 2 CPU cores
@pytest.mark.parametrize(
    "architecture, overrides",
    [
        ("gemma4", []),
        ("gemma2", ["method=dora", "model.quantize=int8"]),
        ("gemma1", ["method=full", "train.learning_rate=1e-3"]),
    ],
)
def test_dpo_trains_every_method_and_family(tmp_path, architecture, overrides):
    run_path = train.run(
        config_lib.load(
            f"tiny_dpo:{architecture}",
            [*overrides, "train.max_steps=4", "eval.limit=0", "samples.count=0"],
        ),
        str(tmp_path / "run"),
    )
    validations = _validations(run_path)
    assert validations[0]["val_loss"] == pytest.approx(math.log(2), abs=1e-4)
    assert all(math.isfinite(r["loss"]) for r in _records(run_path) if "loss" in r)
    assert validations[-1]["val_rewards/margins"] != pytest.approx(0, abs=1e-6)  # it trained
    assert os.path.exists(os.path.join(run_path, "adapter", "adapter.npz"))
