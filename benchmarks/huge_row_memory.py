"""Peak memory of reading and encoding a data file with one 50 MB row, against the same file
without it.

    python benchmarks/huge_row_memory.py [--huge_mb=50] [--rows=200] [--preset=gemma3_270m_gguf]
    python benchmarks/huge_row_memory.py --unbounded   # also: no cap and no template cut

Writes two JSONL files of `--rows` chat rows (the bundled handbook's retrieval questions with
their passage, numbered): `plain.jsonl`, and `huge.jsonl`, the same with one more row whose
answer is `--huge_mb` MB of text. Each case runs in its own child process, one after the
other, which imports gemma_tune, loads the preset's tokenizer, then reads the file as training does
(`data.sources.load`: read, validate, `data.max_field_chars`, deduplicate) and encodes every
example with the chat template at `--sequence_length`. The child reports its peak RSS over its
whole life (`resource.getrusage(RUSAGE_SELF).ru_maxrss`, loading the tokenizer included), and
over reading and encoding alone (`VmHWM`, reset through `/proc/self/clear_refs` after the
tokenizer is loaded) with the RSS it started from, so the difference is what the data took.
Cases:

- plain: the file without the huge row (the reference);
- huge, capped: the default `data.max_field_chars` (1,000,000) leaves the row out, reported;
- huge, no cap: `data.max_field_chars=0`; the template still cuts each text to what the
  sequence length can use before tokenizing (`training/template.py`);
- huge, unbounded (`--unbounded` only): no cap and no cut, the whole 50 MB tokenized, as before
  issue 24 (slow: minutes, gigabytes).

Prints one line per case and the ratios of peak RSS to the plain file's; results are in
benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _status_mib(field: str) -> float:
    """`VmRSS` (resident now) or `VmHWM` (peak since the last reset) from /proc, in MiB."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    raise KeyError(field)


def _reset_peak() -> None:
    """Resets the kernel's peak-RSS mark (`VmHWM`) to the current RSS."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def child(path: str, preset: str, max_field_chars: int, sequence_length: int, cut: bool) -> dict:
    """Reads and encodes `path` as training does; returns the memory and counts."""
    sys.path.insert(0, ROOT)
    import gemma_tune  # noqa: F401  (selects the JAX backend)
    from gemma_tune import config, model
    from gemma_tune.data import sources
    from gemma_tune.training import template

    if not cut:
        template.MAX_CHARS_PER_TOKEN = 10**12
    chat_template = template.ChatTemplate(model.load_tokenizer(preset))
    before = _status_mib("VmRSS")
    _reset_peak()
    data = config.base_config().data
    data.source, data.path, data.validation_fraction = "file", path, 0.0
    data.max_examples, data.max_field_chars = 0, max_field_chars
    started = time.perf_counter()
    examples, _, summary = sources.load(data)
    tokens = sum(len(chat_template.encode(item, sequence_length).token_ids) for item in examples)
    return {
        "rss_before_read_mib": before,
        "peak_rss_read_mib": _status_mib("VmHWM"),
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "seconds": time.perf_counter() - started,
        "examples": len(examples),
        "dropped": summary.dropped,
        "tokens": tokens,
    }


def _write_files(directory: str, rows: int, huge_mb: int) -> tuple[str, str]:
    """`plain.jsonl` with `rows` chat rows and `huge.jsonl`, the same plus one huge answer."""
    with open(os.path.join(ROOT, "gemma_tune", "bundled", "rag_train.jsonl")) as f:
        source = [json.loads(line) for line in f if line.strip()]
    lines = []
    for index in range(rows):
        row = source[index % len(source)]
        prompt = f"{row['context']}\n\n{row['instruction']} (question {index})"
        lines.append(json.dumps({"prompt": prompt, "completion": row["response"]}) + "\n")
    plain = os.path.join(directory, "plain.jsonl")
    with open(plain, "w") as f:
        f.writelines(lines)
    words = "the makerspace opens at nine and the laser cutter needs a booking. "
    answer = (words * (huge_mb * 2**20 // len(words) + 1))[: huge_mb * 2**20]
    huge_row = {"prompt": "Repeat the handbook.", "completion": answer}
    huge = os.path.join(directory, "huge.jsonl")
    with open(huge, "w") as f:
        f.writelines(lines[: rows // 2])
        f.write(json.dumps(huge_row) + "\n")
        f.writelines(lines[rows // 2 :])
    return plain, huge


def _run_child(args, path: str, max_field_chars: int, cut: bool) -> dict:
    command = [
        sys.executable,
        os.path.abspath(__file__),
        "--child",
        path,
        f"--preset={args.preset}",
        f"--max_field_chars={max_field_chars}",
        f"--sequence_length={args.sequence_length}",
        *([] if cut else ["--no_cut"]),
    ]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise SystemExit(f"child failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--huge_mb", type=int, default=50)
    parser.add_argument("--rows", type=int, default=200)
    parser.add_argument("--preset", default="gemma3_270m_gguf")
    parser.add_argument("--sequence_length", type=int, default=512)
    parser.add_argument("--unbounded", action="store_true", help="also the no-cut, no-cap case")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--max_field_chars", type=int, default=1_000_000, help=argparse.SUPPRESS)
    parser.add_argument("--no_cut", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        fields = (args.child, args.preset, args.max_field_chars, args.sequence_length)
        print(json.dumps(child(*fields, cut=not args.no_cut)))
        return
    with tempfile.TemporaryDirectory() as directory:
        plain, huge = _write_files(directory, args.rows, args.huge_mb)
        cases = [
            ("plain", plain, 1_000_000, True),
            ("huge, capped", huge, 1_000_000, True),
            ("huge, no cap", huge, 0, True),
        ]
        if args.unbounded:
            cases.append(("huge, unbounded", huge, 0, False))
        print(
            f"{args.rows} rows, huge row {args.huge_mb} MB, {args.preset} tokenizer, "
            f"sequence_length {args.sequence_length}"
        )
        reference = None
        for name, path, cap, cut in cases:
            measured = _run_child(args, path, cap, cut)
            reference = reference or measured
            peak, read_peak = measured["peak_rss_mib"], measured["peak_rss_read_mib"]
            print(
                f"{name:16} peak RSS {peak:6.0f} MiB ({peak / reference['peak_rss_mib']:.2f}x "
                f"plain); while reading {read_peak:6.0f} MiB "
                f"({read_peak / reference['peak_rss_read_mib']:.2f}x plain, "
                f"+{read_peak - measured['rss_before_read_mib']:.0f} MiB over the "
                f"{measured['rss_before_read_mib']:.0f} before); {measured['seconds']:.1f} s, "
                f"{measured['examples']} examples, {measured['tokens']} tokens, "
                f"dropped {measured['dropped'] or 'none'}",
                flush=True,
            )


if __name__ == "__main__":
    main()
