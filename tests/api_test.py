"""The Python API (`gemma_tune.finetune`, `load_run`, `Run`) on a tiny Gemma 3, in process: rows
in, a finished run out, then generate, evaluate, export and reload, as a notebook would."""

import json

import pytest

import gemma_tune
from gemma_tune import api, model

OVERRIDES = {
    "train.max_steps": 4,
    "train.eval_every": 0,
    "samples.count": 1,
    "samples.max_new_tokens": 4,
    "eval.limit": 2,
    "lora.rank": 4,
}


def _rows(count=16):
    return [
        {
            "messages": [
                {"role": "user", "content": f"What is {i} plus one?"},
                {"role": "assistant", "content": f"{i + 1}"},
            ]
        }
        for i in range(count)
    ]


def _picture(directory) -> str:
    from PIL import Image

    path = f"{directory}/picture.png"
    Image.new("RGB", (8, 8), "red").save(path)
    return path


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    cache = tmp_path_factory.mktemp("cache")
    patch = pytest.MonkeyPatch()
    patch.setenv("GEMMA_TUNE_CACHE", str(cache))
    workdir = str(tmp_path_factory.mktemp("api") / "run")
    run = gemma_tune.finetune(
        _rows(), experiment="tiny:gemma3", overrides=OVERRIDES, workdir=workdir
    )
    yield run, workdir, patch
    patch.undo()


@pytest.mark.slow  # the module's tiny run takes ~40 s; CI runs the slow suite
def test_finetune_on_rows_returns_the_finished_run(finished):
    run, workdir, _ = finished
    assert isinstance(run, gemma_tune.Run) and run.path == workdir
    assert run.metrics["steps"] == 4 and run.metrics["val_loss"] > 0
    assert run.config["data"]["source"] == "file" and run.config["lora"]["rank"] == 4
    assert [r["step"] for r in run.history if "loss" in r][-1] == 4
    answer = run.generate("What is 3 plus one?", max_new_tokens=6)
    base = run.generate("What is 3 plus one?", max_new_tokens=6, base=True)
    assert isinstance(answer, str) and isinstance(base, str)
    sampled = [run.generate("Hi", temperature=1.0, seed=s, max_new_tokens=6) for s in (1, 1)]
    assert sampled[0] == sampled[1]  # seeded
    half = run.generate("What is 3 plus one?", max_new_tokens=6, decode_dtype="bfloat16")
    assert isinstance(half, str) and run._chat.decode_dtype == "bfloat16"
    with pytest.raises(ValueError, match="decode_dtype='int3'"):
        run.generate("Hi", decode_dtype="int3")
    with pytest.raises(ValueError, match="images: tiny:gemma3 does not read images"):
        run.generate("What is in it?", images=[_picture(workdir)])


@pytest.mark.slow
def test_rerunning_the_same_data_resumes_the_finished_run(finished):
    run, workdir, _ = finished
    again = gemma_tune.finetune(
        _rows(), experiment="tiny:gemma3", overrides=OVERRIDES, workdir=workdir
    )
    assert again.metrics == run.metrics  # the same data file, config and run: nothing redone
    assert api.data_path(_rows()) == run.config["data"]["path"]


@pytest.mark.slow
def test_a_dataset_is_the_same_data_as_its_rows(finished):
    datasets = pytest.importorskip("datasets")
    assert api.data_path(datasets.Dataset.from_list(_rows())) == api.data_path(_rows())


@pytest.mark.slow
def test_evaluate_export_and_load_run(finished, tmp_path):
    run, workdir, _ = finished
    comparison = run.evaluate(data=_rows(4), limit=0, out=str(tmp_path / "eval"))
    assert comparison["count"] == 4 and set(comparison["means"]) == {"base", "tuned"}
    out = run.export(to="keras", out=str(tmp_path / "keras"))
    assert model.load(out, "float32").family.name == "gemma3"
    reloaded = gemma_tune.load_run(workdir)
    assert reloaded.metrics == run.metrics
    json.dumps(reloaded.config)


def test_misuse_is_refused(tmp_path):
    with pytest.raises(TypeError):
        gemma_tune.finetune(_rows(), "tiny:gemma3")  # experiment is keyword-only
    with pytest.raises(TypeError, match="a file path, a list of row dicts"):
        api.data_path({"rows": _rows()})
    with pytest.raises(FileNotFoundError):
        gemma_tune.load_run(str(tmp_path / "nothing"))
    with pytest.raises(ValueError):
        gemma_tune.finetune(
            _rows(), experiment="tiny:gemma3", overrides={"lora.rnak": 4}, workdir=str(tmp_path)
        )
