"""Export a tuned run (`python -m gemma_tune.export --run=RUN_DIR --to=hf|peft|keras|gguf
--out=DIR` runs `export`; the command line is `gemma_tune/export/__main__.py`).

    python -m gemma_tune.export --run=RUN_DIR --to=hf --out=exported/hf              # merged
    python -m gemma_tune.export --run=RUN_DIR --to=hf --out=exported/hf --dtype=bfloat16
    python -m gemma_tune.export --run=RUN_DIR --to=keras --out=exported/keras        # merged
    python -m gemma_tune.export --run=RUN_DIR --to=hf --base_only --out=exported/base
    python -m gemma_tune.export --run=RUN_DIR --to=peft --out=exported/adapter
    python -m gemma_tune.export --run=RUN_DIR --to=gguf --out=exported/gguf --gguf_type=q8_0

- `--to=hf`: the tuned model with LoRA merged into its weights, as a transformers directory
  (`AutoModelForCausalLM.from_pretrained(DIR)`, `AutoTokenizer.from_pretrained(DIR)`; a model
  with a vision encoder: `AutoModelForImageTextToText` and `AutoProcessor`, `hf_export`).
- `--to=keras`: the same merged model as a KerasHub preset (`gemma_tune.model.load(DIR)`,
  `python -m gemma_tune.sample --model=DIR`), with its vision encoder and image converter
  when it has them.
- `--to=peft`: only the adapter, for `peft.PeftModel.from_pretrained(base, DIR)`. It reproduces the
  tuned model only on the base the run was tuned on: export that base once with
  `--to=hf --base_only`. A Hub checkpoint of the same model is a different base when the run's
  preset is not bit-identical to it (`gemma3_270m_gguf` comes from a 4-bit GGUF, for one).
- `--to=gguf`: the same merged model as one GGUF file for llama.cpp and Ollama
  (`model-f16.gguf`, or `--gguf_type=q8_0` / `f32`) and an Ollama `Modelfile`
  (`gemma_tune.export.gguf_export`; Gemma 3).
- `--base_only` (with `--to=hf`, `--to=keras` or `--to=gguf`): the run's base model, without
  the adapter.
- `--base_model` (with `--to=peft`): the base's directory or Hub id, recorded in
  `adapter_config.json` as `base_model_name_or_path`.

The model is rebuilt in float32 (`tuned_run.load_tuned`), merged in float32 and cast once to
`--dtype` when saved. The export is written into a temporary sibling of `--out` and renamed into
place at the end, so an interrupted export never leaves a half-written directory; a non-empty
`--out` is refused unless `--overwrite` is given.
"""

from __future__ import annotations

import os
import shutil
import tempfile

import gemma_tune  # noqa: F401  (selects the JAX backend)

HINTS = {
    "hf": "Load it with transformers.AutoModelForCausalLM.from_pretrained({out!r}) "
    "and transformers.AutoTokenizer.from_pretrained({out!r}) (a model that reads images: "
    "AutoModelForImageTextToText and AutoProcessor).",
    "keras": "Load it with gemma_tune.model.load({out!r}) or "
    "python -m gemma_tune.sample --model={out} --prompt=...",
    "gguf": "Run it with llama-cli -m {out}/model-TYPE.gguf, or ollama create NAME -f "
    "{out}/Modelfile; gemma_tune reads it back with --set model.preset={out}/model-TYPE.gguf.",
    "peft": "Load it with peft.PeftModel.from_pretrained(base, {out!r}), where base is "
    "transformers.AutoModelForCausalLM.from_pretrained(BASE) and BASE was written by "
    "python -m gemma_tune.export --run={run} --to=hf --base_only --out=BASE.",
}


def check_out(out: str, overwrite: bool) -> None:
    """Refuses an existing file, or a non-empty directory unless `overwrite`.

    Raises:
      FileExistsError: naming `out` and the fix.
    """
    if os.path.isfile(out):
        raise FileExistsError(f"--out={out} is a file; give a directory path")
    if os.path.isdir(out) and os.listdir(out) and not overwrite:
        raise FileExistsError(f"--out={out} is not empty; pass --overwrite to replace it")


