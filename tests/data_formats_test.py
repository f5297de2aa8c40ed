"""The row formats of the HF/TRL/OpenAI world: each read into the right examples, the loss
weights they imply honoured, and the data supervised tuning must not read refused by name."""

import json

import numpy as np
import pytest

from gemma_tune.data import example, jsonl, refused, sources

USER, ASSISTANT = "user", "assistant"


def write_rows(tmp_path, rows, name="data.jsonl"):
    path = tmp_path / name
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return str(path)


def read(path, **kwargs):
    return sources.read_file(path, **kwargs)


def problems(path, **kwargs):
    with pytest.raises(example.DataError) as raised:
        sources.read_file(path, **kwargs)
    return [(p.line, p.field, p.reason) for p in raised.value.problems]


def turns(item):
    return [(turn.role, turn.text, turn.weight) for turn in item.turns]


def chat(*messages, **extra):
    return {"messages": [dict(role=role, content=content) for role, content in messages], **extra}


# OpenAI chat: weight and name.


def test_openai_weight_zero_keeps_the_turn_out_of_the_loss(tmp_path, chat_template):
    row = chat((USER, "Say red."), (ASSISTANT, "blue"), (USER, "Say red!"), (ASSISTANT, "red"))
    row["messages"][1]["weight"] = 0
    row["messages"][3]["weight"] = 1
    (item,) = read(write_rows(tmp_path, [row])).examples
    assert turns(item) == [
        ("user", "Say red.", 1.0),
        ("model", "blue", 0.0),
        ("user", "Say red!", 1.0),
        ("model", "red", 1.0),
    ]
    encoded = chat_template.encode(item, 256)
    pairs = zip(encoded.token_ids, encoded.target_weights, strict=True)
    weighted = [int(i) for i, w in pairs if w > 0]
    assert chat_template._encoder.decode(weighted[:-1]) == "red"
    assert weighted[-1] == chat_template.end_of_turn_id
    # The excluded turn is still in the conversation the model sees.
    assert "blue" in chat_template._encoder.decode(encoded.token_ids.tolist())


def test_weight_zero_wins_over_train_on_prompt(tokenizer):
    from gemma_tune.training import template

    item = example.Example(
        turns=(example.Turn("user", "a"), example.Turn("model", "skip me", 0.0)),
    )
    encoded = template.ChatTemplate(tokenizer, train_on_prompt=True).encode(item, 256)
    assert 0 < encoded.target_weights.sum() < len(encoded.token_ids) - 1


@pytest.mark.parametrize(
    "weights, field, reason",
    [
        ((0,), "messages", "every assistant message has weight 0: nothing to train on"),
        ((2,), "messages[1].weight", "expected 0 or 1, got 2"),
        ((True,), "messages[1].weight", "expected 0 or 1, got True"),
    ],
)
def test_bad_weights_are_problems(tmp_path, weights, field, reason):
    row = chat((USER, "a"), (ASSISTANT, "b"))
    row["messages"][1]["weight"] = weights[0]
    assert problems(write_rows(tmp_path, [row])) == [(1, field, reason)]


def test_a_weight_on_a_user_message_is_a_problem(tmp_path):
    row = chat((USER, "a"), (ASSISTANT, "b"))
    row["messages"][0]["weight"] = 0
    assert problems(write_rows(tmp_path, [row])) == [
        (1, "messages[0].weight", "only assistant messages take a weight")
    ]


def test_unused_keys_warn_once_per_file_with_the_first_line(tmp_path):
    plain = chat((USER, "a"), (ASSISTANT, "b"))
    named = chat((USER, "c"), (ASSISTANT, "d"), id=7)
    named["messages"][0]["name"] = "ada"
    path = write_rows(tmp_path, [plain, named, {**named, "messages": named["messages"][:]}])
    result = read(path)
    assert len(result.examples) == 3
    assert [(w.line, w.field) for w in result.warnings] == [(2, "id"), (2, "messages[].name")]
    assert str(result.warnings[0]) == f"{path}:2: id: not used by the openai_chat format; ignored"


def test_warnings_reach_the_data_summary(tmp_path):
    path = write_rows(tmp_path, [{"text": f"doc {i}", "meta": i} for i in range(3)])
    config = sources.default_config()
    config.source, config.path = "file", path
    _, _, summary = sources.load(config)
    assert summary.warnings == [f"{path}:1: meta: not used by the text format; ignored"]
    assert f"warning: {path}:1: meta" in summary.format()


