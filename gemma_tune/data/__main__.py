"""Checks a data file before training: `python -m gemma_tune.data check FILE`.

Validates every row the way training would read it, prints every problem as
`file:line: field: reason` and exits 1, or prints the data summary and the character and word
lengths of the conversations and exits 0. No model or tokenizer is loaded by default, so it
runs in a second; `--model=PRESET --sequence_length=N` also loads that model's tokenizer and
reports token lengths with the chat template and how many examples N tokens truncate:

    python -m gemma_tune.data check train.jsonl
    python -m gemma_tune.data check qa.csv --input_column=question --output_column=answer
    python -m gemma_tune.data check train.jsonl --model=gemma_2b_en --sequence_length=256
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from gemma_tune.data import duplicates, example, lengths, sources, summary


def _parser() -> argparse.ArgumentParser:
    """The command line: one `check` command with the file and reader options."""
    parser = argparse.ArgumentParser(prog="python -m gemma_tune.data")
    commands = parser.add_subparsers(dest="command", required=True)
    check = commands.add_parser("check", help="validate a JSONL or CSV data file")
    check.add_argument("file", help="the JSONL or CSV file")
    check.add_argument("--format", default="auto", choices=sources.FILE_FORMATS)
    check.add_argument("--input_column", default="input", help="CSV: the user column")
    check.add_argument("--output_column", default="output", help="CSV: the model column")
    check.add_argument("--context_column", default="", help="CSV: an optional context column")
    check.add_argument("--system_column", default="", help="CSV: an optional system column")
    check.add_argument(
        "--keep_context", action="store_true", help="Dolly: keep rows with a context"
    )
    check.add_argument("--dedup", default="exact", choices=duplicates.MODES)
    check.add_argument(
        "--model", default="", help="a preset whose tokenizer measures token lengths"
    )
    check.add_argument("--sequence_length", type=int, default=256, help="with --model")
    return parser


def _token_lengths(model_preset: str, examples: list[example.Example]) -> list[int]:
    """Full templated token lengths of `examples` with `model_preset`'s tokenizer."""
    import gemma_tune  # noqa: F401  (selects the JAX backend before Keras loads)
    from gemma_tune import model
    from gemma_tune.training import template

    chat_template = template.ChatTemplate(model.load_tokenizer(model_preset))
    return [chat_template.encode(item, 0).full_length for item in examples]


def check(args: argparse.Namespace) -> int:
    """Validates `args.file`, prints its problems or its summary, and returns the exit code."""
    try:
        read = sources.read_file(
            args.file,
            format=args.format,
            input_column=args.input_column,
            output_column=args.output_column,
            context_column=args.context_column,
            system_column=args.system_column,
            keep_context=args.keep_context,
        )
    except example.DataError as error:
        for problem in error.problems:
            print(problem)
        print(f"{len(error.problems)} problem(s) in {args.file}", file=sys.stderr)
        return 1
    except (OSError, ValueError) as error:
        print(f"{args.file}: {error}", file=sys.stderr)
        return 1
    kept, _, result = summary.prepare(read, dedup=args.dedup)
    if args.model and kept:
        result.add_token_lengths(_token_lengths(args.model, kept), args.sequence_length)
    print(result.format())
    texts = [lengths.plain_text(item) for item in kept]
    characters = lengths.LengthStats.of([len(text) for text in texts])
    words = lengths.LengthStats.of([len(text.split()) for text in texts])
    print(f"characters: {characters.format()}")
    print(f"words: {words.format()}")
    if not args.model:
        print("(add --model=PRESET to measure token lengths with that model's tokenizer)")
    if not kept:
        print(f"{args.file}: no examples", file=sys.stderr)
        return 1
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the command line and returns the exit code."""
    args = _parser().parse_args(argv)
    if args.command == "check":
        return check(args)
    raise AssertionError(f"unhandled command {args.command!r}")


if __name__ == "__main__":
    sys.exit(main())