def write_atomically(out: str, write) -> None:
    """Calls `write(staging_dir)` on a temporary sibling of `out`, then renames it to `out`.

    An existing `out` is replaced only after `write` has succeeded; on failure the staging
    directory is removed and `out` is left as it was.
    """
    out = os.path.abspath(out)
    parent = os.path.dirname(out)
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=f".{os.path.basename(out)}.partial-", dir=parent)
    try:
        write(staging)
        if os.path.exists(out):
            old = tempfile.mkdtemp(prefix=f".{os.path.basename(out)}.old-", dir=parent)
            os.rename(out, os.path.join(old, "replaced"))
            os.rename(staging, out)
            shutil.rmtree(old)
        else:
            os.rename(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def export(
    run_path: str,
    to: str,
    out: str,
    dtype: str = "float32",
    overwrite: bool = False,
    base_only: bool = False,
    base_model: str | None = None,
    gguf_type: str = "f16",
    push_to_hub: str | None = None,
    private: bool = False,
) -> str:
    """Exports a run directory's model (see the module docstring for the formats).

    Args:
      run_path: a run directory written by `gemma_tune.train`.
      to: "hf", "peft", "keras" or "gguf".
      out: the directory to create.
      dtype: "float32" or "bfloat16" for hf and keras; peft adapters are always float32.
      overwrite: replace a non-empty `out`.
      base_only: export the run's base model instead of the tuned one (hf, keras, gguf).
      base_model: for peft, the base model's path or Hub id recorded in adapter_config.json.
      gguf_type: for gguf, the 2-D weights' type: "f16", "q8_0" or "f32".
      push_to_hub: a Hub repository (ORG/NAME) to upload the export to, with a model card
        (`README.md`, `export.hub`) written into it first.
      private: create that repository private.

    Returns:
      `out`.

    Raises:
      ValueError: for option combinations that make no sense.
      FileExistsError: for a non-empty `out` without `overwrite`.
      FileNotFoundError: when `run_path` is not a finished run.
    """
    from gemma_tune import model
    from gemma_tune.export import gguf_export, hf_export, hub, merge, peft_export
    from gemma_tune.model import adapters
    from gemma_tune.runs import tuned_run

    if to not in HINTS:
        raise ValueError(f"--to must be one of {sorted(HINTS)}, got {to!r}")
    if to == "peft" and base_only:
        raise ValueError("--base_only exports a full model; use it with --to=hf, keras or gguf")
    if to == "peft" and dtype != "float32":
        raise ValueError("PEFT adapters are saved in float32; drop --dtype")
    if base_model and to != "peft":
        raise ValueError("--base_model only applies to --to=peft")
    if to == "gguf" and dtype != "float32":
        raise ValueError("--dtype applies to hf and keras; GGUF takes --gguf_type (f16, q8_0, f32)")
    if private and not push_to_hub:
        raise ValueError("--private applies to --push_to_hub")
    if push_to_hub:
        hub.check_repo_id(push_to_hub)
    if gguf_type not in gguf_export.TYPES:
        raise ValueError(
            f"--gguf_type must be one of {sorted(gguf_export.TYPES)}, got {gguf_type!r}"
        )
    check_out(out, overwrite)
    config = tuned_run.read_config(run_path)
    preset = config["model"]["preset"]
    if base_only:
        print(f"Loading the base model of {run_path}: {preset} (float32) ...", flush=True)
        loaded = model.load(preset, "float32", seed=config.get("seed", 0))
        what = "the base model (no adapter)"
    else:
        adapter_dir = tuned_run.adapter_path(run_path)  # fails before loading: no adapter
        if to == "peft":  # before loading: a PEFT adapter cannot carry vision-tower LoRA
            vision_targets = adapters.read_metadata(adapter_dir).get("vision_targets")
            peft_export.refuse_vision_targets(vision_targets or [])
        print(f"Loading {run_path}: {preset} with its LoRA adapter (float32) ...", flush=True)
        tuned = tuned_run.load_tuned(run_path, "float32")
        loaded = tuned.loaded
        what = f"the tuned model (LoRA rank {tuned.adapter_metadata.get('rank')} merged)"

    def write(directory: str) -> None:
        if to == "hf":
            print(f"Writing {what} as a Hugging Face model ({dtype}) ...", flush=True)
            hf_export.save(loaded, directory, dtype)
        elif to == "keras":
            print(f"Writing {what} as a KerasHub preset ({dtype}) ...", flush=True)
            merge.save_keras_preset(loaded, directory, dtype)
        elif to == "gguf":
            print(f"Writing {what} as GGUF ({gguf_type}) with an Ollama Modelfile ...", flush=True)
            gguf_export.save(loaded, directory, gguf_type)
        else:
            print("Writing the LoRA adapter as a PEFT adapter (float32) ...", flush=True)
            peft_export.save(loaded, directory, base_model)
        if push_to_hub:
            hub.write_card(directory, run_path, to, push_to_hub)

    write_atomically(out, write)
    if push_to_hub:
        hub.push(out, push_to_hub, private=private)
    return out
