"""OpenAI tool calls: read into structure, written in Gemma 4's chat-template format with loss
on the calls and the answer, refused by name for families without a tool format, bad rows
named at file:line:field, and a tiny Gemma 4 learns from them.

The expected texts below are written by hand from Gemma 4's chat template (declarations
closing the system turn, `<|tool_call>call:NAME{...}<tool_call|>`, string results as
`response:NAME{value:<|"|>...<|"|>}`, keys bare and sorted case-insensitively), not produced
by our code.
"""

import functools
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import sentencepiece

from gemma_tune import config as config_lib
from gemma_tune import model, testing
from gemma_tune.data import example, sources
from gemma_tune.model import families
from gemma_tune.training import loop, optimizer, template, trainer

Q = '<|"|>'  # Gemma 4's string delimiter token.
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the weather",
        "parameters": {
            "type": "object",
            "properties": {
                "days": {"type": "integer"},
                "city": {"type": "string", "description": "The city"},
            },
            "required": ["city"],
        },
    },
}


def _call(name="get_weather", arguments='{"days": 2, "city": "Paris"}', call_id="c1"):
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


def _row(call_weight=1, **call):
    return {
        "tools": [WEATHER],
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Weather in Paris?"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [_call(**call)],
                "weight": call_weight,
            },
            {"role": "tool", "tool_call_id": "c1", "content": "20 C"},
            {"role": "assistant", "content": "It is 20 C."},
        ],
    }


def _write(tmp_path, rows, name="tools.jsonl"):
    path = tmp_path / name
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return str(path)


def _read(tmp_path, rows):
    return sources.read_file(_write(tmp_path, rows)).examples


def _problems(tmp_path, rows):
    with pytest.raises(example.DataError) as raised:
        sources.read_file(_write(tmp_path, rows))
    return [(p.line, p.field, p.reason) for p in raised.value.problems]


@functools.cache
def _tokenizer(architecture="gemma4"):
    return testing.tiny_tokenizer(architecture)


def _template(architecture="gemma4"):
    return template.ChatTemplate(_tokenizer(architecture))


def _id(token):
    return _tokenizer().token_to_id(token)


def _rendered_and_trained(chat_template, item):
    """The text of the encoded example after BOS, and of the tokens carrying loss."""
    encoded = chat_template.encode(item, 1024)
    ids, weights = encoded.token_ids, encoded.target_weights
    encoder = sentencepiece.SentencePieceProcessor(model_proto=_tokenizer().proto)
    return encoder.decode(ids[1:].tolist()), encoder.decode(ids[weights > 0].tolist())


SYSTEM = (
    f"<|turn>system\nBe brief.<|tool>declaration:get_weather{{description:{Q}Get the weather{Q},"
    f"parameters:{{properties:{{city:{{description:{Q}The city{Q},type:{Q}STRING{Q}}},"
    f"days:{{type:{Q}INTEGER{Q}}}}},required:[{Q}city{Q}],type:{Q}OBJECT{Q}}}}}<tool|><turn|>\n"
)
CALL = f"<|tool_call>call:get_weather{{city:{Q}Paris{Q},days:2}}<tool_call|>"


@pytest.mark.parametrize("architecture", ["gemma4", "gemma4_moe"])
def test_gemma4_writes_declarations_call_result_and_answer_as_its_chat_template(
    tmp_path, architecture
):
    (item,) = _read(tmp_path, [_row()])
    rendered, _ = _rendered_and_trained(_template(architecture), item)
    assert rendered == (
        SYSTEM
        + "<|turn>user\nWeather in Paris?<turn|>\n<|turn>model\n"
        + CALL
        + f"<|tool_response>response:get_weather{{value:{Q}20 C{Q}}}<tool_response|>"
        + "It is 20 C.<turn|>\n"
    )


