"""The run directory's formats: a run written before adapter schema versions (tests/fixtures/
run_v1, by the code of commit 62a563b) still loads and reports, adapters written now carry
schema version 3 with their LoRA layout, those of versions 1 and 2 load as per_head, and a
newer version or an unknown layout is refused naming the file."""

import json
import os
import re
import shutil

import numpy as np
import pytest

from gemma_tune import config as config_lib
from gemma_tune import model
from gemma_tune.export import merge
from gemma_tune.model import adapters, lora, prepare
from gemma_tune.reporting import report
from gemma_tune.runs import metrics_log, run_dir, tuned_run
from gemma_tune.training import checkpoint

RUN_V1 = os.path.join(os.path.dirname(__file__), "fixtures", "run_v1")


def _copy_of_run_v1(tmp_path) -> str:
    copy = str(tmp_path / "run_v1")
    shutil.copytree(RUN_V1, copy)
    return copy


def test_the_fixture_is_a_version_1_run():
    metadata = json.loads(open(os.path.join(RUN_V1, "adapter", "adapter.json")).read())
    assert "schema_version" not in metadata
    assert run_dir.read_config(RUN_V1)["model"]["preset"] == "tiny:gemma3"
    steps = [record["step"] for record in run_dir.read_metrics(RUN_V1)]
    assert steps == sorted(steps) and steps[0] == 0 and steps[-1] == 17
    assert checkpoint.latest(RUN_V1).endswith("step-000017")


def test_a_version_1_run_loads_with_its_adapter_weights():
    tuned = tuned_run.load_tuned(RUN_V1, "float32")
    assert tuned.config["model"]["preset"] == "tiny:gemma3"
    assert tuned.adapter_metadata["rank"] == 8
    assert adapters.lora_layout(tuned.adapter_metadata) == "per_head"
    assert {lora.layout(layer) for layer in merge.lora_layers(tuned.loaded.backbone)} == {
        "per_head"
    }
    variables = {v.path: v for v in tuned.loaded.causal_lm.trainable_variables}
    with np.load(os.path.join(RUN_V1, "adapter", "adapter.npz")) as arrays:
        assert sorted(arrays.files) == sorted(variables)
        for name in arrays.files:
            assert np.abs(arrays[name]).max() > 0, name  # B factors are trained, not zero
            np.testing.assert_array_equal(np.asarray(variables[name].numpy()), arrays[name])


def test_a_version_1_config_without_lora_layout_resumes_per_head():
    config = config_lib.from_run(RUN_V1)
    assert "layout" not in config.lora
    assert prepare.Tuning.from_config(config).layout == "per_head"


def test_the_report_of_a_version_1_run_is_rebuilt(tmp_path):
    copy = _copy_of_run_v1(tmp_path)
    os.remove(os.path.join(copy, "report.md"))
    html_path, md_path = report.write(copy)
    assert os.path.exists(os.path.join(copy, "loss_curves.png"))
    assert "<img" in open(html_path).read()
    with open(os.path.join(RUN_V1, "report.md")) as f:
        written_then = f.read()
    with open(md_path) as f:
        assert f.read() == written_then
    assert not [name for name in os.listdir(copy) if name.endswith(".tmp")]


def _tiny_lora(layout="per_head"):
    loaded = model.load("tiny:gemma1", "float32")
    model.enable_lora(loaded, 2, layout=layout)
    return loaded


@pytest.mark.parametrize("layout", ["per_head", "peft"])
def test_an_adapter_written_now_has_schema_version_3_and_its_layout(tmp_path, layout):
    tuned = _tiny_lora(layout).causal_lm
    adapters.save(tuned, str(tmp_path), {"base_preset": "tiny:gemma1", "rank": 2})
    metadata = json.loads((tmp_path / "adapter.json").read_text())
    assert metadata["schema_version"] == 3 == run_dir.ADAPTER_SCHEMA_VERSION
    assert metadata["layout"] == layout
    assert sorted(os.listdir(tmp_path)) == ["adapter.json", "adapter.npz"]  # no temporary left
    assert adapters.load(_tiny_lora(layout).causal_lm, str(tmp_path))["schema_version"] == 3
    rebuilt = tuned_run.load_base("tiny:gemma1", str(tmp_path), "float32")
    assert {lora.layout(layer) for layer in merge.lora_layers(rebuilt.backbone)} == {layout}


def test_a_version_2_adapter_has_no_layout_and_loads_as_per_head(tmp_path):
    adapters.save(_tiny_lora().causal_lm, str(tmp_path), {"base_preset": "tiny:gemma1", "rank": 2})
    path = tmp_path / "adapter.json"
    metadata = json.loads(path.read_text())
    del metadata["layout"]
    path.write_text(json.dumps({**metadata, "schema_version": 2}))
    rebuilt = tuned_run.load_base("tiny:gemma1", str(tmp_path), "float32")
    assert {lora.layout(layer) for layer in merge.lora_layers(rebuilt.backbone)} == {"per_head"}
    adapters.load(rebuilt.causal_lm, str(tmp_path))


@pytest.mark.parametrize("version", [4, "3"])
def test_an_adapter_of_an_unknown_schema_version_is_refused_naming_the_file(tmp_path, version):
    adapters.save(_tiny_lora().causal_lm, str(tmp_path), {"base_preset": "tiny:gemma1"})
    path = tmp_path / "adapter.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "schema_version": version}))
    message = f"{path} is adapter schema version {version!r}"
    with pytest.raises(ValueError, match=re.escape(message)):
        adapters.load(_tiny_lora().causal_lm, str(tmp_path))
    with pytest.raises(ValueError, match="upgrade gemma_tune"):
        tuned_run.load_base("tiny:gemma1", str(tmp_path), "float32")


@pytest.mark.parametrize("layout", ["sideways", None])
def test_a_version_3_lora_adapter_with_an_unknown_layout_is_refused_naming_it(tmp_path, layout):
    adapters.save(_tiny_lora().causal_lm, str(tmp_path), {"base_preset": "tiny:gemma1"})
    path = tmp_path / "adapter.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "layout": layout}))
    with pytest.raises(
        ValueError, match=re.escape(f"{path}: adapter.json: LoRA layout {layout!r}")
    ):
        tuned_run.load_base("tiny:gemma1", str(tmp_path), "float32")


def test_writes_are_atomic_and_metrics_skip_a_torn_line(tmp_path):
    run_path = str(tmp_path)
    run_dir.write_result(run_path, {"steps": 3})
    assert run_dir.read_json(run_path, run_dir.RESULT) == {"steps": 3}
    with open(os.path.join(run_path, run_dir.METRICS), "w") as f:
        f.write('{"step": 1, "loss": 2.0}\n{"step": 2, "loss": 1.5}\n{"step": 3, "lo')
    assert [r["step"] for r in run_dir.read_metrics(run_path)] == [1, 2]
    metrics_log.truncate_metrics(run_path, 1)
    assert run_dir.read_metrics(run_path) == [{"step": 1, "loss": 2.0}]

    def fail(f):
        f.write(b"half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        run_dir.write_atomically(os.path.join(run_path, run_dir.RESULT), fail)
    assert run_dir.read_json(run_path, run_dir.RESULT) == {"steps": 3}
    assert sorted(os.listdir(run_path)) == [run_dir.METRICS, run_dir.RESULT]
