"""Builds the bundled demo dataset from `handbook.md` and the fact table.

Run `python -m gemma_tune.bundled.make_demo_data` to regenerate the four JSONL files next to this
module. The output is deterministic (no randomness, no clock, no environment), so a run rewrites
the committed files byte-for-byte; `tests/bundled_data_test.py` checks that it does. Standard
library only.

The fact table lives in four data modules by handbook part (`facts_membership.py`,
`facts_workshops.py`, `facts_house_rules.py`, `facts_community.py`), each a tuple of `Fact`
(`fact.py`); `FACTS` joins them in section order. This module checks the table against the
handbook, builds the rows and writes the files.

Each fact is one short answer span that appears verbatim in one handbook section, asked in 4-6
wordings. The rows are Dolly-format JSON lines:

  rag_train.jsonl / rag_validation.jsonl: "closed_qa" rows whose context is the section (with its
    heading). Split by section: every fifth section (5, 10, ..., 40) is held out, so validation
    asks about passages the model never trained on.
  closed_train.jsonl / closed_validation.jsonl: "open_qa" rows with an empty context. Split by
    wording: each fact has one wording held out (fact index modulo its wording count), so
    validation asks known facts in new words.

Rows are ordered by a SHA-256 digest of their text: a stable shuffle that mixes sections and
wordings without depending on Python's random module.
"""

from __future__ import annotations

import hashlib
import json
import os
import re

from gemma_tune.bundled import (
    facts_community,
    facts_house_rules,
    facts_membership,
    facts_workshops,
)
from gemma_tune.bundled.fact import Fact

HERE = os.path.dirname(os.path.abspath(__file__))
HANDBOOK = os.path.join(HERE, "handbook.md")
HELD_OUT_EVERY = 5  # rag_validation holds sections 5, 10, ..., 40
FILES = ("rag_train.jsonl", "rag_validation.jsonl", "closed_train.jsonl", "closed_validation.jsonl")
_HEADING = re.compile(r"^## (\d+)\. (.+)$")

# The fact table in section order; the order fixes which wording each fact holds out.
FACTS: tuple[Fact, ...] = (
    *facts_membership.FACTS,
    *facts_workshops.FACTS,
    *facts_house_rules.FACTS,
    *facts_community.FACTS,
)


def read_sections(handbook: str = HANDBOOK) -> dict[int, str]:
    """The handbook's sections by number, each as `## N. Title`, a blank line and its text."""
    with open(handbook, encoding="utf-8") as f:
        lines = f.read().splitlines()
    sections: dict[int, list[str]] = {}
    current = None
    for line in lines:
        match = _HEADING.match(line)
        if match:
            current = int(match.group(1))
            if current in sections:
                raise ValueError(f"{handbook}: section {current} appears twice")
            sections[current] = [line]
        elif current is not None:
            sections[current].append(line)
    texts = {number: "\n".join(body).strip() for number, body in sections.items()}
    if sorted(texts) != list(range(1, len(texts) + 1)):
        raise ValueError(f"{handbook}: sections are not numbered 1..N: {sorted(texts)}")
    return texts


def is_held_out(section: int) -> bool:
    """Whether a section belongs to rag_validation (every HELD_OUT_EVERY-th one)."""
    return section % HELD_OUT_EVERY == 0


def held_out_wording(index: int, fact: Fact) -> int:
    """Which of a fact's wordings goes to closed_validation: rotates over the facts."""
    return index % len(fact.questions)


def contains_span(text: str, answer: str) -> bool:
    """Whether `answer` occurs in `text` as whole words ("5 pm" is not in "8:45 pm")."""
    return re.search(rf"(?<!\w){re.escape(answer)}(?!\w)", text) is not None


def check(sections: dict[int, str], facts: tuple[Fact, ...] = FACTS) -> None:
    """Raises ValueError if the table does not fit the handbook or repeats a question."""
    seen: set[str] = set()
    for fact in facts:
        if fact.section not in sections:
            raise ValueError(f"fact {fact.answer!r}: no section {fact.section}")
        body = sections[fact.section].split("\n", 1)[1]
        if not contains_span(body, fact.answer):
            raise ValueError(f"{fact.answer!r} is not in section {fact.section}")
        if not 4 <= len(fact.questions) <= 6:
            raise ValueError(f"{fact.answer!r}: {len(fact.questions)} wordings, want 4-6")
        for question in fact.questions:
            if question in seen:
                raise ValueError(f"question asked twice: {question!r}")
            seen.add(question)
    missing = set(sections) - {fact.section for fact in facts}
    if missing:
        raise ValueError(f"sections without a fact: {sorted(missing)}")


def _row(question: str, context: str, answer: str, category: str) -> dict[str, str]:
    return {"instruction": question, "context": context, "response": answer, "category": category}


def _stable_order(rows: list[dict[str, str]]) -> list[dict[str, str]]:
    """Rows sorted by a digest of their text: a shuffle that never changes between runs."""

    def key(row: dict[str, str]) -> str:
        text = "\n".join((row["instruction"], row["context"], row["response"]))
        return hashlib.sha256(text.encode("utf-8")).hexdigest()

    return sorted(rows, key=key)


def build_rows(handbook: str = HANDBOOK) -> dict[str, list[dict[str, str]]]:
    """The rows of each output file, by file name."""
    sections = read_sections(handbook)
    check(sections)
    out: dict[str, list[dict[str, str]]] = {name: [] for name in FILES}
    for index, fact in enumerate(FACTS):
        context = sections[fact.section]
        rag = "rag_validation.jsonl" if is_held_out(fact.section) else "rag_train.jsonl"
        held = held_out_wording(index, fact)
        for i, question in enumerate(fact.questions):
            out[rag].append(_row(question, context, fact.answer, "closed_qa"))
            closed = "closed_validation.jsonl" if i == held else "closed_train.jsonl"
            out[closed].append(_row(question, "", fact.answer, "open_qa"))
    return {name: _stable_order(rows) for name, rows in out.items()}


def write_jsonl_files(output_dir: str, rows_by_name: dict[str, list[dict]]) -> dict[str, int]:
    """Writes each list of rows as `output_dir/name`, one JSON object per line (UTF-8, "\\n"
    line ends, so the bytes never depend on the platform); returns the row count of each."""
    os.makedirs(output_dir, exist_ok=True)
    counts = {}
    for name, rows in rows_by_name.items():
        with open(os.path.join(output_dir, name), "w", encoding="utf-8", newline="\n") as f:
            for row in rows:
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
        counts[name] = len(rows)
    return counts


def write_all(output_dir: str, handbook: str = HANDBOOK) -> dict[str, int]:
    """Writes the four JSONL files into `output_dir`; returns the row count of each."""
    return write_jsonl_files(output_dir, build_rows(handbook))


def main() -> None:
    """Regenerates the four JSONL files next to this module and prints their row counts."""
    for name, count in write_all(HERE).items():
        print(f"{name}: {count} rows")


if __name__ == "__main__":
    main()
