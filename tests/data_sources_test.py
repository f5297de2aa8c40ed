"""Tests for `sources.load`: config to (train, validation, summary) for every source."""

import inspect
import json
import sys
import types

import ml_collections
import numpy as np
import pytest

import gemma_tune
from gemma_tune import config as config_lib
from gemma_tune.data import example, sources


def config(**fields):
    data_config = sources.default_config()
    data_config.update(fields)
    return data_config


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return str(path)


def dolly_rows(count, context_every=0):
    return [
        {
            "instruction": f"question {i}",
            "context": "passage" if context_every and i % context_every == 0 else "",
            "response": f"answer {i}",
        }
        for i in range(count)
    ]


def test_file_jsonl_with_split_cap_and_context_policy(tmp_path):
    path = write_jsonl(tmp_path / "train.jsonl", dolly_rows(30, context_every=5))
    train, validation, result = sources.load(
        config(source="file", path=path, max_examples=20, validation_fraction=0.1, seed=1)
    )
    assert result.rows_read == 30
    assert result.dropped == {"has context": 6}
    assert result.over_max_examples == 4
    assert (len(train), len(validation)) == (18, 2)
    kept = sorted([e.prompt for e in train + validation], key=lambda p: int(p.split()[1]))
    assert kept[0] == "question 1" and kept[-1] == "question 24"


def test_missing_fields_take_the_experiment_configs_defaults(tmp_path):
    # A partial config (or an older run's) falls back to base_config()'s data section: the
    # reference run's 5% validation split and 1000-row cap, not defaults of its own.
    path = write_jsonl(tmp_path / "train.jsonl", dolly_rows(1010))
    bare = ml_collections.ConfigDict({"source": "file", "path": path})
    train, validation, result = sources.load(bare)
    assert result.over_max_examples == 10
    assert (len(train), len(validation)) == (950, 50)
    assert result.validation_from == "split"


def test_data_defaults_live_in_the_experiment_config_only():
    data = config_lib.base_config().data
    assert sources.default_config().to_dict() == data.to_dict()
    # read_file's keyword defaults are the same reader settings; they must not drift apart.
    parameters = inspect.signature(sources.read_file).parameters
    for name in ("format", "input_column", "output_column", "context_column", "system_column"):
        assert parameters[name].default == data[name], name
    assert parameters["keep_context"].default == data.keep_context
    assert not hasattr(sources, "DEFAULTS")


def test_csv_by_extension_and_forced(tmp_path):
    (tmp_path / "qa.csv").write_text("q,a,ctx\nhi,hello,doc\n")
    (tmp_path / "qa.txt").write_text("q,a,ctx\nhi,hello,doc\n")
    fields = dict(source="file", input_column="q", output_column="a", context_column="ctx")
    (by_name,), _, _ = sources.load(config(path=str(tmp_path / "qa.csv"), **fields))
    (forced,), _, _ = sources.load(config(path=str(tmp_path / "qa.txt"), format="csv", **fields))
    assert (by_name.prompt, by_name.response, by_name.context) == ("hi", "hello", "doc")
    assert (forced.prompt, forced.context) == ("hi", "doc")


def test_validation_file_is_used_instead_of_a_split(tmp_path):
    train_path = write_jsonl(tmp_path / "train.jsonl", [{"prompt": "a", "completion": "b"}] * 2)
    validation_path = write_jsonl(tmp_path / "val.jsonl", [{"text_input": "c", "output": "d"}])
    train, validation, result = sources.load(
        config(
            source="file", path=train_path, validation_path=validation_path, validation_fraction=0.5
        )
    )
    assert [e.prompt for e in train] == ["a"]
    assert [e.prompt for e in validation] == ["c"]
    assert result.duplicates_removed == 1
    assert result.validation_from == "file"


def test_train_and_validation_problems_are_raised_together(tmp_path):
    train_path = write_jsonl(tmp_path / "train.jsonl", [{"prompt": "a", "completion": ""}])
    validation_path = tmp_path / "val.csv"
    validation_path.write_text("input,output\n,x\n")
    with pytest.raises(example.DataError) as raised:
        sources.load(config(source="file", path=train_path, validation_path=str(validation_path)))
    assert [str(p) for p in raised.value.problems] == [
        f"{train_path}:1: completion: empty",
        f"{validation_path}:2: input: empty cell",
    ]


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"source": "s3"}, "hf, tfds, file, tiny"),
        ({"source": "file", "path": "x.jsonl", "format": "parquet"}, "openai_chat"),
        ({"source": "file", "path": ""}, "data.path"),
        ({"source": "hf", "name": ""}, "data.name"),
    ],
)
def test_bad_configs_name_the_choices(fields, message):
    with pytest.raises(ValueError, match=message):
        sources.load(config(**fields))


def test_no_training_examples_left_is_an_error(tmp_path):
    path = write_jsonl(tmp_path / "train.jsonl", dolly_rows(2, context_every=1))
    with pytest.raises(ValueError, match="no training examples.*has context: 2"):
        sources.load(config(source="file", path=path))


def test_hf_source_calls_load_dataset(monkeypatch):
    datasets = pytest.importorskip("datasets")
    calls = []

    def load_dataset(name, split):
        calls.append((name, split))
        return datasets.Dataset.from_list(dolly_rows(4, context_every=2))

    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    train, _, result = sources.load(config(source="hf", split="train[:4]", validation_fraction=0))
    assert calls == [("databricks/databricks-dolly-15k", "train[:4]")]
    assert [e.source for e in train] == [
        "databricks/databricks-dolly-15k[1]",
        "databricks/databricks-dolly-15k[3]",
    ]
    assert result.dropped == {"has context": 2}


def test_tfds_source_calls_tfds_load_and_as_numpy(monkeypatch):
    calls = []
    fake = types.ModuleType("tensorflow_datasets")

    def load(name, split):
        calls.append((name, split))
        return [{"source": np.bytes_(b"Long text."), "target": np.bytes_(b"Short.")}]

    fake.load = load
    fake.as_numpy = lambda dataset: iter(dataset)
    monkeypatch.setitem(sys.modules, "tensorflow_datasets", fake)
    (item,), _, _ = sources.load(
        config(source="tfds", name="gem/wiki_lingua_english_en", instruction="Shorten:")
    )
    assert calls == [("gem/wiki_lingua_english_en", "train")]
    assert item.prompt == "Shorten:\n\nLong text."


def test_tiny_source_reads_generated_dolly_rows(monkeypatch):
    fake = types.ModuleType("gemma_tune.testing")
    fake.tiny_conversations = lambda seed: [
        {"instruction": f"repeat {seed}", "context": "", "response": f"{seed}"},
        {"instruction": "colour?", "context": "", "response": "red"},
    ]
    monkeypatch.setitem(sys.modules, "gemma_tune.testing", fake)
    monkeypatch.setattr(gemma_tune, "testing", fake, raising=False)
    train, validation, _ = sources.load(config(source="tiny", seed=7, validation_fraction=0.5))
    assert sorted(e.prompt for e in train + validation) == ["colour?", "repeat 7"]
    assert len(validation) == 1
