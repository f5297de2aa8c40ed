"""Reads a user's document collection into passages for retrieval
(see `gemma_tune.evaluation.retrieval`).

    from gemma_tune.evaluation import corpus
    passages = corpus.load_corpus("docs/", passage_words=200)

A corpus is one of
  - a folder: every `.md` and `.txt` file under it, recursively (hidden files and folders are
    skipped), in sorted path order;
  - a single `.md` or `.txt` file;
  - a `.jsonl` file: one passage per line, `{"text": ..., "id": ..., "title": ...}` with `text`
    required and `id` (string or integer, unique) and `title` optional.

Markdown is split at headings (any level, outside code fences); each section keeps its heading as
its title. Plain text is split at blank lines and consecutive paragraphs are packed into passages
of up to `passage_words` words. A section or paragraph longer than that is cut into windows of
`passage_words` words that overlap by `overlap_words`. Loading is deterministic: the same files
give the same passages in the same order.
"""

from __future__ import annotations

import codecs
import dataclasses
import json
import os
import re

from gemma_tune.data import example

TEXT_SUFFIXES = (".md", ".txt")
JSONL_SUFFIX = ".jsonl"
DEFAULT_PASSAGE_WORDS = 200
DEFAULT_OVERLAP_WORDS = 20
_HEADING = re.compile(r"^ {0,3}#{1,6}[ \t]+(.+?)(?:[ \t]+#+)?[ \t]*$")
_FENCE = re.compile(r"^ {0,3}(```|~~~)")


@dataclasses.dataclass(frozen=True)
class Passage:
    """One retrievable piece of a document.

    Attributes:
      id: unique within the corpus: the JSONL `id`, or "file:line" of where the passage starts
        (with "/window" appended when a long section was cut into several windows).
      source: where it came from, for people: "file#heading" for a Markdown section,
        "file:line" otherwise.
      title: the Markdown heading, the JSONL `title`, or "" when there is none.
      text: the passage itself, without its heading.
    """

    id: str
    source: str
    title: str
    text: str


def load_corpus(
    path: str | os.PathLike,
    *,
    passage_words: int = DEFAULT_PASSAGE_WORDS,
    overlap_words: int = DEFAULT_OVERLAP_WORDS,
) -> list[Passage]:
    """Reads a folder, a Markdown/text file or a JSONL file into passages.

    Args:
      path: the folder or file (see the module docstring for the formats).
      passage_words: the most words in a Markdown or text passage; longer sections are windowed.
        JSONL rows are taken as they are.
      overlap_words: how many words consecutive windows of one section share.

    Returns:
      The passages, in file order and, within a file, in document order.

    Raises:
      FileNotFoundError: if `path` does not exist.
      ValueError: for an unsupported file type, bad window sizes, or a corpus without passages.
      example.DataError: for a JSONL file or text file with bad rows or bytes, listing every
        problem as file:line: field: reason.
    """
    if overlap_words < 0 or passage_words <= overlap_words:
        raise ValueError(
            f"need passage_words > overlap_words >= 0, got passage_words={passage_words}, "
            f"overlap_words={overlap_words}"
        )
    path = os.fspath(path)
    if os.path.isdir(path):
        files = _corpus_files(path)
        passages = []
        for file_path in files:
            name = os.path.relpath(file_path, path).replace(os.sep, "/")
            passages += _read_text_file(file_path, name, passage_words, overlap_words)
        where = f"{len(files)} .md/.txt file(s) under {path}"
    elif os.path.isfile(path):
        name = os.path.basename(path)
        if path.endswith(JSONL_SUFFIX):
            passages = _read_jsonl(path, name)
        elif path.endswith(TEXT_SUFFIXES):
            passages = _read_text_file(path, name, passage_words, overlap_words)
        else:
            raise ValueError(
                f"{path}: unsupported corpus file; use a folder or a .md, .txt or .jsonl file"
            )
        where = path
    else:
        raise FileNotFoundError(f"no corpus at {path}: not a file or folder")
    if not passages:
        raise ValueError(f"the corpus is empty: no passages with text in {where}")
    return passages


def _corpus_files(folder: str) -> list[str]:
    """The `.md` and `.txt` files under `folder`, skipping hidden entries, in sorted order."""
    found = []
    for root, dirs, names in os.walk(folder):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        found += [
            os.path.join(root, n)
            for n in names
            if n.endswith(TEXT_SUFFIXES) and not n.startswith(".")
        ]
    return sorted(found, key=lambda p: os.path.relpath(p, folder).split(os.sep))


def _read_lines(path: str) -> list[str]:
    """The file's lines as text; bad UTF-8 raises DataError naming the line."""
    with open(path, "rb") as file:
        data = file.read()
    if data.startswith(codecs.BOM_UTF8):
        data = data[len(codecs.BOM_UTF8) :]
    try:
        return data.decode("utf-8").splitlines()
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        raise example.DataError(
            [example.Problem(path, line, "text", "invalid UTF-8; save the file as UTF-8")]
        ) from None


