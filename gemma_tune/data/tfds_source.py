"""TensorFlow Datasets source, with a row adapter per supported dataset.

TFDS rows come out of `tfds.as_numpy` as dicts of numpy values (strings as bytes), and every
dataset names its features differently, so each supported dataset has an adapter that decodes
its features and maps them to an Example. As with Hugging Face, rows of a public dataset that
cannot become an Example are skipped and counted by reason.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

import numpy as np

from gemma_tune.data import example, fields, read_result, squad

SUMMARIZE_INSTRUCTION = "Summarize the following text:"


def decode(value: object, field: str) -> object:
    """Turns numpy values into Python ones: bytes to str (UTF-8), arrays to lists.

    Raises:
      example.RowError: for bytes that are not UTF-8.
    """
    if isinstance(value, np.ndarray):
        if value.ndim == 0:
            return decode(value.item(), field)
        return [decode(item, f"{field}[{i}]") for i, item in enumerate(value.tolist())]
    if isinstance(value, (list, tuple)):
        return [decode(item, f"{field}[{i}]") for i, item in enumerate(value)]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError as error:
            raise fields.RowErrors([example.RowError(field, "invalid UTF-8")]) from error
    return value


def instruct(instruction: str, text: str) -> str:
    """The user turn: `instruction` with "{source}" replaced by `text`, else followed by it."""
    if "{source}" in instruction:
        return instruction.replace("{source}", text)
    return f"{instruction}\n\n{text}"


def _wiki_lingua(row: Mapping, source: str, instruction: str) -> example.Example:
    """GEM WikiLingua (English): summarize `source` into `target`."""
    checker = fields.Checker()
    decoded = {key: decode(row.get(key), key) for key in ("source", "target")}
    text = checker.text(decoded, "source")
    summary = checker.text(decoded, "target")
    checker.done()
    turns = (
        example.Turn(example.USER, instruct(instruction or SUMMARIZE_INSTRUCTION, text)),
        example.Turn(example.MODEL, summary),
    )
    return example.Example(turns=turns, source=source)


def _squad(row: Mapping, source: str, instruction: str) -> example.Example:
    """SQuAD: the question about `context`, answered by the first of `answers/text`."""
    del instruction  # Checked empty by `load_tfds`.
    answers = row.get("answers")
    if isinstance(answers, Mapping):
        texts = answers.get("text")
    else:
        texts = row.get("answers/text")
    return squad.to_example(
        decode(row.get("question"), "question"),
        decode(row.get("context"), "context"),
        decode(texts, "answers.text"),
        source=source,
    )


Adapter = Callable[[Mapping, str, str], example.Example]

ADAPTERS: dict[str, Adapter] = {
    "gem/wiki_lingua_english_en": _wiki_lingua,
    "squad": _squad,
}
# Adapters whose user turn is an instruction plus the row's text.
TAKES_INSTRUCTION = frozenset({"gem/wiki_lingua_english_en"})


def adapter_key(name: str) -> str:
    """The `ADAPTERS` key for a TFDS name, ignoring a ":version" and, failing that, a config.

    Raises:
      ValueError: naming the supported datasets.
    """
    base = name.split(":", 1)[0]
    for key in (base, base.split("/", 1)[0]):
        if key in ADAPTERS:
            return key
    raise ValueError(
        f"no TFDS row adapter for {name!r}; supported datasets: {', '.join(sorted(ADAPTERS))}"
    )


def load_tfds(
    name: str,
    split: str = "train",
    *,
    instruction: str = "",
    rows: Iterable[Mapping] | None = None,
) -> read_result.ReadResult:
    """Reads a TFDS split into Examples through the dataset's adapter.

    Args:
      name: the TFDS name, e.g. "gem/wiki_lingua_english_en" or "squad" (a ":version" or a
        "/config" suffix is allowed).
      split: the split, e.g. "train" or "train[:1000]".
      instruction: for summarization datasets, the instruction before the text ("" = the
        default "Summarize the following text:"); a "{source}" in it marks where the text goes.
      rows: already loaded rows (dicts of numpy values or Python values); when given, nothing
        is downloaded.

    Returns:
      The examples, each with `source="name[index]"`, and the rows skipped by reason.

    Raises:
      ValueError: for an unsupported dataset, or an instruction for one that takes none.
    """
    key = adapter_key(name)
    if instruction and key not in TAKES_INSTRUCTION:
        raise ValueError(f"the TFDS {key!r} adapter takes no instruction; got {instruction!r}")
    if rows is None:
        import tensorflow_datasets as tfds  # Heavy: only imported when really loading.

        rows = tfds.as_numpy(tfds.load(name, split=split))
    adapter = ADAPTERS[key]
    return read_result.from_public_rows(
        rows, name, lambda row, source: adapter(row, source, instruction)
    )