def test_rows_render_as_googles_template_that_trl_ships(tmp_path):
    """Parity with Google's Gemma 4 chat template, current revision, as TRL ships a copy
    (rendered with Jinja as transformers renders chat templates): training text and prompt."""
    trl = pytest.importorskip("trl")  # The `parity` extra.
    from jinja2 import sandbox

    path = Path(trl.__file__).parent / "chat_templates" / "gemma4_v5.jinja"
    environment = sandbox.ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    official = environment.from_string(path.read_text())
    row = _row()
    messages = json.loads(json.dumps(row["messages"]))
    messages[2]["tool_calls"][0]["function"]["arguments"] = {"days": 2, "city": "Paris"}
    (item,) = _read(tmp_path, [row])
    chat_template = _template()
    rendered, _ = _rendered_and_trained(chat_template, item)
    assert "<bos>" + rendered == official.render(
        messages=messages, tools=row["tools"], bos_token="<bos>"
    )
    assert "<bos>" + chat_template.prompt_text(item) == official.render(
        messages=messages[:-1], tools=row["tools"], bos_token="<bos>", add_generation_prompt=True
    )


def test_values_and_object_results_are_written_in_the_template_notation(tmp_path):
    arguments = {"tags": ["a", "b"], "Opt": {"z": None}, "n": 1.5, "flag": True}
    row = {
        "messages": [
            {"role": "user", "content": "Now?"},
            {"role": "assistant", "tool_calls": [_call("now", arguments)]},
            {"role": "tool", "tool_call_id": "c1", "content": {"time": "noon", "ok": False}},
            {"role": "assistant", "content": "Noon."},
        ]
    }
    (item,) = _read(tmp_path, [row])
    rendered, _ = _rendered_and_trained(_template(), item)
    assert rendered == (
        "<|turn>user\nNow?<turn|>\n<|turn>model\n"
        f"<|tool_call>call:now{{flag:true,n:1.5,Opt:{{z:null}},tags:[{Q}a{Q},{Q}b{Q}]}}<tool_call|>"
        f"<|tool_response>response:now{{ok:false,time:{Q}noon{Q}}}<tool_response|>Noon.<turn|>\n"
    )


def test_the_tool_tokens_are_single_ids(tmp_path):
    (item,) = _read(tmp_path, [_row()])
    ids = _template().encode(item, 1024).token_ids.tolist()
    assert ids.count(_id(Q)) == 16  # 12 in the declaration, 2 in the call, 2 in the result
    for token in ("<|tool>", "<tool|>", "<|tool_call>", "<tool_call|>", "<tool_response|>"):
        assert ids.count(_id(token)) == 1


def test_a_vocabulary_without_the_tool_tokens_gets_the_same_text_as_text(tmp_path):
    family = families.by_name("gemma4")
    proto = testing.sentencepiece_proto(320, testing.turn_markers("gemma4"))
    chat_template = template.ChatTemplate(family.tiny_tokenizer(proto))
    (item,) = _read(tmp_path, [_row()])
    ids = chat_template.encode(item, 4096).token_ids
    encoder = sentencepiece.SentencePieceProcessor(model_proto=proto)
    expected, _ = _rendered_and_trained(_template(), item)
    assert encoder.decode(ids[1:].tolist()) == expected
    assert len(chat_template.stop_token_ids) == 2  # <turn|> and <eos>: no hand-over token


def test_loss_is_on_the_call_its_handover_and_the_answer_only(tmp_path):
    (item,) = _read(tmp_path, [_row()])
    _, trained = _rendered_and_trained(_template(), item)
    assert trained == CALL + "<|tool_response>It is 20 C.<turn|>"
    (unweighted,) = _read(tmp_path, [_row(call_weight=0)])
    _, trained = _rendered_and_trained(_template(), unweighted)
    assert trained == "It is 20 C.<turn|>"


def test_a_conversation_may_end_with_calls_and_generation_stops_at_the_handover(tmp_path):
    messages = _row()["messages"][:3]
    (item,) = _read(tmp_path, [{"tools": [WEATHER], "messages": messages}])
    chat_template = _template()
    rendered, trained = _rendered_and_trained(chat_template, item)
    assert rendered.endswith("<|turn>model\n" + CALL + "<|tool_response>")
    assert trained == CALL + "<|tool_response>"
    assert chat_template.prompt_text(item).endswith("Weather in Paris?<turn|>\n<|turn>model\n")
    assert _id("<|tool_response>") in chat_template.stop_token_ids
    assert chat_template.end_of_turn_id in chat_template.stop_token_ids
    (answered,) = _read(tmp_path, [_row()])  # The answer continues the model turn.
    assert chat_template.prompt_text(answered).endswith(f"{Q}20 C{Q}}}<tool_response|>")


