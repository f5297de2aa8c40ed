"""Checks a data file before training: `python -m gemma_tune.data check FILE`.

Validates every row the way training would read it, prints every problem as
`file:line: field: reason` and exits 1, or prints the data summary and the character and word
lengths of the conversations and exits 0. No model or tokenizer is loaded, so it runs in a
second; token lengths are measured by the training run, which has the tokenizer.
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
    return parser


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
    print(result.format())
    texts = [lengths.plain_text(item) for item in kept]
    characters = lengths.LengthStats.of([len(text) for text in texts])
    words = lengths.LengthStats.of([len(text.split()) for text in texts])
    print(f"characters: {characters.format()}")
    print(f"words: {words.format()}")
    print("(token lengths are measured by training, which loads the tokenizer)")
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
