"""Tests for the JSONL reader: every dialect, every kind of problem, detection and forcing."""

import json

import pytest

from gemma_tune.data import dolly, example, jsonl


def write_lines(tmp_path, lines, name="data.jsonl"):
    """Writes `lines` (dicts become JSON, str and bytes are written as they are) to a file."""
    path = tmp_path / name
    with open(path, "wb") as file:
        for line in lines:
            if isinstance(line, (dict, list)):
                line = json.dumps(line)
            if isinstance(line, str):
                line = line.encode("utf-8")
            file.write(line + b"\n")
    return str(path)


def problems_of(path, **kwargs):
    """Reads a file expected to fail and returns its problems as (line, field) pairs."""
    with pytest.raises(example.DataError) as raised:
        jsonl.read_jsonl(path, **kwargs)
    return [(p.line, p.field) for p in raised.value.problems], raised.value


def turns(item):
    return [(turn.role, turn.text) for turn in item.turns]


def test_dolly_fields_land_in_example(tmp_path):
    path = write_lines(
        tmp_path,
        [
            {"instruction": "Name a colour.", "context": "", "response": "Red.", "category": "qa"},
            "",
            {"instruction": "Summarize.", "context": "A long text.", "response": "Short."},
        ],
    )
    result = jsonl.read_jsonl(path, keep_context=True)
    assert [turns(item) for item in result.examples] == [
        [("user", "Name a colour."), ("model", "Red.")],
        [("user", "Summarize."), ("model", "Short.")],
    ]
    assert result.examples[0].context is None
    assert result.examples[1].context == "A long text."
    assert [item.source for item in result.examples] == [f"{path}:1", f"{path}:3"]
    assert result.rows_read == 2
    assert result.dropped == {}


def test_dolly_context_rows_are_dropped_and_counted_without_keep_context(tmp_path):
    path = write_lines(
        tmp_path,
        [
            {"instruction": "a", "context": "passage", "response": "b"},
            {"instruction": "c", "context": "  ", "response": "d"},
            {"instruction": "e", "context": None, "response": "f"},
            {"instruction": "g", "context": "other passage", "response": "h"},
        ],
    )
    result = jsonl.read_jsonl(path)
    assert [item.prompt for item in result.examples] == ["c", "e"]
    assert result.dropped == {dolly.HAS_CONTEXT: 2}
    assert result.rows_read == 4


def test_gemini_with_system_and_multiple_parts(tmp_path):
    row = {
        "systemInstruction": {"role": "system", "parts": [{"text": "Be brief. "}, {"text": "!"}]},
        "contents": [
            {"role": "user", "parts": [{"text": "Hi "}, {"text": "there"}]},
            {"role": "model", "parts": [{"text": "Hello."}]},
            {"role": "user", "parts": [{"text": "Bye"}]},
            {"role": "model", "parts": [{"text": "Goodbye."}]},
        ],
    }
    (item,) = jsonl.read_jsonl(write_lines(tmp_path, [row])).examples
    assert item.system == "Be brief. !"
    assert turns(item) == [
        ("user", "Hi there"),
        ("model", "Hello."),
        ("user", "Bye"),
        ("model", "Goodbye."),
    ]
    assert item.context is None


@pytest.mark.parametrize(
    "row",
    [
        {"input_text": "question", "output_text": "answer"},
        {"text_input": "question", "output": "answer"},
        {"prompt": "question", "completion": "answer"},
    ],
    ids=["vertex_legacy", "ai_studio", "openai_completion"],
)
def test_pair_formats(tmp_path, row):
    (item,) = jsonl.read_jsonl(write_lines(tmp_path, [row])).examples
    assert turns(item) == [("user", "question"), ("model", "answer")]
    assert item.system is None


def test_openai_chat_system_becomes_example_system(tmp_path):
    row = {
        "messages": [
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": "2+2?"},
            {"role": "assistant", "content": "4"},
            {"role": "user", "content": [{"type": "text", "text": "And 3+3?"}]},
            {"role": "assistant", "content": "6"},
        ]
    }
    (item,) = jsonl.read_jsonl(write_lines(tmp_path, [row])).examples
    assert item.system == "You are terse."
    assert turns(item) == [("user", "2+2?"), ("model", "4"), ("user", "And 3+3?"), ("model", "6")]


