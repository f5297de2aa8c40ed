"""The colab/ notebooks run top to bottom offline: `python -m pytest -q -m notebook`.

Each notebook is checked as stored (no outputs, the Open-in-Colab badge, a parameters cell),
then executed with nbclient in a temporary working directory, in its offline mode: the
parameters cell reads `GEMMA_TUNE_NOTEBOOK_OFFLINE=1` and switches to a tiny random Gemma,
generated or bundled data and a few steps. A cell that raises fails the test; the files the
notebook wrote and the output of its `!python -m gemma_tune...` commands are then checked.

The kernel runs this interpreter: a kernelspec installed at test time into a temporary prefix
(`python -m ipykernel install --prefix`, found through `JUPYTER_PATH`), and the kernel's `PATH`
starts with this interpreter's directory so that `!python` in the notebooks is this interpreter
too. A cell added in front of each notebook (in memory only) checks both.
"""

from __future__ import annotations

import glob
import importlib.util
import json
import os
import pathlib
import subprocess
import sys
import tomllib

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

pytestmark = pytest.mark.notebook

ROOT = pathlib.Path(__file__).resolve().parent.parent
COLAB_DIR = ROOT / "colab"
NOTEBOOKS = ["quickstart", "dolly_lora4", "your_data", "tpu", "vision"]
BADGE_URL = (
    "https://colab.research.google.com/github/gemma-tune/gemma_tune/blob/main/colab/{}.ipynb"
)
KERNEL_NAME = "gemma-tune-notebook-test"
CELL_TIMEOUT_S = 300


def _read(name: str):
    return nbformat.read(COLAB_DIR / f"{name}.ipynb", as_version=4)


def _code_cells(notebook):
    return [cell for cell in notebook.cells if cell.cell_type == "code"]


@pytest.fixture(scope="module")
def jupyter_path(tmp_path_factory) -> str:
    """A JUPYTER_PATH holding one kernelspec that runs this interpreter."""
    prefix = tmp_path_factory.mktemp("kernel")
    subprocess.run(
        [sys.executable, "-m", "ipykernel", "install", "--prefix", str(prefix)]
        + ["--name", KERNEL_NAME, "--display-name", "gemma_tune tests"],
        check=True,
        capture_output=True,
    )
    return str(prefix / "share" / "jupyter")


def _execute(name: str, workdir: pathlib.Path, jupyter_path: str, monkeypatch):
    """Runs the notebook offline in `workdir`; returns the executed notebook."""
    monkeypatch.setenv("JUPYTER_PATH", jupyter_path)
    bin_dir = os.path.dirname(sys.executable)
    kernel_env = {
        **os.environ,
        "GEMMA_TUNE_NOTEBOOK_OFFLINE": "1",
        "PATH": bin_dir + os.pathsep + os.environ.get("PATH", ""),
    }
    notebook = _read(name)
    check = (
        "import shutil, sys\n"
        f"assert sys.executable == {sys.executable!r}, sys.executable\n"
        f"assert shutil.which('python') == {os.path.join(bin_dir, 'python')!r}"
    )
    notebook.cells.insert(0, nbformat.v4.new_code_cell(check))
    client = nbclient.NotebookClient(
        notebook,
        kernel_name=KERNEL_NAME,
        timeout=CELL_TIMEOUT_S,
        resources={"metadata": {"path": str(workdir)}},
    )
    client.execute(env=kernel_env)
    return notebook


def _text_output(notebook) -> str:
    """Everything the cells printed (streams and plain-text results), in order."""
    parts = []
    for cell in _code_cells(notebook):
        for output in cell.get("outputs", []):
            if output.output_type == "stream":
                parts.append(output.text)
            elif "data" in output:
                parts.append(output.data.get("text/plain", ""))
    return "\n".join(parts)


def _one_run(workdir: pathlib.Path, pattern: str = "runs/*") -> pathlib.Path:
    runs = glob.glob(str(workdir / pattern))
    assert len(runs) == 1, runs
    return pathlib.Path(runs[0])


