"""Checks a data file before training: `python -m gemma_tune.data check FILE`.

Validates every row the way training would read it (any file `data.source=file` reads: JSONL,
a JSON array, CSV, Parquet, a compressed one, a `save_to_disk` folder), prints every problem as
`file:line: field: reason` and exits 1, or prints the data summary and the character and word
lengths of the conversations and exits 0. No model or tokenizer is loaded by default, so it
runs in a second; `--model=PRESET --sequence_length=N` also loads that model's tokenizer and
reports token lengths with the chat template and how many examples N tokens truncate.
Rows with images (docs/data_formats.md#images) are read, every image opened and decoded, and
summarized (rows with images, images per row, sizes, formats); with `--model`, a text-only
model that reads no images (`model.reads_images`) makes each image row an error. Rows with
OpenAI tool calls (docs/data_formats.md#tool-calls) are counted (calls, tool results); with
`--model`, a model whose chat template has no tool format (`model.has_tool_format`: all but
Gemma 4) makes each such row an error:

    python -m gemma_tune.data check train.jsonl
    python -m gemma_tune.data check qa.csv --input_column=question --output_column=answer
    python -m gemma_tune.data check train.jsonl --model=gemma_2b_en --sequence_length=256
    python -m gemma_tune.data check alpaca_data.json --format=alpaca
    python -m gemma_tune.data check my_dataset/ --split=train      # a save_to_disk folder
    python -m gemma_tune.data check pairs.jsonl --preference=auto   # preference pairs (DPO)

`--preference=auto` (or a preference format, `preference_formats.NAMES`, or `csv`) reads the
file as preference pairs (`preference_rows`) and prints how many there are and the lengths of
their answers; with `--model`, the token lengths of both rows of each pair, how many the
sequence length truncates and how many it cuts to no answer at all. The reader options
default to the experiment config's `data.*` values (`gemma_tune.config`).

Stdout holds the result: the summary and lengths of a good file, or one line per problem of a
bad one (`file:line: field: reason`, so `... check x.jsonl > problems.txt` keeps them all).
Stderr holds the rest: how many problems, loading the tokenizer, hints, and an error that is not
about one row (a missing file, an unknown preset), as one line (`--debug` shows its traceback).
"""

from __future__ import annotations

import sys

from absl import app, flags

from gemma_tune import command_line, console
from gemma_tune import config as config_lib
from gemma_tune.data import (
    duplicates,
    example,
    images,
    lengths,
    preference_formats,
    preference_rows,
    sources,
    summary,
    tool_messages,
)

COMMANDS = ("check",)
_DEFAULTS = config_lib.base_config()
_DATA = _DEFAULTS.data

FLAGS = flags.FLAGS
flags.DEFINE_enum("format", _DATA.format, sources.FILE_FORMATS, "The file's format.")
flags.DEFINE_string("input_column", _DATA.input_column, "CSV: the user column.")
flags.DEFINE_string("output_column", _DATA.output_column, "CSV: the model column.")
flags.DEFINE_string("context_column", _DATA.context_column, "CSV: an optional context column.")
flags.DEFINE_string("system_column", _DATA.system_column, "CSV: an optional system column.")
flags.DEFINE_string("split", _DATA.split, "A saved DatasetDict folder: the split to read.")
flags.DEFINE_bool("keep_context", _DATA.keep_context, "Dolly: keep rows with a context.")
flags.DEFINE_enum("dedup", _DATA.dedup, duplicates.MODES, "How duplicates are matched.")
flags.DEFINE_integer(
    "max_field_chars", _DATA.max_field_chars, "Leave out rows with a longer field (0: no cap)."
)
flags.DEFINE_string("model", "", "A preset whose tokenizer measures token lengths.")
flags.DEFINE_integer("sequence_length", _DEFAULTS.sequence_length, "With --model: the limit.")
flags.DEFINE_enum(
    "preference",
    "",
    ["", preference_rows.AUTO, preference_rows.CSV, *preference_formats.NAMES],
    "Read the file as preference pairs (DPO) of this format; empty: supervised data.",
)


def _token_lengths(
    model_preset: str, examples: list[example.Example], sequence_length: int
) -> list[int]:
    """Full templated token lengths of `examples` with `model_preset`'s tokenizer (a text far
    longer than `sequence_length` counts only up to the template's cut, as in training)."""
    import gemma_tune  # noqa: F401  (selects the JAX backend before Keras loads)
    from gemma_tune import model
    from gemma_tune.training import template

    chat_template = template.ChatTemplate(model.load_tokenizer(model_preset))
    return [chat_template.encode(item, sequence_length).full_length for item in examples]


def _print_pair_token_lengths(model_preset: str, pairs: list, sequence_length: int) -> None:
    """Prints the templated token lengths of both rows of every pair with `model_preset`'s
    tokenizer, how many `sequence_length` truncates, and how many pairs it cuts to no answer
    (training drops those)."""
    import gemma_tune  # noqa: F401  (selects the JAX backend before Keras loads)
    from gemma_tune import model
    from gemma_tune.training import pair_encoding, template

    with console.status_to_stderr():  # loading the tokenizer
        chat_template = template.ChatTemplate(model.load_tokenizer(model_preset))
    rows = [pair_encoding.encode_pair(chat_template, pair, sequence_length) for pair in pairs]
    full = [row.full_length for pair in rows for row in (pair.chosen, pair.rejected)]
    truncated = sum(1 for length in full if length > sequence_length)
    cut_away = sum(
        1
        for pair in rows
        if not (pair.chosen.target_weights.any() and pair.rejected.target_weights.any())
    )
    print(f"tokens per row: {lengths.LengthStats.of(full).format()}")
    print(f"rows: {truncated} of {len(full)} longer than sequence_length {sequence_length}")
    print(f"pairs left with no answer (dropped in training): {cut_away}")