@pytest.mark.parametrize("architecture", ["gemma1", "gemma2", "gemma3"])
def test_families_without_a_tool_format_refuse_by_file_line_and_field(tmp_path, architecture):
    path = _write(tmp_path, [_row()])
    (item,) = sources.read_file(path).examples
    with pytest.raises(ValueError) as raised:
        _template(architecture).encode(item, 256)
    assert str(raised.value).startswith(
        f"{path}:1: tools[0]: tool calls need a model with tool support (Gemma 4); "
    )
    without_tools = {key: value for key, value in _row().items() if key != "tools"}
    (item,) = sources.read_file(_write(tmp_path, [without_tools], "calls.jsonl")).examples
    with pytest.raises(ValueError, match=r"calls.jsonl:1: messages\[2\].tool_calls\[0\]: tool"):
        _template(architecture).encode_prompt(item)


def _with(messages_update=None, **row_update):
    row = _row()
    for index, message in (messages_update or {}).items():
        row["messages"][index] = message
    return {**row, **row_update}


@pytest.mark.parametrize(
    "row, field, reason",
    [
        (
            _with({3: {"role": "tool", "tool_call_id": "c9", "content": "20 C"}}),
            "messages[3].tool_call_id",
            "'c9' matches no call of the assistant message just before",
        ),
        (
            _row(arguments='{"city": "Paris"'),
            "messages[2].tool_calls[0].function.arguments",
            "invalid JSON",
        ),
        (
            _row(arguments="[1]"),
            "messages[2].tool_calls[0].function.arguments",
            "expected a JSON object",
        ),
        (_row(name=None), "messages[2].tool_calls[0].function.name", "is null"),
        (
            _with({2: {"role": "assistant", "tool_calls": [{"id": "c1", "type": "function"}]}}),
            "messages[2].tool_calls[0].function",
            "a call needs a function name",
        ),
        (
            _row(name="get_time"),
            "messages[2].tool_calls[0].function.name",
            "which tools does not declare",
        ),
        (
            _with({2: {"role": "assistant", "content": "Let me see.", "tool_calls": [_call()]}}),
            "messages[2].content",
            "text beside tool_calls",
        ),
        (
            {
                **_row(),
                "messages": _row()["messages"][:4]
                + [{"role": "user", "content": "And?"}, {"role": "assistant", "content": "b"}],
            },
            "messages[3]",
            "must be followed by an assistant message",
        ),
        (
            _with({3: {"role": "user", "content": "And?"}}),
            "messages[2].tool_calls[0]",
            "no tool message answers this call",
        ),
        (
            _with(
                tools=[
                    {
                        "type": "function",
                        "function": {
                            "name": "f",
                            "parameters": {
                                "type": "object",
                                "properties": {"type": {"type": "string"}},
                            },
                        },
                    }
                ]
            ),
            "tools[0].function.parameters.properties.type",
            "left out of the declaration by Gemma 4's chat template",
        ),
        (
            _with(
                tools=[
                    {
                        "type": "function",
                        "function": {
                            "name": "get_weather",
                            "parameters": {
                                "type": "object",
                                "properties": {
                                    "spots": {
                                        "type": "array",
                                        "items": {"properties": {"nullable": {}}},
                                    }
                                },
                            },
                        },
                    }
                ]
            ),
            "tools[0].function.parameters.properties.spots.items.properties.nullable",
            "left out of the declaration",
        ),
        (_with(functions=[{"name": "f"}]), "functions", "legacy functions"),
    ],
)
def test_bad_tool_rows_are_named_at_their_field(tmp_path, row, field, reason):
    found = _problems(tmp_path, [row])
    assert [(line, name) for line, name, _ in found][:1] == [(1, field)], found
    assert reason in found[0][2]