@pytest.mark.parametrize(
    "row, expected",
    [
        ({"instruction": "", "response": "b"}, [(1, "instruction")]),
        ({"instruction": "a"}, [(1, "row")]),
        ({"instruction": "a", "response": 3}, [(1, "response")]),
        ({"instruction": "a", "response": "b", "context": ["x"]}, [(1, "context")]),
        ({"input_text": "a", "output_text": " "}, [(1, "output_text")]),
        ({"text_input": None, "output": "b"}, [(1, "text_input")]),
        ({"prompt": "a", "completion": ""}, [(1, "completion")]),
        ({"contents": [{"role": "user", "parts": [{"text": "a"}]}]}, [(1, "contents[0].role")]),
        (
            {
                "contents": [
                    {"role": "user", "parts": [{"text": "a"}]},
                    {"role": "bot", "parts": [{"text": "b"}]},
                ]
            },
            [(1, "contents[1].role")],
        ),
        (
            {
                "contents": [
                    {"role": "user", "parts": [{"text": "a"}]},
                    {"role": "model", "parts": [{"text": "b"}]},
                    {"role": "model", "parts": [{"text": "c"}]},
                ]
            },
            [(1, "contents[2].role")],
        ),
        (
            {
                "contents": [
                    {"role": "user", "parts": [{"text": "a"}]},
                    {"role": "model", "parts": [{"inlineData": {}}]},
                ]
            },
            [(1, "contents[1].parts[0].inlineData.mimeType")],
        ),
        (
            {
                "contents": [
                    {"role": "user", "parts": []},
                    {"role": "model", "parts": [{"text": "b"}]},
                ]
            },
            [(1, "contents[0].parts")],
        ),
        ({"contents": "hello"}, [(1, "contents")]),
        (
            {
                "messages": [
                    {"role": "user", "content": "a"},
                    {"role": "assistant", "content": ""},
                ]
            },
            [(1, "messages[1].content")],
        ),
        (
            {
                "messages": [
                    {"role": "user", "content": "a"},
                    {"role": "system", "content": "late"},
                    {"role": "assistant", "content": "b"},
                ]
            },
            [(1, "messages[1].role")],
        ),
        (
            {
                "messages": [
                    {"role": "system", "content": "s"},
                    {"role": "user", "content": "a"},
                    {"role": "tool", "content": "b"},
                ]
            },
            [(1, "messages[2].tool_call_id")],
        ),
        (
            {
                "messages": [
                    {"role": "system", "content": "s"},
                    {"role": "user", "content": "a"},
                    {"role": "user", "content": "b"},
                    {"role": "assistant", "content": "c"},
                ]
            },
            [(1, "messages[2].role")],
        ),
        (
            {
                "messages": [
                    {"role": "system", "content": "s"},
                    {"role": "user", "content": "a"},
                    {"role": "assistant", "content": "b"},
                    {"role": "user", "content": "c"},
                ]
            },
            [(1, "messages[3].role")],
        ),
    ],
)
def test_bad_rows_name_line_and_field(tmp_path, row, expected):
    found, _ = problems_of(write_lines(tmp_path, [row]))
    assert found == expected


def test_conversation_not_ending_with_model_says_so(tmp_path):
    messages = [("user", "a"), ("assistant", "b"), ("user", "c")]
    row = {"messages": [{"role": role, "content": content} for role, content in messages]}
    _, error = problems_of(write_lines(tmp_path, [row]))
    assert "does not end with a model turn" in error.problems[0].reason
    assert str(error.problems[0]).startswith(f"{tmp_path / 'data.jsonl'}:1: messages[2].role: ")


