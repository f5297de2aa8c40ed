"""Builds the bundled preference pairs (DPO demo) from `handbook.md` and the fact table.

Run `python -m gemma_tune.bundled.make_preference_data` to regenerate
`preference_train.jsonl` and `preference_validation.jsonl` next to this module. Like
`make_demo_data`, the output is deterministic (no randomness, no clock) and standard library
only; `tests/bundled_data_test.py` checks that a run rewrites the committed files byte-for-byte.

Every question of the `rag` task becomes one pair in TRL's form, `{"prompt", "chosen",
"rejected"}`. The prompt is the handbook section and the question, as the supervised demo's
chat template shows them (`Context:\\n<section>\\n\\n<question>`), so a DPO run can start from
the supervised demo's adapter. The chosen answer is the short answer span; the rejected one
is, alternating by a digest of the question:

  wrong:    the answer of another fact of the same section (a plausible but wrong span), or
  rambling: the whole sentence of the section that holds the answer (correct, but not the
            short answer asked for: what a pretrained model tends to do, repeat the passage).

The split is the `rag` split: sections 5, 10, ..., 40 are held out for validation, so held-out
preference accuracy is measured on passages the model never trained on.
"""

from __future__ import annotations

import hashlib
import re

from gemma_tune.bundled import make_demo_data

FILES = ("preference_train.jsonl", "preference_validation.jsonl")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(])")


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def answer_sentence(section_text: str, answer: str) -> str:
    """The sentence of a section (heading excluded) that holds `answer` as whole words.

    Raises:
      ValueError: when no sentence holds it.
    """
    body = section_text.split("\n", 1)[1].strip()
    for sentence in _SENTENCE_END.split(" ".join(body.split())):
        if make_demo_data.contains_span(sentence, answer):
            return sentence
    raise ValueError(f"no sentence holds {answer!r}")


def _rejected(question: str, fact, section_text: str, section_answers: list[str]) -> str:
    """The dispreferred answer: another fact's span of the section, or the whole sentence."""
    others = [answer for answer in section_answers if answer != fact.answer]
    if others and int(_digest(question), 16) % 2 == 0:
        return others[int(_digest(question + "#"), 16) % len(others)]
    return answer_sentence(section_text, fact.answer)


def build_rows(handbook: str = make_demo_data.HANDBOOK) -> dict[str, list[dict[str, str]]]:
    """The pairs of each output file, by file name, in a fixed digest order."""
    sections = make_demo_data.read_sections(handbook)
    make_demo_data.check(sections)
    answers_by_section: dict[int, list[str]] = {}
    for fact in make_demo_data.FACTS:
        answers_by_section.setdefault(fact.section, []).append(fact.answer)
    out: dict[str, list[dict[str, str]]] = {name: [] for name in FILES}
    for fact in make_demo_data.FACTS:
        section_text = sections[fact.section]
        held_out = make_demo_data.is_held_out(fact.section)
        name = FILES[1] if held_out else FILES[0]
        for question in fact.questions:
            rejected = _rejected(question, fact, section_text, answers_by_section[fact.section])
            out[name].append(
                {
                    "prompt": f"Context:\n{section_text}\n\n{question}",
                    "chosen": fact.answer,
                    "rejected": rejected,
                }
            )
    return {
        name: sorted(rows, key=lambda row: _digest("\n".join(row.values())))
        for name, rows in out.items()
    }


def write_all(output_dir: str, handbook: str = make_demo_data.HANDBOOK) -> dict[str, int]:
    """Writes the two JSONL files into `output_dir`; returns the pair count of each."""
    return make_demo_data.write_jsonl_files(output_dir, build_rows(handbook))


def main() -> None:
    """Regenerates the two JSONL files next to this module and prints their pair counts."""
    for name, count in write_all(make_demo_data.HERE).items():
        print(f"{name}: {count} pairs")


if __name__ == "__main__":
    main()
