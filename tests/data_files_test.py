"""Files told by their first bytes: JSON arrays, Parquet, compressed files, saved `datasets`
folders, and CSV cells of any size."""

import bz2
import gzip
import json

import pytest

from gemma_tune.data import example, files, hf, sources

ALPACA = [
    {"instruction": "Name a fruit.", "input": "", "output": "Apple."},
    {"instruction": "Translate.", "input": "chat", "output": "cat"},
]


def problems(path, **kwargs):
    with pytest.raises(example.DataError) as raised:
        sources.read_file(path, **kwargs)
    return [(p.line, p.field, p.reason) for p in raised.value.problems]


def test_a_json_array_reads_like_jsonl_and_names_the_index(tmp_path):
    path = tmp_path / "alpaca.json"
    path.write_text(json.dumps(ALPACA, indent=2))
    result = sources.read_file(path)
    assert [item.prompt for item in result.examples] == ["Name a fruit.", "Translate.\n\nchat"]
    assert result.examples[1].source == f"{path}:7"
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([ALPACA[0], {"instruction": "x", "output": ""}, 3], indent=2))
    assert problems(bad) == [
        (7, "[1].output", "empty"),
        (11, "[2]", "expected a JSON object, got int"),
    ]


def test_invalid_json_in_an_array_is_one_problem_with_its_line(tmp_path):
    path = tmp_path / "broken.json"
    path.write_text('[\n  {"text": "a"},\n  {"text": "b",}\n]\n')
    ((line, field, reason),) = problems(path)
    assert (line, field) == (3, "file") and reason.startswith("invalid JSON")


def test_an_empty_array_has_no_rows(tmp_path):
    path = tmp_path / "empty.json"
    path.write_text(" [ ] ")
    assert sources.read_file(path).rows_read == 0


def test_parquet_is_read_whatever_its_name(tmp_path):
    pyarrow = pytest.importorskip("pyarrow")
    from pyarrow import parquet

    path = tmp_path / "train.jsonl"  # A misleading name: the bytes decide.
    rows = [*ALPACA, {"instruction": "Empty.", "input": "", "output": " "}]
    parquet.write_table(pyarrow.Table.from_pylist(rows), path)
    assert problems(path) == [(3, "[2].output", "empty")]
    parquet.write_table(pyarrow.Table.from_pylist(ALPACA), path)
    assert [item.response for item in sources.read_file(path).examples] == ["Apple.", "cat"]


