"""Experiment configs: `--experiment=name[:arg]` resolution and `--set key=value` overrides.

An experiment is a module in `experiments/` (installed as `gemma_tune.experiments`) with
`get_config(arg=None)` returning an `ml_collections.ConfigDict`. Derived experiments start from
`base_config()` and state only their differences. Configs are locked: an override of a key
that does not exist, or with a value of the wrong type, stops the run before any heavy work,
naming the closest valid key. Every value is then range-checked by `config_ranges.check`, the
one place that knows each key's valid range, before anything is written: `lora.rank=0` or
`train.batch_size=0` stops with the key, the value and the valid range named.
"""

from __future__ import annotations

import difflib
import importlib
import json
import os
import pkgutil
import re

import ml_collections

from gemma_tune import config_ranges
from gemma_tune import experiments as experiments_package


def base_config() -> ml_collections.ConfigDict:
    """Every field an experiment can set, with the defaults of the reference run."""
    config = ml_collections.ConfigDict()
    config.experiment = ""
    config.description = ""
    config.seed = 0
    config.sequence_length = 256

    config.model = ml_collections.ConfigDict()
    config.model.preset = "gemma_2b_en"
    config.model.dtype = "auto"  # bfloat16 on GPU/TPU, float32 on CPU.
    # The frozen base stored as none | int8 | int4 (QLoRA; `gemma_tune.model.quantize`).
    config.model.quantize = "none"
    # int4: one scale and zero point per this many inputs of each output unit (5.25 bits per
    # weight at 32; 128 stores 4.31 but loses more: benchmarks/RESULTS.md, Tuning methods).
    config.model.int4_block_size = 32

    # lora: LoRA on the targets below; dora: weight-decomposed LoRA (a learned magnitude per
    # output unit) on the same targets; full: every weight (no adapter; for small models).
    config.method = "lora"

    config.lora = ml_collections.ConfigDict()
    config.lora.rank = 4
    config.lora.alpha = 0.0  # updates scaled by alpha / rank; 0: alpha = rank (scale 1)
    # Layer names (query, key, value, attention_output, ffw_gating, ffw_gating_2, ffw_linear)
    # or the shorthands attention, mlp, all. KerasHub's default: query and value.
    config.lora.targets = ["query", "value"]
    config.lora.dropout = 0.0  # dropout on the adapters' inputs while training
    # peft (Hugging Face PEFT's shape: rank r exactly, what --to=peft writes and vLLM serves) or
    # per_head (KerasHub's: one A per attention head, an update of rank heads x r on q/k/v;
    # the default until December 2026, and what a run whose config lacks the key has).
    config.lora.layout = "peft"
    # LoRA on the vision tower too (models with a vision encoder, method=lora): "attention"
    # (the encoder's attention projections) and/or "projector". Empty: the encoder stays frozen.
    config.lora.vision_targets = []

    config.data = ml_collections.ConfigDict()
    config.data.source = "hf"  # hf | tfds | file | tiny
    config.data.name = "databricks/databricks-dolly-15k"
    config.data.split = "train"
    config.data.path = ""
    config.data.format = "auto"
    config.data.input_column = "input"
    config.data.output_column = "output"
    config.data.context_column = ""
    config.data.system_column = ""
    config.data.keep_context = False
    config.data.max_examples = 1000
    config.data.max_field_chars = 1_000_000  # longer text fields: row left out, reported
    config.data.validation_path = ""
    config.data.validation_fraction = 0.05
    config.data.dedup = "exact"
    config.data.seed = 0
    config.data.instruction = ""

    config.template = ml_collections.ConfigDict()
    config.template.train_on_prompt = False

    config.train = ml_collections.ConfigDict()
    config.train.epochs = 1
    config.train.batch_size = 1
    config.train.grad_accum_steps = 1
    # Pad each batch only to its longest row, rounded up to a multiple of this (one compiled
    # step per width); 0 pads every batch to sequence_length (one compiled step).
    config.train.length_bucket = 0
    # Pack several short training examples into each row (attention stays within each
    # example), so padding costs no compute; steps then count packed rows, not examples.
    config.train.packing = False
    config.train.max_steps = 0  # 0: no cap.
    config.train.shuffle = True
    config.train.learning_rate = 5e-5
    config.train.weight_decay = 0.01
    config.train.schedule = "constant"
    config.train.warmup_steps = 0
    config.train.grad_clip_norm = 0.0  # 0: no clipping (Google's tutorial clips nothing).
    config.train.adam_beta1 = 0.9
    config.train.adam_beta2 = 0.999
    config.train.adam_epsilon = 1e-7
    config.train.log_every = 10
    config.train.eval_every = 0  # 0: validate once, at the end.
    config.train.eval_at_start = True  # validation loss of the base model, before any update
    config.train.eval_batch_size = 4
    config.train.eval_batches = 25  # 0: the whole validation set.
    # Also answer eval.prompts greedily at every validation (generations.jsonl, the trackers,
    # the report); opt-in, since generation costs time on every validation.
    config.train.generate_every_eval = False
    # Experiment trackers fed every metrics.jsonl record and the fixed prompts' answers
    # (`gemma_tune.training.tracking`): any of "tensorboard", "wandb", "trackio".
    config.train.report_to = []
    config.train.tensorboard = False  # the same as "tensorboard" in report_to
    # End with the weights of the step with the lowest validation loss, not the last step's.
    config.train.keep_best = False
    # Stop after this many validations in a row without a lower validation loss; 0: never.
    config.train.early_stopping_patience = 0
    config.train.checkpoint_every = (
        100  # steps; also at the end and on Ctrl-C/SIGTERM; 0: only those
    )
    config.train.keep_checkpoints = 2  # the newest N are kept
    # What each decoder block recomputes in the backward pass instead of keeping it (gradient
    # checkpointing): none; matmuls (keep only matrix products' outputs: ~1/3 less peak memory
    # for ~2% more FLOPs); full (keep only each block's input: least memory, about one more
    # forward pass of time); auto: matmuls on CPU, none on GPU/TPU. true/false: full/none.
    config.train.remat = "auto"
    # What the run optimizes: sft (supervised: the answers' cross-entropy) or dpo (preference
    # pairs: Direct Preference Optimization, settings in `dpo`; `gemma_tune.training.objectives`).
    config.train.objective = "sft"
    # Start from another run's trained weights (its adapter, or its full weights), e.g. DPO
    # after a supervised run; "" starts from the base model. Same preset and method required.
    config.train.init_from = ""

    # Preference tuning (train.objective=dpo; `gemma_tune.training.dpo`). data.format then names
    # a preference format: auto, csv, trl, trl_implicit, openai_preference, vertex_preference.
    config.dpo = ml_collections.ConfigDict()
    config.dpo.beta = 0.1  # how far from the reference model the rewards pull
    # sigmoid (DPO) | robust (rDPO) | ipo | simpo (no reference) | sft (the chosen answers' NLL)
    config.dpo.loss = "sigmoid"
    config.dpo.label_smoothing = 0.0  # the share of pairs assumed mislabelled (sigmoid, robust)
    config.dpo.simpo_gamma = 0.5  # SimPO's target reward margin
    # Weight of the chosen answers' per-token NLL added to the loss (RPO; TRL's rpo_alpha)
    config.dpo.rpo_alpha = 0.0

    config.samples = ml_collections.ConfigDict()
    config.samples.count = 4  # validation prompts shown side by side in samples.md
    config.samples.max_new_tokens = 64
    config.samples.batch_size = 8

    config.eval = ml_collections.ConfigDict()
    config.eval.limit = 50  # validation examples scored base vs tuned; 0 disables
    config.eval.primary_metric = "token_f1"  # orders the report's per-example table
    config.eval.prompts = []  # fixed prompts always answered base vs tuned (qualitative check)
    # > 0: base and tuned also answer every held-out prompt once by sampling at this temperature
    # (systems base+sampled, tuned+sampled): what users get when they sample, not just greedily.
    config.eval.sample_temperature = 0.0
    config.eval.sample_top_p = 0.9  # nucleus mass of those samples

    # Devices: a ("data", "model") mesh (`gemma_tune.training.sharding`); 1 x 1 is one device, -1 on
    # one axis takes all the devices the other leaves.
    config.mesh = ml_collections.ConfigDict()
    config.mesh.data = 1  # batches split over this many devices
    config.mesh.model = 1  # weights split over this many devices
    # Several hosts (`gemma_tune.training.multihost`): start jax.distributed; the mesh then
    # spans every host's devices. Coordinator "host:port", process count and id: from the
    # environment on Cloud TPU, SLURM and Open MPI, else set here (one process per host).
    config.mesh.distributed = False
    config.mesh.coordinator = ""
    config.mesh.num_processes = 0
    config.mesh.process_id = -1

    # Retrieved context: passages from a document collection attached to prompts.
    config.retrieval = ml_collections.ConfigDict()
    config.retrieval.corpus = ""  # a folder of .md/.txt, one such file, or a .jsonl; "" = off
    config.retrieval.top_k = 2  # passages per prompt
    config.retrieval.passage_words = 200  # longer sections are split into windows of this size
    config.retrieval.train = True  # also attach passages to the training prompts
    return config


