"""The Python API, for notebooks and scripts: tune, then talk to, evaluate and export the model
in the same process, with the same machinery and run directory as the command line.

    import gemma_tune

    run = gemma_tune.finetune("train.jsonl", experiment="jsonl_sft", overrides={"lora.rank": 8})
    run.metrics["val_loss"], run.path
    print(run.generate("When does the makerspace open?"))
    run.evaluate(data="held_out.jsonl")              # base vs tuned, scored
    run.export(to="hf", out="exported/hf")
    same = gemma_tune.load_run(run.path)              # a finished run, later

`data` is a file path (any format `python -m gemma_tune.data check` reads), a list of rows
(dicts in any of those formats), a `datasets.Dataset`, or None for the experiment's own data.
Rows and datasets are written once to gemma_tune's cache (`~/.cache/gemma_tune/data`, named by
their content), so a rerun with the same data resumes the same run. Everything after the data
argument is keyword-only.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections.abc import Sequence

from gemma_tune import config as config_lib


def _setting(key: str, value) -> str:
    """One `--set` override for a Python value: strings as they are, the rest as JSON."""
    return f"{key}={value if isinstance(value, str) else json.dumps(value)}"


def _cache_dir() -> str:
    from gemma_tune.model import gguf_convert

    return os.path.join(gguf_convert.default_cache_dir(), "data")


def data_path(data) -> str:
    """A path `data.source=file` reads for `data`: a path as it is; a list of rows (or a
    `datasets.Dataset`'s rows) written as JSONL under the cache, named by a hash of the content
    (written once; an existing file is reused).

    Raises:
      TypeError: for anything else.
    """
    if isinstance(data, (str, os.PathLike)):
        return os.fspath(data)
    if type(data).__name__ == "Dataset" and hasattr(data, "to_list"):  # a datasets.Dataset
        data = data.to_list()
    if isinstance(data, list):
        os.makedirs(_cache_dir(), exist_ok=True)
        text = "".join(json.dumps(row, ensure_ascii=False, sort_keys=True) + "\n" for row in data)
        digest = hashlib.sha256(text.encode()).hexdigest()[:16]
        path = os.path.join(_cache_dir(), f"rows-{digest}.jsonl")
        if not os.path.exists(path):
            partial = f"{path}.{os.getpid()}.partial"
            with open(partial, "w") as f:
                f.write(text)
            os.replace(partial, path)
        return path
    raise TypeError(
        f"data must be a file path, a list of row dicts or a datasets.Dataset, not "
        f"{type(data).__name__}"
    )


@dataclasses.dataclass
class Run:
    """A training run's directory and what can be done with it (see the module docstring)."""

    path: str

    def __post_init__(self):
        self._chat = None

    @property
    def config(self) -> dict:
        """The run's resolved config, as written at its start."""
        from gemma_tune.runs import run_dir

        return run_dir.read_config(self.path)

    @property
    def metrics(self) -> dict:
        """The run's results (`result.json`): validation loss and perplexity, base and tuned
        answer metrics, steps, parameter counts, times."""
        from gemma_tune.runs import run_dir

        result = run_dir.read_json(self.path, run_dir.RESULT)
        if result is None:
            raise FileNotFoundError(f"{self.path} has no result yet (did the run finish?)")
        return result

    @property
    def history(self) -> list[dict]:
        """Every record of `metrics.jsonl` (training losses, validations), in order."""
        from gemma_tune.runs import run_dir

        return run_dir.read_metrics(self.path)

    def generate(
        self,
        prompt: str,
        *,
        system: str | None = None,
        context: str | None = None,
        base: bool = False,
        max_new_tokens: int = 128,
        temperature: float = 0.0,
        top_k: int = 0,
        top_p: float = 1.0,
        seed: int = 0,
        images: Sequence[str] = (),
        decode_dtype: str = "float32",
    ) -> str:
        """The tuned model's answer to `prompt` in the run's chat template (`base=True`: the
        model before tuning). Greedy by default; the model loads on first use and stays.
        `images`: image files put before the prompt, for a model that reads images
        (`docs/vision.md`), as `sample --image` does. `decode_dtype`: "bfloat16" decodes with
        bfloat16 weight matrices, as `sample --decode_dtype` does.

        Raises:
          ValueError: an image that cannot be read, images for a model that reads none, or
            an unknown `decode_dtype`.
        """
        from gemma_tune import sample

        if self._chat is None:
            from gemma_tune.runs import tuned_run

            config = self.config
            self._chat = sample.Chat(
                config["model"]["preset"],
                tuned_run.adapter_path(self.path),
                seed=config.get("seed", 0),
                dtype=config["model"]["dtype"],
            )
        chat = self._chat
        chat.set_decode_dtype(decode_dtype)
        weights = chat.base_weights if base else chat.tuned_weights
        opened = sample.read_images(list(images))
        if opened and chat.template.image_inputs is None:
            preset = self.config["model"]["preset"]
            raise ValueError(f"images: {preset} does not read images (docs/vision.md)")
        return chat.answer(
            chat.prompt_ids(prompt, system, context, images=opened),
            weights,
            echo=False,
            max_new_tokens=max_new_tokens,
            temperature=temperature,
            top_k=top_k,
            top_p=top_p,
            seed=seed,
        )

    def evaluate(
        self,
        data=None,
        *,
        limit: int | None = None,
        out: str | None = None,
        decode_dtype: str = "float32",
        sample_temperature: float | None = None,
    ) -> dict:
        """Answers and scores the base and the tuned model on `data` (a path, rows or a
        `datasets.Dataset`; default the run's validation split), writes the report into `out`
        (default `RUN_DIR/evaluations/<time>`) and returns the comparison (`comparison.json`:
        per-system means, losses, examples). `decode_dtype` and `sample_temperature` (> 0:
        also one sampled answer per prompt, systems base+sampled and tuned+sampled) as
        `evaluate --decode_dtype` and `--sample_temperature`."""
        from gemma_tune.evaluation import run_evaluation

        directory = run_evaluation.evaluate(
            self.path,
            data=None if data is None else data_path(data),
            limit=limit,
            out=out,
            decode_dtype=decode_dtype,
            sample_temperature=sample_temperature,
        )
        with open(os.path.join(directory, "comparison.json")) as f:
            return json.load(f)

    def export(self, *, to: str, out: str, **options) -> str:
        """Exports the run (`to` = "hf", "peft", "keras" or "gguf"; `options` as
        `gemma_tune.export.exporter.export` takes them, e.g. `push_to_hub="org/name"`);
        returns `out`."""
        from gemma_tune.export import exporter

        return exporter.export(self.path, to, out, **options)


def finetune(
    data=None,
    *,
    experiment: str = "demo",
    overrides: dict | None = None,
    workdir: str | None = None,
    overwrite: bool = False,
) -> Run:
    """Trains `experiment` (with `overrides`, e.g. `{"lora.rank": 8}`) on `data`, in this
    process, and returns the finished `Run`.

    Args:
      data: a file path, a list of rows, a `datasets.Dataset`, or None for the experiment's own
        data (see the module docstring).
      experiment: an experiment name, `NAME:ARG` as on the command line.
      overrides: config keys and values, as `--set key=value` would give them.
      workdir: the run directory (default `runs/<experiment>-<time>`); rerunning on a directory
        that holds an unfinished run of the same config resumes it, and a finished one is
        returned as it is.
      overwrite: start over in a `workdir` that holds another run.

    Raises:
      ValueError: an unknown experiment or key, or a value out of its range, before any work.
    """
    from gemma_tune import train
    from gemma_tune.runs import run_dir

    settings = [_setting(key, value) for key, value in (overrides or {}).items()]
    if data is not None:
        settings = ["data.source=file", f"data.path={data_path(data)}", *settings]
    config = config_lib.load(experiment, settings)
    workdir = workdir or run_dir.default_path(config.experiment)
    if not overwrite and _finished_with(workdir, config.to_dict()):
        print(f"{workdir} already holds this run, finished; nothing to do", flush=True)
        return Run(workdir)
    return Run(train.run(config, workdir, overwrite=overwrite))


def _finished_with(workdir: str, config_dict: dict) -> bool:
    """Whether `workdir` holds a finished run of exactly this config (a notebook cell run
    again), which `finetune` returns instead of refusing it as the command line does."""
    from gemma_tune.runs import run_dir

    if not os.path.isdir(workdir) or not run_dir.is_finished(workdir):
        return False
    try:
        saved = run_dir.read_config(workdir)
    except (FileNotFoundError, ValueError):
        return False
    return saved == json.loads(json.dumps(config_dict))


def load_run(path: str) -> Run:
    """The `Run` of an existing run directory.

    Raises:
      FileNotFoundError: when `path` is not a run directory.
    """
    from gemma_tune.runs import run_dir

    run_dir.read_config(path)  # fails here, naming the path, for anything else
    return Run(path)
