"""The SQuAD row mapping, shared by the Hugging Face and TFDS sources.

A SQuAD row is a question about a passage with one or more reference answers: the question
becomes the user turn, the passage `Example.context`, and the first answer the model turn.
SQuAD 2.0's unanswerable questions (no answers) are skipped and counted under `NO_ANSWER`.
"""

from __future__ import annotations

from collections.abc import Sequence

from gemma_tune.data import example, fields, read_result

NO_ANSWER = "no answer"
COLUMNS = ("question", "context", "answers")


def to_example(
    question: object, context: object, answers: Sequence[object] | None, *, source: str
) -> example.Example:
    """Maps one SQuAD row (values already decoded to str) to an Example.

    Args:
      question: the question; becomes the user turn.
      context: the passage; becomes `Example.context`.
      answers: the answer texts; the first becomes the model turn.
      source: where the row came from, for messages.

    Raises:
      fields.RowErrors: for a missing or blank question, context or answer.
      read_result.Skip: for a question without answers.
    """
    checker = fields.Checker()
    row = {"question": question, "context": context}
    question_text = checker.text(row, "question")
    context_text = checker.text(row, "context")
    answer_text = None
    if answers is not None and not isinstance(answers, (str, bytes)) and len(answers) == 0:
        checker.done()
        raise read_result.Skip(NO_ANSWER)
    if answers is None or isinstance(answers, (str, bytes)):
        checker.add("answers.text", f"expected a list of strings, got {fields.type_name(answers)}")
    else:
        answer_text = checker.text({"text": answers[0]}, "text", "answers.text[0]")
    checker.done()
    turns = (example.Turn(example.USER, question_text), example.Turn(example.MODEL, answer_text))
    return example.Example(turns=turns, context=context_text, source=source)
