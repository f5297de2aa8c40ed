"""`gemma_tune.report`: report.html and report.md of a run directory, checked by parsing them."""

import base64
import html.parser
import json
import math
import re
import subprocess
import sys

import pytest

from gemma_tune.reporting import report, report_markdown

LONG_CONTEXT = "The makerspace opens at nine. " * 40 + "THE-END-OF-CONTEXT"
LONG_ANSWER = "It opens at nine, " * 30 + "and <closes> | at ten. THE-END-OF-ANSWER"
METRICS = list(report.METRIC_LABELS)


def _scores(f1: float) -> dict:
    return {key: (f1 if key != "length_words" else 10 * f1) for key in METRICS}


def _fixture_run(path, systems=("base", "tuned"), comparison=True, records=True):
    """A hand-built run directory in the shapes training writes (comparison.json version 2)."""
    path.mkdir(parents=True, exist_ok=True)
    config = {
        "experiment": "fixture",
        "description": "hand-built run <for> the report tests",
        "model": {"preset": "tiny:gemma1", "dtype": "float32"},
        "lora": {"rank": 8},
        "data": {"source": "file", "path": "data/qa.jsonl", "validation_path": ""},
        "sequence_length": 96,
        "train": {"epochs": 2, "batch_size": 2, "grad_accum_steps": 4, "learning_rate": 3e-4},
    }
    (path / "config.json").write_text(json.dumps(config))
    summary = {"train_count": 40, "validation_count": 5, "validation_from": "split"}
    (path / "data_summary.json").write_text(json.dumps(summary))
    result = {"steps": 20, "train_seconds": 12.5, "wall_seconds": 30.0}
    result |= {"parameters_total": 26016, "parameters_trainable": 3328}
    (path / "result.json").write_text(json.dumps(result))
    lines = []
    if records:
        lines.append({"step": 0, "val_loss": 7.2, "val_accuracy": 0.0})
        lines += [{"step": s, "loss": 7.0 - 0.2 * s, "epoch": 0} for s in range(1, 21)]
        lines.append({"step": 20, "val_loss": 3.4, "val_accuracy": 0.5})
    (path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    if not comparison:
        return path
    baseline, others = systems[0], systems[1:]
    gains = [0.0, 0.5, -0.25, 0.75, 0.0]  # of every non-baseline system, per example
    examples = []
    for i, gain in enumerate(gains):
        base_f1 = 0.25
        examples.append(
            {
                "source": f"qa.jsonl:{i + 1}",
                "prompt": f"Question {i} | when does it open?",
                "context": LONG_CONTEXT if i == 1 else None,
                "reference": "At nine.",
                "answers": {s: (LONG_ANSWER if i == 3 else f"{s} answer {i}") for s in systems},
                "scores": {baseline: _scores(base_f1)}
                | {
                    s: _scores(base_f1 + gain * (k + 1) / len(others)) for k, s in enumerate(others)
                },
            }
        )
    means = {
        s: {k: sum(e["scores"][s][k] for e in examples) / len(examples) for k in METRICS}
        for s in systems
    }
    change = {s: {k: means[s][k] - means[baseline][k] for k in METRICS} for s in others}
    relative = {
        s: {k: change[s][k] / means[baseline][k] if means[baseline][k] else None for k in METRICS}
        for s in others
    }
    losses = {baseline: {"loss": 7.2, "perplexity": 1339.4, "accuracy": 0.0}}
    losses |= {others[-1]: {"loss": 3.4, "perplexity": 29.96, "accuracy": 0.5}}
    # As training writes them: qualitative prompts are answered without retrieved context.
    answered = [s for s in systems if "+" not in s]
    qualitative = [{"prompt": "Say hi <b>", "answers": {s: f"hi from {s}" for s in answered}}]
    payload = {
        "version": 2,
        "count": len(examples),
        "systems": list(systems),
        "baseline": baseline,
        "primary": others[-1],
        "primary_metric": "token_f1",
        "means": means,
        "change": change,
        "relative_change": relative,
        "losses": losses,
        "examples": examples,
        "qualitative": qualitative,
    }
    (path / "comparison.json").write_text(json.dumps(payload))
    return path


class _Tree(html.parser.HTMLParser):
    """Checks that tags balance and nest; collects tables, <details> texts and attributes."""

    VOID = {"meta", "img", "br", "hr", "link", "input"}

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.stack, self.tags, self.attributes = [], [], []
        self.tables, self.details = [], []
        self._cell, self._open_details = None, []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.attributes += attrs
        if tag not in self.VOID:
            self.stack.append(tag)
        if tag == "table":
            self.tables.append([])
        elif tag == "tr":
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self._cell = []
        elif tag == "details":
            self._open_details.append(len(self.details))
            self.details.append([])

    def handle_endtag(self, tag):
        assert self.stack and self.stack[-1] == tag, f"</{tag}> closes {self.stack[-1:]}"
        self.stack.pop()
        if tag in ("td", "th"):
            self.tables[-1][-1].append(" ".join(self._cell).strip())
            self._cell = None
        elif tag == "details":
            self._open_details.pop()

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)
        for index in self._open_details:
            self.details[index].append(data)