def test_parquet_chat_rows_with_nulls_for_absent_keys(tmp_path):
    pyarrow = pytest.importorskip("pyarrow")
    from pyarrow import parquet

    rows = [
        {"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]},
        {
            "messages": [
                {"role": "user", "content": "c"},
                {"role": "assistant", "content": "d", "weight": 0},
                {"role": "user", "content": "e"},
                {"role": "assistant", "content": "f", "weight": 1},
            ]
        },
    ]
    path = tmp_path / "chat.parquet"
    parquet.write_table(pyarrow.Table.from_pylist(rows), path)
    result = sources.read_file(path)
    assert [t.weight for t in result.examples[1].turns] == [1.0, 0.0, 1.0, 1.0]
    assert result.warnings == []


@pytest.mark.parametrize(
    "name, compress", [("train.jsonl.gz", gzip.compress), ("train.jsonl.bz2", bz2.compress)]
)
def test_compressed_jsonl_is_read(tmp_path, name, compress):
    path = tmp_path / name
    path.write_bytes(compress(b'{"prompt": "a", "completion": "b"}\n'))
    (item,) = sources.read_file(path).examples
    assert (item.prompt, item.response, item.source) == ("a", "b", f"{path}:1")


def test_a_gzipped_csv_keeps_its_inner_name(tmp_path):
    path = tmp_path / "qa.csv.gz"
    path.write_bytes(gzip.compress(b"input,output\nhi,hello\n"))
    (item,) = sources.read_file(path).examples
    assert (item.prompt, item.response) == ("hi", "hello")


@pytest.mark.parametrize(
    "data, kind",
    [(b"PK\x03\x04rest", "zip"), (b"\x28\xb5\x2f\xfd rest", "zstd")],
)
def test_unsupported_compression_is_named(tmp_path, data, kind):
    path = tmp_path / "train.jsonl"
    path.write_bytes(data)
    ((line, field, reason),) = problems(path)
    assert (line, field) == (1, "file")
    assert reason.startswith(f"compressed files ({kind}) are not supported")
    assert files.kind(data) == kind


def test_a_truncated_gzip_file_says_so(tmp_path):
    path = tmp_path / "train.jsonl.gz"
    path.write_bytes(gzip.compress(b'{"text": "a"}\n' * 100)[:20])
    ((_, field, reason),) = problems(path)
    assert field == "file" and reason.startswith("a gzip file that cannot be decompressed")


def test_a_csv_cell_of_any_size(tmp_path):
    big = "word " * 60_000  # 300 KB, over the csv module's default 128 KiB field limit.
    path = tmp_path / "big.csv"
    path.write_text(f'input,output\n"{big}",short\n')
    (item,) = sources.read_file(path).examples
    assert item.prompt == big


def _saved(tmp_path, rows, name="saved", split=None):
    datasets = pytest.importorskip("datasets")
    dataset = datasets.Dataset.from_list(rows)
    if split:
        dataset = datasets.DatasetDict({split: dataset})
    path = tmp_path / name
    dataset.save_to_disk(str(path))
    return str(path)


def test_a_save_to_disk_folder_is_a_data_path(tmp_path):
    path = _saved(tmp_path, [{"text": "doc one"}, {"text": "doc two"}, {"text": ""}])
    assert problems(path) == [(3, "[2].text", "empty")]
    path = _saved(tmp_path, [{"text": "doc one"}, {"text": "doc two"}], name="good")
    assert [item.text for item in sources.read_file(path).examples] == ["doc one", "doc two"]


def test_a_saved_dataset_dict_reads_the_split(tmp_path):
    path = _saved(tmp_path, ALPACA, split="train")
    assert len(sources.read_file(path, split="train").examples) == 2
    assert len(sources.read_file(path, split="train[1:]").examples) == 1
    with pytest.raises(ValueError, match="no split 'test'; the splits are: train"):
        sources.read_file(path, split="test")


def test_a_folder_that_is_not_a_saved_dataset(tmp_path):
    with pytest.raises(ValueError, match="not one written by datasets' save_to_disk"):
        sources.read_file(tmp_path)


def test_source_hf_on_a_saved_folder(tmp_path):
    messages = [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]
    path = _saved(tmp_path, [{"messages": messages}] * 4 + [{"messages": messages[:1]}])
    config = sources.default_config()
    config.source, config.name, config.split, config.validation_fraction = "hf", path, "train", 0
    train, _, summary = sources.load(config)
    assert len(train) == 1 and summary.duplicates_removed == 3
    assert list(summary.dropped) == [
        "invalid row (messages[0].role: the conversation does not end with a model turn)"
    ]


@pytest.mark.parametrize(
    "rows, expected",
    [
        ([{"text": "a doc", "id": 1}], ("", "a doc")),
        ([{"prompt": "p", "completion": "c"}], ("p", "c")),
        (
            [{"conversations": [{"from": "human", "value": "h"}, {"from": "gpt", "value": "g"}]}],
            ("h", "g"),
        ),
        ([{"instruction": "i", "input": "", "output": "o"}], ("i", "o")),
    ],
)
def test_hub_datasets_with_the_file_formats_columns(rows, expected):
    datasets = pytest.importorskip("datasets")
    (item,) = hf.load_hf("user/data", rows=datasets.Dataset.from_list(rows)).examples
    assert (item.prompt, item.response) == expected


def test_hub_preference_datasets_are_refused_by_their_columns():
    with pytest.raises(ValueError, match="preference data .* not supported"):
        hf.load_hf("user/dpo", rows=[{"prompt": "p", "chosen": "a", "rejected": "b"}])


def test_hub_dataset_read_by_the_columns_the_user_names(tmp_path):
    rows = [{"question": "Who?", "answer": "Ada", "passage": "Ada wrote it.", "id": 1}]
    path = _saved(tmp_path, rows)
    config = sources.default_config()
    config.source, config.name, config.validation_fraction = "hf", path, 0.0
    with pytest.raises(ValueError, match="name the prompt and answer columns with data.input_c"):
        sources.load(config)
    config.input_column, config.output_column, config.context_column = (
        "question",
        "answer",
        "passage",
    )
    (item,) = sources.load(config)[0]
    assert (item.prompt, item.response, item.context) == ("Who?", "Ada", "Ada wrote it.")
    config.output_column = "reply"
    with pytest.raises(ValueError, match="no column 'reply'; the columns are: answer, id,"):
        sources.load(config)


def test_a_saved_dataset_dict_gives_training_and_validation(tmp_path):
    datasets = pytest.importorskip("datasets")
    rows = [{"text": f"doc {i}"} for i in range(5)]
    saved = datasets.DatasetDict(
        {
            "train": datasets.Dataset.from_list(rows[:4]),
            "validation": datasets.Dataset.from_list(rows[4:]),
        }
    )
    saved.save_to_disk(str(tmp_path / "both"))
    config = sources.default_config()
    config.source = "file"
    config.path = config.validation_path = str(tmp_path / "both")
    train, validation, _ = sources.load(config)
    assert [item.text for item in validation] == ["doc 4"] and len(train) == 4


def test_pretty_printed_objects_are_rows_not_one_error_per_line(tmp_path):
    path = tmp_path / "pretty.json"
    path.write_text(json.dumps(ALPACA[0], indent=2) + "\n" + json.dumps(ALPACA[1], indent=2))
    first, second = sources.read_file(path).examples
    assert (first.response, second.response) == ("Apple.", "cat")
    assert second.source == f"{path}:6"


def test_rows_wrapped_in_an_object_say_so(tmp_path):
    path = tmp_path / "wrapped.json"
    path.write_text(json.dumps({"version": 1, "data": ALPACA}, indent=2))
    ((line, field, reason),) = problems(path)
    assert (line, field) == (1, "row")
    assert "'data' holds a list of objects: give those rows alone" in reason


def test_a_broken_jsonl_line_is_still_named_by_its_line(tmp_path):
    path = tmp_path / "broken.jsonl"
    path.write_text('{"text": "a"}\n{"text": \n{"text": "c"}\n')
    assert [(line, field) for line, field, _ in problems(path)] == [(2, "line")]


def test_source_hf_on_a_local_data_file_reads_it_as_the_users_file(tmp_path):
    path = tmp_path / "train.json"
    path.write_text(json.dumps(ALPACA))
    config = sources.default_config()
    config.source, config.name, config.validation_fraction = "hf", str(path), 0.0
    train, _, _ = sources.load(config)
    assert [item.response for item in train] == ["Apple.", "cat"]


def test_utf16_text_is_named(tmp_path):
    path = tmp_path / "qa.csv"
    path.write_bytes("input,output\nhi,hello\n".encode("utf-16"))
    assert problems(path) == [(1, "file", "UTF-16 text is not supported; save the file as UTF-8")]


def test_null_tool_fields_of_an_arrow_table_are_absent_not_tool_calls(tmp_path):
    pyarrow = pytest.importorskip("pyarrow")
    from pyarrow import parquet

    plain = [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]
    tool_call = {"role": "assistant", "content": None, "tool_calls": [{"id": "1"}]}
    rows = [{"messages": plain, "tools": None}, {"messages": [plain[0], tool_call], "tools": None}]
    path = tmp_path / "chat.parquet"
    parquet.write_table(pyarrow.Table.from_pylist(rows), path)
    ((line, field, _),) = problems(path)
    assert (line, field) == (2, "[1].messages[1].tool_calls[0].function")