def _check_run(run_path: pathlib.Path) -> dict:
    for name in ("report.html", "report.md", "comparison.json", "result.json", "samples.md"):
        assert (run_path / name).is_file(), name
    assert (run_path / "adapter" / "adapter.json").is_file()
    return json.loads((run_path / "comparison.json").read_text())


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_stored_clean_with_badge_and_parameters(name):
    notebook = _read(name)
    nbformat.validate(notebook)
    for cell in _code_cells(notebook):
        assert cell.outputs == [], f"{name}: a cell is stored with outputs"
        assert cell.execution_count is None, f"{name}: a cell is stored with an execution count"
    title = notebook.cells[0]
    assert title.cell_type == "markdown" and title.source.startswith("# ")
    assert BADGE_URL.format(name) in title.source
    assert "What you need" in title.source
    parameters, install = _code_cells(notebook)[:2]
    assert "parameters" in parameters.metadata.get("tags", [])
    assert 'os.environ.get("GEMMA_TUNE_NOTEBOOK_OFFLINE") == "1"' in parameters.source
    assert "%pip install" in install.source and 'find_spec("gemma_tune")' in install.source
    # Installs from its checkout when it sits in one, else from the documented source.
    assert "%pip install -q -e {checkout}" in install.source
    source = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["urls"]["Source"]
    assert f'SOURCE = "git+{source}"' in install.source


def test_quickstart(tmp_path, jupyter_path, monkeypatch):
    notebook = _execute("quickstart", tmp_path, jupyter_path, monkeypatch)
    comparison = _check_run(_one_run(tmp_path, "runs/demo-*"))
    assert comparison["systems"] == ["base", "tuned"]
    config = json.loads((_one_run(tmp_path) / "config.json").read_text())
    assert config["model"]["preset"] == "tiny:gemma1"
    output = _text_output(notebook)
    assert "--- base ---" in output and "--- tuned ---" in output


def test_dolly_lora4(tmp_path, jupyter_path, monkeypatch):
    notebook = _execute("dolly_lora4", tmp_path, jupyter_path, monkeypatch)
    comparison = _check_run(_one_run(tmp_path, "runs/dolly_lora4-*"))
    prompts = [record["prompt"] for record in comparison["qualitative"]]
    assert prompts[0] == "What should I do on a trip to Europe?"
    output = _text_output(notebook)
    assert "### What should I do on a trip to Europe?" in output
    assert "--- tuned ---" in output


def test_your_data(tmp_path, jupyter_path, monkeypatch):
    notebook = _execute("your_data", tmp_path, jupyter_path, monkeypatch)
    output = _text_output(notebook)
    assert "my_data/broken.jsonl:2:" in output and "my_data/broken.jsonl:3:" in output
    run_path = _one_run(tmp_path, "runs/jsonl_sft-*")
    _check_run(run_path)
    evaluation = json.loads((run_path / "evaluations/reworded/comparison.json").read_text())
    assert evaluation["count"] == 3
    assert (run_path / "evaluations/reworded/report.html").is_file()
    assert (tmp_path / "exports/adapter/adapter_config.json").is_file()
    assert (tmp_path / "exports/merged/config.json").is_file()
    assert (tmp_path / "exports/merged/model.safetensors").is_file()
    if importlib.util.find_spec("transformers") is not None:
        assert "transformers:" in output  # the merged export loaded and generated


def test_tpu(tmp_path, jupyter_path, monkeypatch):
    notebook = _execute("tpu", tmp_path, jupyter_path, monkeypatch)
    run_path = _one_run(tmp_path, "runs/tiny-tpu-*")
    _check_run(run_path)
    config = json.loads((run_path / "config.json").read_text())
    assert config["model"]["dtype"] == "bfloat16"
    assert "--- tuned ---" in _text_output(notebook)


def test_vision(tmp_path, jupyter_path, monkeypatch):
    notebook = _execute("vision", tmp_path, jupyter_path, monkeypatch)
    run_path = _one_run(tmp_path, "runs/tiny_vision-*")
    comparison = _check_run(run_path)
    assert comparison["count"] == 4
    assert all(item.get("thumbnails") for item in comparison["examples"])
    output = _text_output(notebook)
    assert output.count("question: ") == 3 and output.count("tuned:    ") == 3
    assert "image/png" in json.dumps([cell.get("outputs") for cell in notebook.cells])