# Refused kinds: named, never half-read.


def test_kto_file_is_refused_once_not_read_as_prompt_completion(tmp_path):
    rows = [
        {"prompt": "2+2?", "completion": "4", "label": True},
        {"prompt": "2+2?", "completion": "5", "label": False},
    ]
    path = write_rows(tmp_path, rows)
    assert problems(path) == [(1, "label", refused.KTO)]
    assert problems(path, format="openai_completion") == [(1, "label", refused.KTO)]


@pytest.mark.parametrize(
    "row, field",
    [
        ({"prompt": "q", "chosen": "good", "rejected": "bad"}, "chosen"),
        ({"chosen": [{"role": "user", "content": "q"}], "rejected": []}, "chosen"),
        (
            {
                "input": {"messages": [{"role": "user", "content": "q"}]},
                "preferred_output": [{"role": "assistant", "content": "good"}],
                "non_preferred_output": [{"role": "assistant", "content": "bad"}],
            },
            "non_preferred_output",
        ),
    ],
)
def test_preference_data_is_named_as_such(tmp_path, row, field):
    ((line, found_field, reason),) = problems(write_rows(tmp_path, [row]))
    assert (line, found_field) == (1, field)
    assert reason.startswith("preference data") and "not supported for supervised tuning" in reason


def test_tool_calls_outside_openai_chat_rows_are_refused_not_misread(tmp_path):
    call = {"id": "1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
    sharegpt = {
        "conversations": [
            {"role": "user", "content": "Weather in Paris?"},
            {"role": "assistant", "content": None, "tool_calls": [call]},
            {"role": "tool", "tool_call_id": "1", "content": "sunny"},
            {"role": "assistant", "content": "Sunny."},
        ]
    }
    assert problems(write_rows(tmp_path, [sharegpt])) == [
        (1, "conversations[1].tool_calls", refused.TOOLS),
        (1, "conversations[2].tool_call_id", refused.TOOLS),
    ]
    legacy = {**chat((USER, "a"), (ASSISTANT, "b")), "functions": [{"name": "f"}]}
    assert problems(write_rows(tmp_path, [legacy], "l.jsonl")) == [
        (1, "functions", refused.LEGACY_FUNCTIONS)
    ]
    completion = {"prompt": "a", "completion": "b", "tools": [{"type": "function"}]}
    assert problems(write_rows(tmp_path, [completion], "c.jsonl")) == [(1, "tools", refused.TOOLS)]


# The other formats.


def test_alpaca_jsonl_is_detected_and_can_be_forced(tmp_path):
    rows = [
        {"instruction": "Translate to French.", "input": "cat", "output": "chat"},
        {"instruction": "Name a colour.", "input": "", "output": "Red."},
    ]
    path = write_rows(tmp_path, rows)
    for format in ("auto", "alpaca"):
        first, second = read(path, format=format).examples
        assert turns(first) == [
            ("user", "Translate to French.\n\ncat", 1.0),
            ("model", "chat", 1.0),
        ]
        assert turns(second) == [("user", "Name a colour.", 1.0), ("model", "Red.", 1.0)]


def test_alpaca_with_a_text_column_is_alpaca_and_the_column_is_warned(tmp_path):
    row = {"instruction": "i", "input": "", "output": "o", "text": "### Instruction: i ..."}
    result = read(write_rows(tmp_path, [row]))
    assert turns(result.examples[0]) == [("user", "i", 1.0), ("model", "o", 1.0)]
    assert [w.field for w in result.warnings] == ["text"]


def test_sharegpt(tmp_path):
    row = {
        "conversations": [
            {"from": "system", "value": "Be terse."},
            {"from": "human", "value": "2+2?"},
            {"from": "gpt", "value": "4"},
            {"from": "human", "value": "3+3?"},
            {"from": "gpt", "value": "6"},
        ]
    }
    (item,) = read(write_rows(tmp_path, [row])).examples
    assert item.system == "Be terse."
    assert [t[:2] for t in turns(item)] == [
        ("user", "2+2?"),
        ("model", "4"),
        ("user", "3+3?"),
        ("model", "6"),
    ]
    bad = {"conversations": [{"from": "human", "value": "a"}, {"from": "bot", "value": "b"}]}
    ((line, field, reason),) = problems(write_rows(tmp_path, [bad], "bad.jsonl"))
    assert (line, field) == (1, "conversations[1].from")
    assert reason.startswith("unknown role 'bot'; expected one of 'system', 'human', 'gpt'")


def test_trl_prompt_completion_string_and_conversational(tmp_path):
    rows = [
        {"prompt": "The sky is", "completion": " blue."},
        {
            "prompt": [{"role": "system", "content": "S"}, {"role": "user", "content": "Hi"}],
            "completion": [{"role": "assistant", "content": "Hello"}],
        },
    ]
    plain, conversational = read(write_rows(tmp_path, rows)).examples
    assert turns(plain) == [("user", "The sky is", 1.0), ("model", " blue.", 1.0)]
    assert conversational.system == "S"
    assert turns(conversational) == [("user", "Hi", 1.0), ("model", "Hello", 1.0)]
    mixed = {"prompt": [{"role": "user", "content": "Hi"}], "completion": "Hello"}
    ((line, field, reason),) = problems(write_rows(tmp_path, [mixed], "mixed.jsonl"))
    assert (line, field) == (1, "completion")
    assert "both strings or both lists of messages" in reason


def test_text_rows_are_documents_with_loss_on_every_token(tmp_path, chat_template):
    (item,) = read(write_rows(tmp_path, [{"text": "the cat sat on the mat"}])).examples
    assert item.is_document and item.turns == () and item.response == "the cat sat on the mat"
    encoded = chat_template.encode(item, 256)
    ids = encoded.token_ids.tolist()
    assert ids[0] == chat_template.bos_id and ids[-1] == chat_template.eos_id
    assert chat_template.start_of_turn_id not in ids
    assert encoded.target_weights[0] == 0 and np.all(encoded.target_weights[1:] == 1)
    assert chat_template._encoder.decode(ids[1:-1]) == "the cat sat on the mat"
    assert chat_template.encode_prompt(item).tolist() == [chat_template.bos_id]


def test_documents_are_deduplicated_by_text(tmp_path):
    path = write_rows(tmp_path, [{"text": "a"}, {"text": "a"}, {"text": "b"}])
    config = sources.default_config()
    config.source, config.path, config.validation_fraction = "file", path, 0.0
    train, _, summary = sources.load(config)
    assert [item.text for item in train] == ["a", "b"] and summary.duplicates_removed == 1


def test_an_empty_text_is_a_problem(tmp_path):
    assert problems(write_rows(tmp_path, [{"text": " "}])) == [(1, "text", "empty")]


def test_a_file_mixing_formats_names_both(tmp_path):
    rows = [{"instruction": "i", "output": "o"}, {"text": "doc"}]
    ((line, field, reason),) = problems(write_rows(tmp_path, rows))
    assert (line, field) == (2, "row")
    assert "of the text format, but the file is alpaca" in reason


def test_jsonl_reader_keeps_its_name_and_signature(tmp_path):
    path = write_rows(tmp_path, [{"prompt": "a", "completion": "b"}])
    assert len(jsonl.read_jsonl(path).examples) == 1


def test_a_rendered_text_column_next_to_messages_is_not_language_modelling(tmp_path):
    row = chat((USER, "a"), (ASSISTANT, "b"), text="<start_of_turn>user\na...")
    result = read(write_rows(tmp_path, [row]))
    assert not result.examples[0].is_document
    assert [w.field for w in result.warnings] == ["text"]


def test_sharegpt_with_role_and_content_keys(tmp_path):
    row = {
        "conversations": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]
    }
    (item,) = read(write_rows(tmp_path, [row])).examples
    assert [t[:2] for t in turns(item)] == [("user", "a"), ("model", "b")]


def test_alpaca_history_becomes_the_earlier_turns(tmp_path):
    row = {"instruction": "And 3+3?", "input": "", "output": "6", "history": [["2+2?", "4"]]}
    (item,) = read(write_rows(tmp_path, [row])).examples
    assert [t[:2] for t in turns(item)] == [
        ("user", "2+2?"),
        ("model", "4"),
        ("user", "And 3+3?"),
        ("model", "6"),
    ]
    bad = {**row, "history": [["2+2?"]]}
    assert problems(write_rows(tmp_path, [bad], "bad.jsonl")) == [
        (1, "history[0]", "expected a [prompt, response] pair")
    ]