def _read_text_file(path: str, name: str, passage_words: int, overlap: int) -> list[Passage]:
    """Splits one Markdown or text file into passages named after `name`."""
    lines = _read_lines(path)
    if name.endswith(".md"):
        blocks = _markdown_sections(lines)
    else:
        blocks = _packed_paragraphs(lines, passage_words)
    passages = []
    for line, title, text in blocks:
        source = f"{name}#{title}" if title else f"{name}:{line}"
        windows = _windows(text.split(), passage_words, overlap)
        if len(windows) == 1:
            passages.append(Passage(f"{name}:{line}", source, title, text))
            continue
        for index, words in enumerate(windows, start=1):
            passages.append(Passage(f"{name}:{line}/{index}", source, title, " ".join(words)))
    return passages


def _markdown_sections(lines: list[str]) -> list[tuple[int, str, str]]:
    """(first line, heading, body) of each non-empty section; text before any heading has ""."""
    sections = []
    start, title, body = 1, "", []
    in_fence = False
    for number, line in enumerate(lines, start=1):
        if _FENCE.match(line):
            in_fence = not in_fence
        heading = None if in_fence else _HEADING.match(line)
        if heading is None:
            body.append(line)
            continue
        sections.append((start, title, "\n".join(body).strip()))
        start, title, body = number, heading.group(1).strip(), []
    sections.append((start, title, "\n".join(body).strip()))
    return [section for section in sections if section[2]]


def _packed_paragraphs(lines: list[str], passage_words: int) -> list[tuple[int, str, str]]:
    """(first line, "", text) of runs of blank-line separated paragraphs, up to the word limit.

    A paragraph longer than the limit stays alone (the caller windows it).
    """
    paragraphs: list[tuple[int, str]] = []
    start, current = 0, []
    for number, line in enumerate([*lines, ""], start=1):
        if line.strip():
            start = start if current else number
            current.append(line.strip())
        elif current:
            paragraphs.append((start, "\n".join(current)))
            current = []
    blocks: list[tuple[int, int, list[str]]] = []
    for number, text in paragraphs:
        words = len(text.split())
        if blocks and blocks[-1][1] + words <= passage_words:
            blocks[-1] = (blocks[-1][0], blocks[-1][1] + words, blocks[-1][2] + [text])
        else:
            blocks.append((number, words, [text]))
    return [(number, "", "\n\n".join(texts)) for number, _, texts in blocks]


def _windows(words: list[str], size: int, overlap: int) -> list[list[str]]:
    """`words` cut into windows of `size` words, each sharing `overlap` with the one before."""
    if len(words) <= size:
        return [words]
    step = size - overlap
    starts = range(0, len(words) - overlap, step)
    return [words[start : start + size] for start in starts]


def _read_jsonl(path: str, name: str) -> list[Passage]:
    """One passage per JSONL row; every bad row is reported together as a DataError."""
    problems: list[example.Problem] = []
    passages: list[Passage] = []
    first_line_of_id: dict[str, int] = {}
    for number, raw in enumerate(_read_lines(path), start=1):
        if not raw.strip():
            continue
        problems_before = len(problems)

        def report(field: str, reason: str, number: int = number) -> None:
            problems.append(example.Problem(path, number, field, reason))

        try:
            row = json.loads(raw)
        except json.JSONDecodeError as error:
            report("line", f"invalid JSON: {error.msg} (column {error.colno})")
            continue
        if not isinstance(row, dict):
            report("row", f"expected a JSON object, got {type(row).__name__}")
            continue
        text = row.get("text")
        if "text" not in row:
            report("text", "missing; every row needs the passage in a 'text' field")
        elif not isinstance(text, str):
            report("text", f"expected a string, got {type(text).__name__}")
        elif not text.strip():
            report("text", "empty text")
        title = row.get("title", "")
        if not isinstance(title, str):
            report("title", f"expected a string, got {type(title).__name__}")
        passage_id = row.get("id", f"{name}:{number}")
        if isinstance(passage_id, bool) or not isinstance(passage_id, (str, int)):
            report("id", f"expected a string or an integer, got {type(passage_id).__name__}")
        else:
            passage_id = str(passage_id)
            if passage_id in first_line_of_id:
                report(
                    "id",
                    f"duplicate id {passage_id!r}, first used on line "
                    f"{first_line_of_id[passage_id]}",
                )
            else:
                first_line_of_id[passage_id] = number
        if len(problems) == problems_before:
            passages.append(Passage(passage_id, f"{name}:{number}", title.strip(), text.strip()))
    if problems:
        raise example.DataError(problems)
    return passages