def _read(path: str):
    """Reads `path` with the flags' reader options; prints what is wrong and returns None
    when it cannot be read."""
    try:
        return sources.read_file(
            path,
            format=FLAGS.format,
            input_column=FLAGS.input_column,
            output_column=FLAGS.output_column,
            context_column=FLAGS.context_column,
            system_column=FLAGS.system_column,
            keep_context=FLAGS.keep_context,
            split=FLAGS.split,
            images=True,
        )
    except example.DataError as error:
        _print_problems(path, error)
    except (OSError, ValueError) as error:
        print(f"{path}: {error}", file=sys.stderr)
    return None


def _print_problems(path: str, error: example.DataError) -> None:
    """Prints each problem on stdout, and their count on stderr."""
    for problem in error.problems:
        print(problem)
    print(f"{len(error.problems)} problem(s) in {path}", file=sys.stderr)


def check_preference(path: str) -> int:
    """Validates `path` as preference pairs, prints its problems or a summary (format, pair
    count, unused keys, answer lengths), and returns the exit code."""
    try:
        read = preference_rows.read_file(path, format=FLAGS.preference, split=FLAGS.split)
    except example.DataError as error:
        _print_problems(path, error)
        return 1
    except (OSError, ValueError) as error:
        print(f"{path}: {error}", file=sys.stderr)
        return 1
    print(f"format: {read.format or 'none'}")
    print(f"rows read: {read.rows_read}")
    print(f"preference pairs: {len(read.pairs)}")
    for warning in read.warnings:
        print(f"warning: {warning}")
    for side in ("chosen", "rejected"):
        words = lengths.LengthStats.of([len(getattr(p, side).split()) for p in read.pairs])
        print(f"{side} words: {words.format()}")
    if FLAGS.model and read.pairs:
        _print_pair_token_lengths(FLAGS.model, read.pairs, FLAGS.sequence_length)
    if not read.pairs:
        print(f"{path}: no preference pairs", file=sys.stderr)
        return 1
    return 0


def _blind_model_problems(path: str, model_preset: str, examples: list[example.Example]) -> bool:
    """Prints each image row as an error when `model_preset` cannot see images; returns
    whether it did."""
    with_images = [item for item in examples if item.images]
    if not with_images:
        return False
    import gemma_tune  # noqa: F401  (selects the JAX backend before Keras loads)
    from gemma_tune import model

    if model.reads_images(model_preset):
        print("(token lengths count the text only: image tokens are not counted)")
        return False
    for item in with_images:
        reason = (
            f"an image in a row for a model that reads no images ({model_preset}: docs/vision.md)"
        )
        print(f"{item.images[0].source}: {item.images[0].field}: {reason}")
    print(f"{len(with_images)} problem(s) in {path}", file=sys.stderr)
    return True


def _toolless_model_problems(path: str, model_preset: str, examples) -> bool:
    """Prints each row with tool calls as an error when `model_preset`'s chat template has no
    tool format; returns whether it did."""
    using = [item for item in examples if item.tool_field is not None]
    if not using:
        return False
    import gemma_tune  # noqa: F401  (selects the JAX backend before Keras loads)
    from gemma_tune import model

    if model.has_tool_format(model_preset):
        return False
    for item in using:
        reason = (
            "tool calls need a model with tool support (Gemma 4); "
            f"{model_preset}'s chat template has none"
        )
        print(f"{item.source}: {item.tool_field}: {reason}")
    print(f"{len(using)} problem(s) in {path}", file=sys.stderr)
    return True


def check(path: str) -> int:
    """Validates `path`, prints its problems or its summary, and returns the exit code (1 for
    any bad row, an unreadable file, image rows for a text-only `--model` or no examples)."""
    read = _read(path)
    if read is None:
        return 1
    if FLAGS.model and _blind_model_problems(path, FLAGS.model, read.examples):
        return 1
    if FLAGS.model and _toolless_model_problems(path, FLAGS.model, read.examples):
        return 1
    kept, _, result = summary.prepare(
        read, dedup=FLAGS.dedup, max_field_chars=FLAGS.max_field_chars
    )
    if FLAGS.model and kept:
        with console.status_to_stderr():  # loading the tokenizer
            token_lengths = _token_lengths(FLAGS.model, kept, FLAGS.sequence_length)
        result.add_token_lengths(token_lengths, FLAGS.sequence_length)
    print(result.format())
    texts = [lengths.plain_text(item) for item in kept]
    characters = lengths.LengthStats.of([len(text) for text in texts])
    words = lengths.LengthStats.of([len(text.split()) for text in texts])
    print(f"characters: {characters.format()}")
    print(f"words: {words.format()}")
    for line in images.summary_lines(kept) + tool_messages.summary_lines(kept):
        print(line)
    if not FLAGS.model:
        print(
            "(add --model=PRESET to measure token lengths with that model's tokenizer)",
            file=sys.stderr,
        )
    if not kept:
        print(f"{path}: no examples", file=sys.stderr)
        return 1
    return 0


def main(argv) -> int:
    """Runs `check FILE` (the positional arguments absl leaves after the flags); returns the
    exit code (an error that is not about a row is one stderr line, `command_line`)."""
    args = argv[1:]
    if not args or args[0] not in COMMANDS:
        raise app.UsageError(f"give a command: {' | '.join(COMMANDS)} (check FILE)")
    if len(args) != 2:
        raise app.UsageError(f"check takes one file, got {args[1:] or 'none'}")
    return check_preference(args[1]) if FLAGS.preference else check(args[1])


if __name__ == "__main__":
    command_line.run(main)