def test_all_problems_of_a_file_are_reported(tmp_path):
    path = write_lines(
        tmp_path,
        [
            {"instruction": "ok", "response": "fine"},
            {"instruction": "", "response": ""},
            b'{"instruction": "caf\xe9", "response": "x"}',
            "{not json",
            "",
            '"a string"',
            {"instruction": "ok", "response": "fine", "context": 7},
        ],
    )
    found, error = problems_of(path)
    assert found == [
        (2, "instruction"),
        (2, "response"),
        (3, "line"),
        (4, "line"),
        (6, "row"),
        (7, "context"),
    ]
    assert "invalid UTF-8" in error.problems[2].reason
    assert "invalid JSON" in error.problems[3].reason
    assert "6 problem(s)" in str(error)


def test_multiple_problems_in_one_gemini_row(tmp_path):
    row = {
        "systemInstruction": {"parts": [{"text": ""}]},
        "contents": [
            {"role": "user", "parts": [{"text": ""}]},
            {"role": "user", "parts": [{"text": "b"}]},
        ],
    }
    found, _ = problems_of(write_lines(tmp_path, [row]))
    assert found == [
        (1, "systemInstruction.parts"),
        (1, "contents[0].parts"),
        (1, "contents[1].role"),
    ]


def test_mixed_format_file_is_rejected_naming_the_formats(tmp_path):
    path = write_lines(
        tmp_path,
        [
            {"prompt": "a", "completion": "b"},
            {"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]},
            {"prompt": "c", "completion": "d"},
        ],
    )
    found, error = problems_of(path)
    assert found == [(2, "row")]
    assert "openai_chat" in error.problems[0].reason
    assert "openai_completion" in error.problems[0].reason


def test_format_is_detected_from_the_first_parseable_row(tmp_path):
    path = write_lines(tmp_path, ["{broken", {"text_input": "a", "output": "b"}])
    found, _ = problems_of(path)
    assert found == [(1, "line")]
    good = write_lines(tmp_path, ["", {"text_input": "a", "output": "b"}], name="good.jsonl")
    assert jsonl.read_jsonl(good).examples[0].source == f"{good}:2"


def test_forced_format_rejects_rows_of_another_format(tmp_path):
    path = write_lines(tmp_path, [{"prompt": "a", "completion": "b"}])
    found, error = problems_of(path, format="dolly")
    assert found == [(1, "row")]
    assert "openai_completion" in error.problems[0].reason and "dolly" in error.problems[0].reason


def test_forced_format_reports_missing_fields_of_unknown_rows(tmp_path):
    path = write_lines(tmp_path, [{"question": "a", "answer": "b"}])
    found, _ = problems_of(path, format="ai_studio")
    assert found == [(1, "text_input"), (1, "output")]


def test_forced_format_resolves_ambiguous_rows(tmp_path):
    path = write_lines(tmp_path, [{"instruction": "i", "response": "r", "output": "o"}])
    found, error = problems_of(path)
    assert found == [(1, "row")]
    assert "several formats (dolly, alpaca)" in error.problems[0].reason
    result = jsonl.read_jsonl(path, format="alpaca")
    assert turns(result.examples[0]) == [("user", "i"), ("model", "o")]
    assert [(w.line, w.field) for w in result.warnings] == [(1, "response")]


def test_a_row_fitting_no_format_names_the_closest_and_what_is_missing(tmp_path):
    _, error = problems_of(write_lines(tmp_path, [{"instruction": "a", "input": "b"}]))
    assert error.problems[0].reason == (
        "the keys (input, instruction) fit no supported format; closest: "
        "alpaca (missing output); dolly (missing response)"
    )


def test_unknown_keys_fit_no_format(tmp_path):
    found, error = problems_of(write_lines(tmp_path, [{"question": "a", "answer": "b"}]))
    assert found == [(1, "row")]
    assert "fit no supported format (each needs: openai_chat: messages;" in str(error)


def test_unknown_format_argument(tmp_path):
    with pytest.raises(ValueError, match="openai_chat"):
        jsonl.read_jsonl(write_lines(tmp_path, []), format="bogus")


def test_byte_order_mark_and_crlf_are_accepted(tmp_path):
    path = tmp_path / "bom.jsonl"
    path.write_bytes(b'\xef\xbb\xbf{"prompt": "a", "completion": "b"}\r\n')
    (item,) = jsonl.read_jsonl(path).examples
    assert turns(item) == [("user", "a"), ("model", "b")]
