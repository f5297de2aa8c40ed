"""The `gemma-tune` console script: `gemma-tune <command> [flags]`, one word per entry point.

    gemma-tune train --experiment=demo          # python -m gemma_tune.train --experiment=demo
    gemma-tune data check train.jsonl           # python -m gemma_tune.data check train.jsonl
    gemma-tune evaluate --help                  # the command's own flags

Each command runs its module exactly as `python -m gemma_tune.<module>` does (with `runpy`,
under `__main__` and the same `sys.argv` after the command word), so flags, `--help`, output
and exit codes are the same either way. Only the chosen command's module is imported. Each
command prints a user error as one `error: ...` line on stderr and exits non-zero (`--debug`
shows the traceback: `gemma_tune.command_line`).
"""

from __future__ import annotations

import runpy
import sys
from collections.abc import Sequence

# Command word -> (module run as __main__, what it does).
COMMANDS: dict[str, tuple[str, str]] = {
    "train": ("gemma_tune.train", "tune a Gemma (--experiment=NAME, --resume=RUN_DIR)"),
    "sample": ("gemma_tune.sample", "talk to a run's tuned model or a base model"),
    "evaluate": ("gemma_tune.evaluate", "base vs tuned on a run's data or any file"),
    "export": ("gemma_tune.export", "a run as a Hugging Face model, PEFT adapter or KerasHub"),
    "report": ("gemma_tune.report", "rebuild a run's report (HTML and Markdown)"),
    "pairs": ("gemma_tune.pairs", "preference pairs (DPO) from a run's wrong answers"),
    "data": ("gemma_tune.data", "check a data file: data check FILE"),
}

HELP_WORDS = ("-h", "--help", "--helpshort", "--helpfull", "help")


def usage() -> str:
    """The list of commands, shown for `gemma-tune --help` and without a command."""
    width = max(len(name) for name in COMMANDS)
    lines = [
        "usage: gemma-tune <command> [flags]",
        "",
        "commands:",
        *(f"  {name:{width}}  {about}" for name, (_, about) in COMMANDS.items()),
        "",
        "`gemma-tune <command> --help` lists a command's flags. An error is one line on stderr",
        "and a non-zero exit; add --debug to see its traceback.",
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the command named by the first argument with the rest as its arguments.

    Returns the exit code for `--help` (0), a missing command (2) or an unknown one (2); a
    command's own exit code comes through its `SystemExit`, as with `python -m`.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in HELP_WORDS:
        print(usage())
        return 0 if args else 2
    name, rest = args[0], args[1:]
    if name not in COMMANDS:
        print(f"gemma-tune: unknown command {name!r}\n\n{usage()}", file=sys.stderr)
        return 2
    module = COMMANDS[name][0]
    sys.argv = [f"gemma-tune {name}", *rest]  # argv[0] becomes the module's file, as with -m
    runpy.run_module(module, run_name="__main__", alter_sys=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