def _parse(text: str) -> _Tree:
    tree = _Tree()
    tree.feed(text)
    tree.close()
    assert tree.stack == [], f"unclosed tags: {tree.stack}"
    return tree


def _value(cell: str) -> float | None:
    return None if cell == "—" else float(cell.replace(",", "").replace("%", ""))


def _close(cell: str, expected) -> bool:
    if expected is None:
        return cell == "—"
    decimals = len(cell.split(".")[1].rstrip("%")) if "." in cell else 0
    return math.isclose(_value(cell), expected, abs_tol=0.5 * 10**-decimals + 1e-9)


def _check_metric_rows(rows, comparison):
    """rows: [label, value per system, (change, relative) per other system] as displayed."""
    systems, baseline = comparison["systems"], comparison["baseline"]
    others = [s for s in systems if s != baseline]
    by_label = {row[0]: row for row in rows}
    for key, label in report.METRIC_LABELS.items():
        row = by_label[label]
        for i, system in enumerate(systems):
            assert _close(row[1 + i], comparison["means"][system][key]), (label, system, row)
        for k, system in enumerate(others):
            change, relative = row[1 + len(systems) + 2 * k : 3 + len(systems) + 2 * k]
            assert _close(change, comparison["change"][system][key]), (label, system, row)
            fraction = comparison["relative_change"][system][key]
            assert _close(relative, None if fraction is None else 100 * fraction), row
    losses = comparison.get("losses") or {}
    for key, label in report.LOSS_LABELS.items():
        if not any(key in values for values in losses.values()):
            assert label not in by_label
            continue
        row = by_label[label]
        for i, system in enumerate(systems):
            assert _close(row[1 + i], losses.get(system, {}).get(key)), row


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A real run directory: the tiny experiment, 20 steps (about 15 s on 2 CPU cores)."""
    path = tmp_path_factory.mktemp("report") / "tiny"
    command = ["-m", "gemma_tune.train", "--experiment=tiny", f"--workdir={path}"]
    result = subprocess.run(
        [sys.executable, *command, "--set", "train.max_steps=20"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads((path / "comparison.json").read_text())["version"] == 2
    return path


TWO, FOUR = ("base", "tuned"), ("base", "base+context", "tuned", "tuned+context")


@pytest.fixture(params=["tiny_run", "fixture_two_systems", "fixture_four_systems"])
def run_path(request, tmp_path):
    if request.param == "tiny_run":
        return request.getfixturevalue("tiny_run")
    return _fixture_run(tmp_path / "run", systems=TWO if "two" in request.param else FOUR)


@pytest.fixture(params=[TWO, FOUR])
def fixture_path(request, tmp_path):
    return _fixture_run(tmp_path / "run", systems=request.param)


def test_html_is_self_contained_balanced_and_holds_the_loss_png(run_path):
    html_path, md_path = report.write(str(run_path))
    assert html_path == str(run_path / "report.html") and md_path == str(run_path / "report.md")
    text = (run_path / "report.html").read_text()
    tree = _parse(text)
    assert "script" not in tree.tags and "<script" not in text.lower()
    links = [v for name, v in tree.attributes if name in ("src", "href") and v]
    assert not [v for v in links if re.match(r"\s*(https?:)?//", v)], links
    images = [v for name, v in tree.attributes if name == "src" and v.startswith("data:")]
    assert len(images) == 1 and images[0].startswith("data:image/png;base64,")
    png = base64.b64decode(images[0].split(",", 1)[1], validate=True)
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    assert png == (run_path / "loss_curves.png").read_bytes()


def test_metrics_table_holds_the_comparison_numbers(run_path):
    comparison = json.loads((run_path / "comparison.json").read_text())
    tree = _parse(open(report.write(str(run_path))[0]).read())
    metrics = next(t for t in tree.tables if t[0][0] == "metric")
    assert metrics[1][: len(comparison["systems"])] == comparison["systems"]
    _check_metric_rows(metrics[2:], comparison)


def test_markdown_has_the_same_metric_values(run_path):
    comparison = json.loads((run_path / "comparison.json").read_text())
    text = open(report.write(str(run_path))[1]).read()
    rows = [
        [cell.strip() for cell in line.strip().strip("|").split(" | ")]
        for line in text.splitlines()
        if line.startswith("| ") and line.count("|") > len(comparison["systems"])
    ]
    _check_metric_rows(rows, comparison)
    assert "![training and validation loss](loss_curves.png)" in text


def test_examples_sorted_by_gain_and_counted(run_path):
    comparison = json.loads((run_path / "comparison.json").read_text())
    tree = _parse(open(report.write(str(run_path))[0]).read())
    table = next(t for t in tree.tables if t[0][0] == "#")
    numbers = [int(row[0].split()[0]) for row in table[1:]]
    primary, baseline = comparison["primary"], comparison["baseline"]
    metric = comparison["primary_metric"]
    scores = [comparison["examples"][n - 1]["scores"] for n in numbers]
    gains = [s[primary][metric] - s[baseline][metric] for s in scores]
    assert sorted(numbers) == list(range(1, len(comparison["examples"]) + 1))
    assert gains == sorted(gains, reverse=True)
    assert [_value(row[-1]) for row in table[1:]] == pytest.approx(gains, abs=1e-3)
    improved, regressed = sum(g > 0 for g in gains), sum(g < 0 for g in gains)
    tally = (
        f"{improved} improved, {regressed} regressed, {len(gains) - improved - regressed} unchanged"
    )
    assert tally in (run_path / "report.html").read_text()
    assert tally in (run_path / "report.md").read_text()


def test_gains_and_regressions_marked_and_text_escaped(fixture_path):
    text = open(report.write(str(fixture_path))[0]).read()
    tree = _parse(text)
    assert "2 improved, 1 regressed, 2 unchanged" in text
    table = next(t for t in tree.tables if t[0][0] == "#")
    assert table[1][-1].startswith("+") and table[-1][-1].startswith("-")
    assert 'class="gaincell gain"' in text and 'class="gaincell loss"' in text
    assert "<b>" not in text and "&lt;b&gt;" in text  # the qualitative prompt, escaped
    qualitative = next(t for t in tree.tables if t[0][0] == "prompt")
    assert qualitative[1][0] == "Say hi <b>" and qualitative[1][-1].startswith("hi from tuned")
    assert qualitative[0] == ["prompt", "base", "tuned"]  # no empty +context columns


def test_long_text_is_folded_not_cut(fixture_path):
    run_path = fixture_path
    report.write(str(run_path))
    tree = _parse((run_path / "report.html").read_text())
    folded = ["".join(texts) for texts in tree.details]
    assert any(LONG_CONTEXT in text for text in folded)
    assert any(LONG_ANSWER in text for text in folded)
    markdown = (run_path / "report.md").read_text()
    assert "THE-END-OF-ANSWER" not in markdown and "THE-END-OF-CONTEXT" not in markdown
    extra = len(LONG_ANSWER) - report_markdown.MARKDOWN_LIMIT
    assert f"… (+{extra} chars, full text in comparison.json)" in markdown
    assert "Question 0 \\| when" in markdown  # pipes escaped, the table stays intact


def test_report_without_comparison_or_metrics(tmp_path):
    for name, records in (("no_comparison", True), ("no_records", False)):
        run_path = _fixture_run(tmp_path / name, comparison=False, records=records)
        html_path, md_path = report.write(str(run_path))
        text = open(html_path).read()
        tree = _parse(text)
        assert "What was trained" in text and "no comparison.json" in text
        assert ("data:image/png;base64," in text) == records
        assert (run_path / "loss_curves.png").exists() == records
        assert not [t for t in tree.tables if t and t[0][0] == "metric"]
        assert "tiny:gemma1" in open(md_path).read()


def test_cli_rebuilds_the_report(tmp_path):
    run_path = _fixture_run(tmp_path / "run", comparison=False)
    result = subprocess.run(
        [sys.executable, "-m", "gemma_tune.report", f"--run={run_path}"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert str(run_path / "report.html") in result.stdout
    assert (run_path / "report.md").exists()
    missing = subprocess.run(
        [sys.executable, "-m", "gemma_tune.report", f"--run={tmp_path / 'nothing'}"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert missing.returncode != 0 and "holds neither a run" in missing.stderr


def test_evaluation_directory_without_a_training_run(tmp_path):
    run_path = _fixture_run(tmp_path / "eval")
    for name in ("data_summary.json", "result.json", "metrics.jsonl"):
        (run_path / name).unlink()  # evaluate.py leaves its config.json, nothing of training
    tree = _parse(open(report.write(str(run_path))[0]).read())
    comparison = json.loads((run_path / "comparison.json").read_text())
    metrics = next(t for t in tree.tables if t[0][0] == "metric")
    _check_metric_rows(metrics[2:], comparison)
    assert any("an evaluation on its own" in cell for t in tree.tables for r in t for cell in r)
    assert not (run_path / "loss_curves.png").exists()
