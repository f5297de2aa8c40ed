"""Push an export to the Hugging Face Hub with a model card written from its run.

    python -m gemma_tune.export --run=RUN_DIR --to=hf --out=DIR --push_to_hub=ORG/NAME
    python -m gemma_tune.export --run=RUN_DIR --to=peft --out=DIR --push_to_hub=ORG/NAME --private

The export directory gets a `README.md` model card (`model_card`: base model, method and its
settings, data, base-vs-tuned metrics, the command that made the run) and is uploaded as it is
with `huggingface_hub` (`push`): the repository is created when missing, and the token is the
one `huggingface-cli login` or `HF_TOKEN` gives.
"""

from __future__ import annotations

import os

from gemma_tune.runs import run_dir

CARD = "README.md"
# Hub library names by export format (the Hub picks its loading snippet from them).
LIBRARIES = {"hf": "transformers", "peft": "peft", "gguf": "gguf", "keras": "keras-hub"}


def _metrics_rows(result: dict) -> list[str]:
    """Table rows of the run's held-out metrics, base and tuned ("-" where the run did not
    measure one, e.g. no validation of the base with `train.eval_at_start=false`)."""

    def cell(value, digits):
        return "-" if value is None else f"{value:.{digits}f}"

    rows = []
    for key, label in (("val_loss", "validation loss"), ("val_perplexity", "perplexity")):
        if result.get(key) is not None:
            rows.append(
                f"| {label} | {cell(result.get(f'base_{key}'), 4)} | {cell(result[key], 4)} |"
            )
    base, tuned = result.get("base") or {}, result.get("tuned") or {}
    for key in ("exact_match", "token_f1", "rougeL_f1"):
        if key in tuned:
            rows.append(f"| {key} | {cell(base.get(key), 3)} | {cell(tuned[key], 3)} |")
    return rows


def _method(config: dict) -> str:
    method = config.get("method", "lora")
    quantize = config.get("model", {}).get("quantize", "none")
    if method == "full":
        return "full fine-tuning"
    lora = config.get("lora", {})
    name = {"lora": "LoRA", "dora": "DoRA"}.get(method, method)
    if quantize != "none":
        name = f"Q{name} ({quantize} base)"
    targets = ", ".join(lora.get("targets", []))
    alpha = lora.get("alpha") or lora.get("rank")  # 0 means alpha = rank
    vision_targets = ", ".join(lora.get("vision_targets", []))
    tower = f" and the vision tower's {vision_targets}" if vision_targets else ""
    return f"{name}, rank {lora.get('rank')}, alpha {alpha}, on {targets}{tower}"


def _data(config: dict, summary: dict) -> str:
    data = config.get("data", {})
    kind = data.get("source")
    source = {"file": data.get("path"), "hf": data.get("name"), "tfds": data.get("name")}.get(
        kind, "gemma_tune's generated tiny data"
    )
    train, validation = summary.get("train_count", "?"), summary.get("validation_count", "?")
    return f"{source} ({kind}): {train} training and {validation} validation examples"


def train_command(config: dict) -> str:
    """The `gemma_tune.train` command that makes this run's config: its experiment plus a
    `--set` for every value that differs from the experiment's own."""
    import json

    from gemma_tune import config as config_lib

    experiment = config.get("experiment", "")
    command = f"python -m gemma_tune.train --experiment={experiment}"
    try:
        defaults = config_lib.load(experiment).to_dict()
    except ValueError:  # an experiment this install does not ship
        return command
    sets = []
    for key, value in _flat(config).items():
        if key != "experiment" and _flat(defaults).get(key) != value:
            text = value if isinstance(value, str) else json.dumps(value)
            sets.append(f" \\\n    --set '{key}={text}'")
    return command + "".join(sets)


def _flat(tree: dict, prefix: str = "") -> dict:
    flat = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(_flat(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def model_card(run_path: str, to: str, repo_id: str) -> str:
    """The Hub model card (`README.md`) of an export of `run_path` in format `to`."""
    config = run_dir.read_config(run_path)
    summary = run_dir.read_json(run_path, run_dir.DATA_SUMMARY)
    result = run_dir.read_json(run_path, run_dir.RESULT)
    preset = config["model"]["preset"]
    experiment = config.get("experiment", "")
    front = [
        "---",
        f"library_name: {LIBRARIES[to]}",
        "tags:",
        "- gemma_tune",
        "- gemma",
        f"- {config.get('method', 'lora')}",
        "---",
    ]
    lines = [
        *front,
        "",
        f"# {repo_id.split('/')[-1]}",
        "",
        f"{config.get('description') or experiment}. Tuned with gemma_tune from `{preset}`.",
        "",
        f"- Method: {_method(config)}",
        f"- Data: {_data(config, summary)}",
        f"- Sequence length: {config.get('sequence_length')} tokens; {result.get('steps')} steps",
        f"- Export: `--to={to}`",
        "",
        "## Base vs tuned (held-out examples)",
        "",
        "| metric | base | tuned |",
        "| --- | ---: | ---: |",
        *_metrics_rows(result),
        "",
        "## Reproduce",
        "",
        "```bash",
        train_command(config),
        "```",
        "",
        f"The run's full resolved configuration is its `{run_dir.CONFIG}`.",
        "",
    ]
    return "\n".join(lines)


def write_card(directory: str, run_path: str, to: str, repo_id: str) -> str:
    """Writes the model card into an export directory; returns its path."""
    path = os.path.join(directory, CARD)
    with open(path, "w") as f:
        f.write(model_card(run_path, to, repo_id))
    return path


def check_repo_id(repo_id: str) -> None:
    """Refuses a repository name that is not `ORG/NAME`, before any export work."""
    if repo_id.count("/") != 1 or not all(repo_id.split("/")):
        raise ValueError(f"--push_to_hub={repo_id!r}: expected ORG/NAME")


def push(directory: str, repo_id: str, *, private: bool = False, token: str | None = None) -> str:
    """Uploads `directory` to the Hub model repository `repo_id`, creating it when missing.

    Returns:
      The repository's URL.
    """
    from huggingface_hub import HfApi

    check_repo_id(repo_id)
    # HF_ENDPOINT (a private Hub) is read now, not only when huggingface_hub was imported.
    api = HfApi(token=token, endpoint=os.environ.get("HF_ENDPOINT"))
    url = api.create_repo(repo_id, private=private, exist_ok=True)
    print(f"Uploading {directory} to {url} ...", flush=True)
    api.upload_folder(
        repo_id=repo_id, folder_path=directory, commit_message="Upload from gemma_tune"
    )
    return str(url)
