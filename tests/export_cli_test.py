"""The export command end to end on a real two-step tiny Gemma 3 run: hf, peft and keras
exports that reproduce the run, refusals of bad options and non-empty outputs, atomic writes.

    python -m pytest -q tests/export_cli_test.py
"""

import numpy as np
import pytest
from export_helpers import (
    hf_load,
    hf_logits,
    keras_logits,
    peft_logits,
    sample_token_ids,
)

from gemma_tune import model


def _two_step_run(directory, *overrides):
    """Trains a real two-step tiny Gemma 3 run (LoRA rank 2) into `directory`."""
    from gemma_tune import config as config_lib
    from gemma_tune import train

    settings = [
        "model.dtype=float32",
        "lora.rank=2",
        "train.max_steps=2",
        "train.batch_size=2",
        "train.eval_batches=1",
        "samples.count=0",
        "samples.max_new_tokens=2",
        "train.eval_at_start=False",
        "eval.limit=0",
        *overrides,
    ]
    return train.run(config_lib.load("tiny:gemma3", settings), str(directory))


@pytest.fixture(scope="module")
def run_path(tmp_path_factory):
    """A real two-step tiny Gemma 3 run directory."""
    return _two_step_run(tmp_path_factory.mktemp("export_cli") / "run")


@pytest.mark.slow  # >15 s on a 2-core AVX2 CPU: slow suite (CI runs it)
def test_cli_exports_hf_and_peft_that_reproduce_the_run(run_path, tmp_path):
    import subprocess
    import sys

    from gemma_tune.export import exporter
    from gemma_tune.runs import tuned_run

    tuned = tuned_run.load_tuned(run_path, "float32")
    token_ids = sample_token_ids()
    expected = keras_logits(tuned.loaded, token_ids)
    out = tmp_path / "hf"
    result = subprocess.run(
        [sys.executable, "-m", "gemma_tune.export", f"--run={run_path}", "--to=hf", f"--out={out}"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.strip().splitlines()  # the result alone: where, and how to load it
    assert len(lines) == 2 and lines[0] == f"Exported to {out}"
    assert "AutoModelForCausalLM.from_pretrained" in lines[1]
    assert "LoRA rank 2 merged" in result.stderr and "Loading" in result.stderr
    np.testing.assert_allclose(hf_logits(hf_load(out), token_ids), expected, atol=1e-4, rtol=0)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging left

    exporter.export(run_path, "hf", str(tmp_path / "base"), base_only=True)
    exporter.export(run_path, "peft", str(tmp_path / "adapter"), base_model=str(tmp_path / "base"))
    base_logits = hf_logits(hf_load(tmp_path / "base"), token_ids)
    assert np.abs(base_logits - expected).max() > 1e-3  # two steps of training changed the model
    logits = peft_logits(tmp_path / "base", tmp_path / "adapter", token_ids)
    np.testing.assert_allclose(logits, expected, atol=1e-4, rtol=0)


@pytest.mark.slow  # its own training run (~30 s on 2 shared cores)
def test_peft_export_of_a_peft_layout_run_has_the_runs_rank(tmp_path):
    import json

    from gemma_tune.export import exporter, peft_export
    from gemma_tune.runs import tuned_run

    run = _two_step_run(tmp_path / "run", "lora.layout=peft", 'lora.targets=["all"]')
    tuned = tuned_run.load_tuned(run, "float32")
    assert tuned.adapter_metadata["layout"] == "peft"
    exporter.export(run, "hf", str(tmp_path / "base"), base_only=True)
    exporter.export(run, "peft", str(tmp_path / "adapter"), base_model=str(tmp_path / "base"))
    config = json.loads((tmp_path / "adapter" / peft_export.CONFIG_FILE).read_text())
    assert (config["r"], config["rank_pattern"], len(config["target_modules"])) == (2, {}, 7)
    token_ids = sample_token_ids()
    logits = peft_logits(tmp_path / "base", tmp_path / "adapter", token_ids)
    np.testing.assert_allclose(logits, keras_logits(tuned.loaded, token_ids), atol=1e-4, rtol=0)


def test_cli_keras_export_loads_with_model_load(run_path, tmp_path):
    from gemma_tune.export import exporter
    from gemma_tune.runs import tuned_run

    expected = keras_logits(tuned_run.load_tuned(run_path, "float32").loaded, sample_token_ids())
    exporter.export(run_path, "keras", str(tmp_path / "keras"))
    reloaded = model.load(str(tmp_path / "keras"), "float32")
    np.testing.assert_allclose(
        keras_logits(reloaded, sample_token_ids()), expected, atol=2e-5, rtol=0
    )


def test_cli_gguf_export_reads_back_as_the_run(run_path, tmp_path, monkeypatch):
    from gemma_tune.export import exporter, gguf_export
    from gemma_tune.runs import tuned_run

    monkeypatch.setenv("GEMMA_TUNE_CACHE", str(tmp_path / "cache"))
    expected = keras_logits(tuned_run.load_tuned(run_path, "float32").loaded, sample_token_ids())
    exporter.export(run_path, "gguf", str(tmp_path / "gguf"), gguf_type="f32")
    assert sorted(p.name for p in (tmp_path / "gguf").iterdir()) == [
        gguf_export.MODELFILE,
        gguf_export.file_name("f32"),
    ]
    reloaded = model.load(str(tmp_path / "gguf" / gguf_export.file_name("f32")), "float32")
    np.testing.assert_allclose(
        keras_logits(reloaded, sample_token_ids()), expected, atol=2e-5, rtol=0
    )
    with pytest.raises(ValueError, match="--gguf_type"):
        exporter.export(run_path, "gguf", str(tmp_path / "b"), dtype="bfloat16")


@pytest.mark.slow  # >12 s on a 2-core AVX2 CPU: slow suite (CI runs it)
def test_cli_pushes_an_export_with_its_model_card_to_the_hub(run_path, tmp_path):
    """`--push_to_hub` against a local stand-in for the Hub's upload API (`fake_hub`)."""
    import os
    import subprocess
    import sys

    from fake_hub import FakeHub

    hub = FakeHub()
    try:
        env = {
            **os.environ,
            "HF_ENDPOINT": hub.url,
            "HF_TOKEN": "hf_test",
            "HF_HUB_DISABLE_XET": "1",
        }
        out = tmp_path / "adapter"
        result = subprocess.run(
            [sys.executable, "-m", "gemma_tune.export", f"--run={run_path}", "--to=peft",
             f"--out={out}", "--push_to_hub=me/tiny-adapter", "--private"],
            capture_output=True, text=True, timeout=300, env=env,
        )  # fmt: skip
    finally:
        hub.close()
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().splitlines()[-1] == "Uploaded to the Hub: me/tiny-adapter"
    repo = hub.repos["me/tiny-adapter"]
    assert repo["private"] is True
    assert sorted(repo["files"]) == sorted(p.name for p in out.iterdir())
    assert sorted(repo["files"]) == [
        "README.md",
        "adapter_config.json",
        "adapter_model.safetensors",
    ]
    assert (
        repo["files"]["adapter_model.safetensors"]
        == (out / "adapter_model.safetensors").read_bytes()
    )
    card = repo["files"]["README.md"].decode()
    assert card.startswith("---\nlibrary_name: peft\n")
    assert "from `tiny:gemma3`" in card and "LoRA, rank 2, alpha 2, on query, value" in card
    assert "| validation loss | - | " in card  # the base was not validated in this run
    assert "--set 'train.max_steps=2'" in card
    assert "python -m gemma_tune.train --experiment=tiny:gemma3" in card


def test_cli_refuses_a_bad_hub_repository_before_exporting(run_path, tmp_path):
    from gemma_tune.export import exporter

    with pytest.raises(ValueError, match="expected ORG/NAME"):
        exporter.export(run_path, "hf", str(tmp_path / "a"), push_to_hub="no-slash")
    with pytest.raises(ValueError, match="--private applies to --push_to_hub"):
        exporter.export(run_path, "hf", str(tmp_path / "a"), private=True)
    assert not (tmp_path / "a").exists()


def test_cli_refuses_a_non_empty_out_unless_overwrite(run_path, tmp_path):
    from gemma_tune.export import exporter

    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="not empty; pass --overwrite"):
        exporter.export(run_path, "peft", str(out))
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    exporter.export(run_path, "peft", str(out), overwrite=True)
    assert sorted(p.name for p in out.iterdir()) == [
        "adapter_config.json",
        "adapter_model.safetensors",
    ]
    assert [p.name for p in tmp_path.iterdir()] == ["out"]  # nothing left beside it


def test_cli_refuses_options_that_make_no_sense(run_path, tmp_path):
    from gemma_tune.export import exporter

    with pytest.raises(ValueError, match="--base_only"):
        exporter.export(run_path, "peft", str(tmp_path / "a"), base_only=True)
    with pytest.raises(ValueError, match="float32"):
        exporter.export(run_path, "peft", str(tmp_path / "a"), dtype="bfloat16")
    with pytest.raises(FileNotFoundError, match="not a run directory"):
        exporter.export(str(tmp_path), "hf", str(tmp_path / "a"))
    assert not (tmp_path / "a").exists()


def test_a_failed_export_leaves_out_untouched(tmp_path):
    from gemma_tune.export import exporter

    out = tmp_path / "out"
    out.mkdir()
    (out / "old.txt").write_text("previous export")

    def fail(directory):
        (tmp_path / "seen").write_text(directory)
        open(f"{directory}/half.bin", "w").close()
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        exporter.write_atomically(str(out), fail)
    assert [p.name for p in out.iterdir()] == ["old.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "seen"]
