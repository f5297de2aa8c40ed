"""The fixed prompts answered at every validation during training (`train.generate_every_eval`):
generations.jsonl holds one record per prompt per validation, each answer is what the decoder
gives with that step's checkpoint, a resumed run ends with the uninterrupted run's file,
TensorBoard holds each validation's table at its step, and the report shows them; on a
sharded mesh the answers are the single device's (slow).
"""

import json
import os
import shutil
import subprocess
import sys

import pytest

from gemma_tune import config as config_lib
from gemma_tune import train
from gemma_tune.evaluation import answers, progress_generations
from gemma_tune.runs import run_dir, tuned_run
from gemma_tune.training import checkpoint, optimizer, template, trainer

PROMPTS = ["Repeat after me: the cat likes red apples.", "What colour is the sky?"]
# A learning rate high enough that the tiny model's greedy answers change within two steps.
SETTINGS = [
    "model.preset=tiny:gemma3",
    "sequence_length=64",
    "train.max_steps=4",
    "train.eval_every=2",
    "train.checkpoint_every=2",
    "train.keep_checkpoints=3",
    "train.eval_batches=1",
    "train.learning_rate=1.0",
    "train.warmup_steps=0",
    "train.schedule=constant",
    "train.generate_every_eval=true",
    'train.report_to=["tensorboard"]',
    "eval.limit=0",
    "samples.count=0",
    "samples.max_new_tokens=6",
    f"eval.prompts={json.dumps(PROMPTS)}",
]


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("progress")
    return train.run(config_lib.load("tiny", SETTINGS), str(folder / "run"))


def test_one_record_per_prompt_per_validation_in_step_order(finished_run):
    records = progress_generations.read(finished_run)
    validated = [r["step"] for r in run_dir.read_metrics(finished_run) if "val_loss" in r]
    assert validated == [0, 2, 4]
    assert [(r["step"], r["prompt"]) for r in records] == [
        (step, prompt) for step in validated for prompt in PROMPTS
    ]
    assert all(isinstance(r["answer"], str) for r in records)


def test_the_first_and_last_answers_are_the_base_and_tuned_answers(finished_run):
    # The end of the run answers the same prompts base vs tuned (its "generations" table).
    records = progress_generations.read(finished_run)
    [table] = _tensorboard_tables(finished_run)["generations"].values()
    for prompt in PROMPTS:
        found = {r["step"]: r["answer"] for r in records if r["prompt"] == prompt}
        assert f"| {prompt} | {_cell(found[0])} | {_cell(found[4])} |" in table.splitlines()


def test_an_answer_is_the_decoders_with_that_steps_checkpoint(finished_run):
    config = config_lib.load("tiny", SETTINGS)
    loaded = tuned_run.load_base(
        config.model.preset, tuned_run.adapter_path(finished_run), config.model.dtype
    )
    tuner = trainer.Trainer(loaded.causal_lm, optimizer.make(config.train, 4))
    checkpoint.restore(os.path.join(run_dir.checkpoints_dir(finished_run), "step-000002"), tuner)
    tuner.sync_to_model()  # the model's own variables, as `sample` would use them
    expected = answers.answer_prompts(
        loaded.causal_lm, template.ChatTemplate(loaded.tokenizer), PROMPTS, 6, 8
    )
    records = progress_generations.read(finished_run)
    assert [r["answer"] for r in records if r["step"] == 2] == expected
    # Training moved the weights, so the step-2 answers are not the base model's.
    assert tuner.step == 2 and expected != [r["answer"] for r in records if r["step"] == 0]


@pytest.mark.slow  # a second run (~35 s on 2 CPU cores)
def test_a_resumed_run_ends_with_the_uninterrupted_runs_file(finished_run, tmp_path):
    resumed = str(tmp_path / "resumed")
    shutil.copytree(finished_run, resumed)
    # As a stop after step 2's checkpoint leaves it, plus step 4's records, which the resumed
    # run must drop and write again.
    shutil.rmtree(os.path.join(run_dir.checkpoints_dir(resumed), "step-000004"))
    for name in (run_dir.RESULT, run_dir.REPORT_MD, run_dir.REPORT_HTML):
        os.remove(os.path.join(resumed, name))
    progress_generations.append(
        resumed, [{"step": 3, "prompt": PROMPTS[0], "answer": "from the stopped run"}]
    )
    train.run(config_lib.load("tiny", SETTINGS), resumed)
    assert progress_generations.read(resumed) == progress_generations.read(finished_run)


def test_truncate_drops_a_redone_validations_records(tmp_path):
    records = [{"step": s, "prompt": p, "answer": "a"} for s in (0, 2, 4) for p in PROMPTS]
    progress_generations.append(str(tmp_path), records)
    progress_generations.truncate(str(tmp_path), 2, keep_last_validation=False)
    assert progress_generations.read(str(tmp_path)) == records[:2]
    progress_generations.truncate(str(tmp_path), -1)
    assert progress_generations.read(str(tmp_path)) == []


def _cell(text: str) -> str:
    """A table cell as the TensorBoard tracker writes it."""
    return text.replace("|", "\\|").replace("\n", "<br>")


