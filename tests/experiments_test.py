"""Every experiment runs end to end on a tiny Gemma with offline fixture data in its format.

The hub downloads (`datasets.load_dataset`, `tfds.load`) are replaced by fixture rows of the
same shape; everything after them (readers, template, training, run directory) is real.
"""

import json
import os

import numpy as np
import pytest

from gemma_tune import config as config_lib
from gemma_tune import train

SMOKE = [
    "model.preset=tiny:gemma1",
    "model.dtype=float32",
    "sequence_length=64",
    "lora.rank=2",
    "train.max_steps=3",
    "train.batch_size=2",
    "train.eval_batches=1",
    "samples.count=2",
    "samples.max_new_tokens=4",
    "eval.limit=2",
]


def _dolly_rows(count):
    rows = []
    for i in range(count):
        rows.append(
            {
                "instruction": f"Name a colour, take {i}.",
                "context": "",
                "response": f"red {i}",
                "category": "brainstorming",
            }
        )
        rows.append(
            {
                "instruction": "Summarize this.",
                "context": f"Passage {i}.",
                "response": "A passage.",
                "category": "summarization",
            }
        )
    return rows


def _run(experiment, tmp_path, extra=()):
    config = config_lib.load(experiment, SMOKE + list(extra))
    run_path = train.run(config, str(tmp_path / "run"))
    for name in (
        "config.json",
        "data_summary.json",
        "metrics.jsonl",
        "samples.md",
        "result.json",
        "comparison.json",
        "adapter/adapter.npz",
    ):
        assert os.path.exists(os.path.join(run_path, name)), name
    return config, json.loads(open(os.path.join(run_path, "data_summary.json")).read())


def test_dolly_lora4(tmp_path, monkeypatch):
    import datasets

    calls = []

    def fake_load_dataset(name, split):
        calls.append((name, split))
        return datasets.Dataset.from_list(_dolly_rows(20))

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    _, summary = _run("dolly_lora4", tmp_path)
    assert calls == [("databricks/databricks-dolly-15k", "train")]
    assert summary["rows_read"] == 40
    assert summary["dropped"] == {"has context": 20}  # the tutorial's "without context"


@pytest.mark.slow  # >15 s on a 2-core AVX2 CPU: slow suite (CI runs it)
def test_gemma4_dolly(tmp_path, monkeypatch):
    """The Gemma 4 Dolly recipe on a tiny Gemma 4 (the real preset needs Kaggle): its config
    names KerasHub's `gemma4_2b`, and it runs end to end on a Gemma 4 model."""
    import datasets

    monkeypatch.setattr(
        datasets, "load_dataset", lambda name, split: datasets.Dataset.from_list(_dolly_rows(20))
    )
    assert config_lib.load("gemma4_dolly").model.preset == "gemma4_2b"
    config, summary = _run("gemma4_dolly", tmp_path, ["model.preset=tiny:gemma4"])
    assert summary["dropped"] == {"has context": 20}
    result = json.loads(open(os.path.join(tmp_path, "run", "result.json")).read())
    assert result["steps"] == 3 and np.isfinite(result["val_loss"])


def _patch_tfds(monkeypatch, rows, expected_name):
    import tensorflow_datasets as tfds

    def fake_load(name, split):
        assert name == expected_name and split == "train"
        return rows

    monkeypatch.setattr(tfds, "load", fake_load)
    monkeypatch.setattr(tfds, "as_numpy", lambda dataset: dataset)


def test_wikilingua_summarize(tmp_path, monkeypatch):
    rows = [
        {
            "source": np.bytes_(f"Step {i}: mix the paint well before use.".encode()),
            "target": np.bytes_(f"Mix paint {i}.".encode()),
        }
        for i in range(12)
    ]
    _patch_tfds(monkeypatch, rows, "gem/wiki_lingua_english_en")
    _, summary = _run("wikilingua_summarize", tmp_path, ["sequence_length=160"])
    assert summary["rows_read"] == 12 and summary["train_count"] >= 10


def test_squad_qa(tmp_path, monkeypatch):
    rows = [
        {
            "question": np.bytes_(f"Which number is {i}?".encode()),
            "context": np.bytes_(f"The number is {i}.".encode()),
            "answers": {"text": np.array([str(i).encode()]), "answer_start": np.array([14])},
        }
        for i in range(12)
    ]
    _patch_tfds(monkeypatch, rows, "squad")
    _, summary = _run("squad_qa", tmp_path)
    assert summary["rows_read"] == 12


def test_csv_qa_with_context_column(tmp_path):
    path = tmp_path / "qa.csv"
    lines = ["question,answer,context"] + [f"How many {i}?,{i},There are {i}." for i in range(12)]
    path.write_text("\n".join(lines) + "\n")
    config, summary = _run(
        f"csv_qa:{path}",
        tmp_path,
        [
            "data.input_column=question",
            "data.output_column=answer",
            "data.context_column=context",
        ],
    )
    assert config.data.path == str(path)
    assert summary["rows_read"] == 12


@pytest.mark.parametrize(
    "row",
    [
        {
            "contents": [
                {"role": "user", "parts": [{"text": "Q"}]},
                {"role": "model", "parts": [{"text": "A"}]},
            ]
        },
        {
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "Q"},
                {"role": "assistant", "content": "A"},
            ]
        },
        {"prompt": "Q", "completion": "A"},
    ],
)
def test_jsonl_sft(tmp_path, row):
    path = tmp_path / "train.jsonl"
    rows = []
    for i in range(12):
        text = json.dumps(row).replace('"Q"', f'"Question {i}?"').replace('"A"', f'"Answer {i}"')
        rows.append(text)
    path.write_text("\n".join(rows) + "\n")
    _, summary = _run(f"jsonl_sft:{path}", tmp_path)
    assert summary["rows_read"] == 12 and summary["duplicates_removed"] == 0


def test_tensorboard_logs_when_asked(tmp_path):
    config = config_lib.load("tiny", SMOKE + ["train.tensorboard=true"])
    run_path = train.run(config, str(tmp_path / "run"))
    events = os.listdir(os.path.join(run_path, "tensorboard"))
    assert any(name.startswith("events.out.tfevents") for name in events)


@pytest.mark.parametrize("variant", ["rag", "closed_book", "retrieved"])
def test_demo_variants_on_a_tiny_model(tmp_path, variant):
    settings = SMOKE + ["sequence_length=320", "eval.limit=3"]
    config, summary = _run(f"demo:{variant}", tmp_path, settings)
    assert summary["validation_count"] > 60  # of 71 or 79 (the tiny vocabulary is verbose)
    with open(os.path.join(tmp_path, "run", "comparison.json")) as f:
        comparison = json.load(f)
    expected = ["base", "tuned"]
    if variant == "retrieved":
        expected = ["base", "base+context", "tuned", "tuned+context"]
        assert "##" in comparison["examples"][0]["context"]  # a retrieved handbook section
    assert comparison["systems"] == expected
    assert len(comparison["qualitative"]) == len(config.eval.prompts) == 2
