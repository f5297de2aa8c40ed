"""Tests for the CSV reader: columns, quoted newlines, empty cells and missing columns."""

import pytest

from gemma_tune.data import csv_rows, example


def write(tmp_path, text, name="qa.csv"):
    path = tmp_path / name
    path.write_bytes(text.encode("utf-8") if isinstance(text, str) else text)
    return str(path)


def test_rows_become_examples_with_configured_columns(tmp_path):
    path = write(
        tmp_path,
        "question,answer,docs,persona\n"
        'How do I reset?,"Press the\nbutton.",Manual p. 3,You are support.\n'
        "Where is it?,Upstairs.,,\n",
    )
    result = csv_rows.read_csv(
        path,
        input_column="question",
        output_column="answer",
        context_column="docs",
        system_column="persona",
    )
    first, second = result.examples
    assert [(t.role, t.text) for t in first.turns] == [
        ("user", "How do I reset?"),
        ("model", "Press the\nbutton."),
    ]
    assert first.context == "Manual p. 3"
    assert first.system == "You are support."
    assert first.source == f"{path}:2"
    # The quoted newline makes the first row span lines 2-3: the next row starts on line 4.
    assert second.source == f"{path}:4"
    assert second.context is None and second.system is None
    assert result.rows_read == 2


def test_default_columns_and_no_optional_columns(tmp_path):
    path = write(tmp_path, "\ufeffinput,output,extra\nhi,hello,ignored\n")
    (item,) = csv_rows.read_csv(path).examples
    assert (item.prompt, item.response, item.context) == ("hi", "hello", None)


def test_missing_column_is_one_error_naming_the_existing_columns(tmp_path):
    path = write(tmp_path, "question,answer\na,b\n")
    with pytest.raises(example.DataError) as raised:
        csv_rows.read_csv(path, context_column="docs")
    (problem,) = raised.value.problems
    assert (problem.line, problem.field) == (1, "header")
    for name in ("'input'", "'output'", "'docs'", "'question'", "'answer'"):
        assert name in problem.reason


def test_empty_cells_are_reported_with_physical_line_and_column(tmp_path):
    path = write(
        tmp_path,
        'input,output\n"multi\nline",ok\n,missing input\n\nfine,\n  ,\t\ngood,row\n',
    )
    with pytest.raises(example.DataError) as raised:
        csv_rows.read_csv(path)
    assert [(p.line, p.field, p.reason) for p in raised.value.problems] == [
        (4, "input", "empty cell"),
        (6, "output", "empty cell"),
        (7, "input", "empty cell"),
        (7, "output", "empty cell"),
    ]


def test_short_and_long_rows_are_problems(tmp_path):
    path = write(tmp_path, "input,output\nonly one\na,b,c\n")
    with pytest.raises(example.DataError) as raised:
        csv_rows.read_csv(path)
    assert [(p.line, p.field) for p in raised.value.problems] == [
        (2, "row"),
        (2, "output"),
        (3, "row"),
    ]


def test_invalid_utf8_is_reported_with_its_line(tmp_path):
    path = write(tmp_path, b"input,output\nok,fine\ncaf\xe9,x\n")
    with pytest.raises(example.DataError) as raised:
        csv_rows.read_csv(path)
    (problem,) = raised.value.problems
    assert (problem.line, problem.field) == (3, "line")
    assert "invalid UTF-8" in problem.reason


def test_columns_not_read_are_warned_about_once(tmp_path):
    path = write(tmp_path, "id,input,output,notes\n1,a,b,x\n2,c,d,y\n")
    result = csv_rows.read_csv(path)
    assert [str(w) for w in result.warnings] == [
        f"{path}:1: id: column not used (not one of the data.*_column settings)",
        f"{path}:1: notes: column not used (not one of the data.*_column settings)",
    ]