def _tensorboard_tables(run_path: str) -> dict[str, dict[int, str]]:
    """Every text summary the run's TensorBoard files hold: by tag, by step."""
    from tensorboard.backend.event_processing import event_accumulator
    from tensorboard.util import tensor_util

    folder = os.path.join(run_path, run_dir.TENSORBOARD_DIR)
    accumulator = event_accumulator.EventAccumulator(folder, size_guidance={"tensors": 0})
    accumulator.Reload()
    return {
        tag: {
            event.step: tensor_util.make_ndarray(event.tensor_proto).item().decode()
            for event in accumulator.Tensors(tag)
        }
        for tag in accumulator.Tags()["tensors"]
    }


def test_tensorboard_holds_each_validations_answers_at_its_step(finished_run):
    tables = _tensorboard_tables(finished_run)[progress_generations.TABLE]
    assert sorted(tables) == [0, 2, 4]
    records = progress_generations.read(finished_run)
    for step, table in tables.items():
        lines = table.splitlines()
        assert lines[0] == "| prompt | answer |"
        assert lines[2:] == [
            f"| {r['prompt']} | {_cell(r['answer'])} |" for r in records if r["step"] == step
        ]


def test_the_report_shows_each_prompts_answer_at_each_step(finished_run):
    markdown = open(os.path.join(finished_run, run_dir.REPORT_MD)).read()
    section = markdown.split("## Answers during training", 1)[1]
    for prompt in PROMPTS:
        block = section.split(f"### {prompt}", 1)[1].split("###", 1)[0]
        rows = [line for line in block.splitlines() if line.startswith("| ")][2:]  # past the header
        assert [row.split(" | ")[0][2:] for row in rows] == ["0", "2", "4"]
    html = open(os.path.join(finished_run, run_dir.REPORT_HTML)).read()
    assert html.count('<table class="wide progress">') == len(PROMPTS)


def test_the_setting_without_prompts_is_refused_before_anything_is_written(tmp_path):
    config = config_lib.load("tiny", [*SETTINGS, "eval.prompts=[]"])
    with pytest.raises(ValueError, match="train.generate_every_eval needs fixed prompts"):
        train.run(config, str(tmp_path / "run"))
    assert not os.path.exists(tmp_path / "run" / run_dir.CONFIG)


# Trains tiny Gemma 3 with the answers hook twice in one process with 8 fake CPU devices
# (they must be set before JAX starts): on one device and on a 2 x 4 (data, model) mesh.
_SHARDED = """
import json, sys
import jax
import keras
from gemma_tune import config, model, testing
from gemma_tune.evaluation import progress_generations
from gemma_tune.training import batching, loop, optimizer, sharding, template, trainer, tracking
from gemma_tune.data import example

sharding.MIN_SHARDED_SIZE = 0
settings = ["train.batch_size=8", "train.eval_batch_size=8", "train.learning_rate=1.0",
            "train.max_steps=4", "train.eval_every=2", "train.log_every=1", "sequence_length=64",
            "train.warmup_steps=0", "train.schedule=constant"]
PROMPTS = ["Repeat after me: the cat likes red apples.", "What colour is the sky?"]

def fit(mesh):
    cfg = config.load("tiny:gemma3", settings)
    tokenizer = testing.tiny_tokenizer("gemma3")
    backbone = testing.tiny_backbone("gemma3", tokenizer.vocabulary_size(), seed=0)
    loaded = model.LoadedModel(model.causal_lm_for(backbone), tokenizer, "gemma3")
    keras.utils.set_random_seed(0)
    model.enable_lora(loaded, 4)
    chat = template.ChatTemplate(tokenizer)
    turns = [(example.Turn("user", r["instruction"]), example.Turn("model", r["response"]))
             for r in testing.tiny_conversations(32)]
    encoded = [chat.encode(example.Example(turns=pair), 64) for pair in turns]
    tuner = trainer.Trainer(loaded.causal_lm, optimizer.make(cfg.train, 4), 1.0,
        max_targets_per_row=batching.max_targets_per_row(encoded), mesh=mesh)
    hook = progress_generations.ProgressGenerations(loaded.causal_lm, chat, PROMPTS, 8, 8, None,
        tracking.Trackers(cfg, ""))
    found = []
    loop.fit(tuner, encoded[:24], encoded[24:], cfg, chat.pad_id, lambda r: None,
             on_validation=lambda step, t: found.extend(hook(step, t)))
    return found

single, sharded = fit(None), fit(sharding.make_mesh(2, 4))
print(json.dumps({"devices": len(jax.devices()), "single": single, "sharded": sharded}))
"""


@pytest.mark.slow  # two tiny trainings in a subprocess, ~2 minutes on 2 CPU cores
def test_sharded_training_answers_as_one_device_does():
    env = dict(os.environ, KERAS_BACKEND="jax", JAX_PLATFORMS="cpu")
    env["XLA_FLAGS"] = "--xla_force_host_platform_device_count=8"
    result = subprocess.run(
        [sys.executable, "-c", _SHARDED], capture_output=True, text=True, timeout=600, env=env
    )
    assert result.returncode == 0, result.stderr[-3000:]
    found = json.loads(result.stdout.strip().splitlines()[-1])
    assert found["devices"] == 8
    assert [r["step"] for r in found["sharded"]] == [0, 0, 2, 2, 4, 4]
    assert found["sharded"] == found["single"]