def experiment_names() -> list[str]:
    """Names of the experiment modules shipped in `experiments/`."""
    return sorted(
        info.name
        for info in pkgutil.iter_modules(experiments_package.__path__)
        if not info.name.startswith("_")
    )


def describe_experiments() -> str:
    """One line per experiment: its name and the first line of its docstring."""
    lines = []
    for name in experiment_names():
        module = importlib.import_module(f"{experiments_package.__name__}.{name}")
        summary = (module.__doc__ or "").strip().splitlines()
        lines.append(f"{name:24s} {summary[0] if summary else ''}")
    return "\n".join(lines)


def load(experiment: str, overrides: list[str] | tuple[str, ...] = ()) -> ml_collections.ConfigDict:
    """Resolves `name[:arg]` to a locked config and applies `key=value` overrides.

    Raises:
      ValueError: unknown experiment, unknown key (with the closest key named), a value that
        does not fit the key's type, or one out of the key's range (`config_ranges.check`).
    """
    file_match = re.fullmatch(r"(.+\.py)(?::(.*))?", experiment)
    if file_match:
        module = _experiment_file(file_match.group(1))
        arg = file_match.group(2) or ""
    else:
        name, _, arg = experiment.partition(":")
        names = experiment_names()
        if name not in names:
            close = difflib.get_close_matches(name, names, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise ValueError(
                f"unknown experiment {name!r}.{hint} Known: {', '.join(names)}, or a .py file"
            )
        module = importlib.import_module(f"{experiments_package.__name__}.{name}")
    config = module.get_config(arg or None)
    config.experiment = experiment
    config.lock()
    for override in overrides:
        apply_override(config, override)
    config_ranges.check(config)
    return config


def _experiment_file(path: str):
    """An experiment module outside the package (`--experiment=path/to/mine.py[:arg]`): any
    Python file with `get_config(arg=None)`, typically starting from `base_config()`.

    Raises:
      ValueError: the file does not exist or has no `get_config`.
    """
    import importlib.util

    if not os.path.isfile(path):
        raise ValueError(f"experiment file {path} does not exist")
    name = "gemma_tune_experiment_" + re.sub(
        r"\W", "_", os.path.splitext(os.path.basename(path))[0]
    )
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if not callable(getattr(module, "get_config", None)):
        raise ValueError(f"experiment file {path} defines no get_config(arg=None)")
    return module


def _leaf_keys(config: ml_collections.ConfigDict, prefix: str = "") -> list[str]:
    keys = []
    for key, value in config.items():
        if isinstance(value, ml_collections.ConfigDict):
            keys += _leaf_keys(value, f"{prefix}{key}.")
        else:
            keys.append(f"{prefix}{key}")
    return keys


def _parse_value(key: str, text: str, current):
    if isinstance(current, bool):
        lowered = text.strip().lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
        raise ValueError(f"--set {key}={text}: expected true or false")
    if isinstance(current, (int, float)):
        try:
            number = float(text) if isinstance(current, float) else int(text)
        except ValueError:
            kind = type(current).__name__
            raise ValueError(f"--set {key}={text}: expected a {kind}") from None
        return number
    if isinstance(current, (list, tuple)):
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            raise ValueError(f"--set {key}={text}: expected a JSON list") from None
        if not isinstance(value, list):
            raise ValueError(f"--set {key}={text}: expected a JSON list")
        return value
    return text


def apply_override(config: ml_collections.ConfigDict, override: str) -> None:
    """Sets one `dotted.key=value` on a locked config, parsing the value by the key's type."""
    key, sep, text = override.partition("=")
    key = key.strip()
    if not sep:
        raise ValueError(f"--set {override!r}: expected key=value")
    keys = _leaf_keys(config)
    if key not in keys:
        close = difflib.get_close_matches(key, keys, n=1, cutoff=0.5)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ValueError(f"--set {key}: no such config key.{hint}")
    *parents, leaf = key.split(".")
    node = config
    for parent in parents:
        node = node[parent]
    with config.unlocked():
        node[leaf] = _parse_value(key, text, node[leaf])


def from_run(run_path: str) -> ml_collections.ConfigDict:
    """The locked config a run was started with (its `config.json`), to resume it as it was.

    Raises:
      FileNotFoundError: when `run_path` is not a run directory.
      ValueError: when its config.json is not valid JSON or holds a value out of range.
    """
    from gemma_tune.runs import tuned_run

    config = ml_collections.ConfigDict(tuned_run.read_config(run_path))
    config.lock()
    config_ranges.check(config)
    return config


def to_json(config: ml_collections.ConfigDict) -> str:
    """The resolved config as indented JSON (what `--print_config` shows and runs save)."""
    return json.dumps(config.to_dict(), indent=2, sort_keys=True)