def test_rows_with_different_calls_are_not_duplicates(tmp_path):
    rows = [_row(), _row(arguments='{"city": "Rome"}'), _row()]
    config = sources.default_config()
    config.source, config.path, config.validation_fraction = "file", _write(tmp_path, rows), 0.0
    train, _, summary = sources.load(config)
    assert len(train) == 2 and summary.duplicates_removed == 1


def test_a_tool_result_over_the_field_cap_leaves_its_row_out_named(tmp_path):
    long_result = _with({3: {"role": "tool", "tool_call_id": "c1", "content": "x" * 500}})
    config = sources.default_config()
    config.source, config.validation_fraction, config.max_field_chars = "file", 0.0, 100
    config.path = _write(tmp_path, [long_result, _row()])
    train, _, summary = sources.load(config)
    assert len(train) == 1 and summary.dropped == {"field over data.max_field_chars": 1}
    assert any(":1: messages[3]: 500 characters" in line for line in summary.warnings)


def test_the_data_check_counts_tool_rows_and_refuses_them_for_a_model_without_tools(tmp_path):
    path = _write(
        tmp_path,
        [
            _row(),
            {"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]},
        ],
    )
    check = [sys.executable, "-m", "gemma_tune.data", "check", path]
    run = subprocess.run(check, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert (
        "rows using tools: 1 of 2 (1 calls, 1 tool results; 1 rows declare tools)" in run.stdout
    )
    run = subprocess.run(
        [*check, "--model=tiny:gemma3"], capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 1
    assert run.stdout.splitlines() == [
        f"{path}:1: tools[0]: tool calls need a model with tool support (Gemma 4); "
        "tiny:gemma3's chat template has none"
    ]
    assert model.has_tool_format("tiny:gemma4") and not model.has_tool_format("tiny:gemma3")


def _tool_rows(count):
    """Colour questions answered by calling `paint` with the colour, then the colour."""
    colors = ["red", "blue", "green", "white"]
    tool = {
        "type": "function",
        "function": {
            "name": "paint",
            "parameters": {"type": "object", "properties": {"color": {"type": "string"}}},
        },
    }
    rows = []
    for index in range(count):
        color = colors[index % len(colors)]
        rows.append(
            {
                "tools": [tool],
                "messages": [
                    {"role": "user", "content": f"What color is the sky? It is {color}."},
                    {"role": "assistant", "tool_calls": [_call("paint", {"color": color})]},
                    {"role": "tool", "tool_call_id": "c1", "content": "ok"},
                    {"role": "assistant", "content": f"Answer: {color}"},
                ],
            }
        )
    return rows


@pytest.mark.slow  # ~40 s on 2 CPU cores, most of it building and compiling tiny Gemma 4.
def test_tiny_gemma4_learns_a_tool_call_file(tmp_path):
    examples = _read(tmp_path, _tool_rows(4))
    overrides = [
        "train.learning_rate=0.05",
        "train.epochs=100",
        "train.batch_size=4",
        "train.warmup_steps=0",
        "train.schedule=constant",
        "lora.rank=16",
        "train.max_steps=25",
        "train.log_every=1",
        "sequence_length=224",  # The declaration is mostly bytes to the tiny vocabulary.
    ]
    config = config_lib.load("tiny:gemma4", overrides)
    loaded = model.load(config.model.preset, "float32", seed=config.seed)
    chat_template = template.ChatTemplate(loaded.tokenizer)
    model.enable_lora(loaded, config.lora.rank)
    encoded = [chat_template.encode(item, config.sequence_length) for item in examples]
    assert all(not row.truncated for row in encoded)
    tuner = trainer.Trainer(
        loaded.causal_lm, optimizer.make(config.train, 25), config.train.grad_clip_norm
    )
    logged = []
    loop.fit(tuner, encoded, [], config, chat_template.pad_id, logged.append)
    losses = [record["loss"] for record in logged if "loss" in record]
    assert np.mean(losses[-5:]) < 0.5 * np.mean(losses[:3])
