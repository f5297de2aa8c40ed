"""A KerasHub Gemma -> one GGUF file for llama.cpp and Ollama, with an Ollama `Modelfile`.

    python -m gemma_tune.export --run=RUN_DIR --to=gguf --out=DIR                 # F16
    python -m gemma_tune.export --run=RUN_DIR --to=gguf --out=DIR --gguf_type=q8_0

writes `DIR/model-f16.gguf` (or `-q8_0`, `-f32`): the tuned model with LoRA merged, its
SentencePiece vocabulary (pieces, scores, token types, special ids) and the family's chat
template, as llama.cpp's own converter lays them out, and `DIR/Modelfile`, so that

    llama-cli -m DIR/model-f16.gguf
    ollama create my-gemma -f DIR/Modelfile

run it. The weights go through the family's Hugging Face state dict (`hf_export.state_dict`,
checked against transformers) and its GGUF names (`Family.gguf.tensor_name`); the metadata is
the family's (`Family.gguf.metadata`), which `gemma_tune.model.gguf_convert` reads back. Norms
and other 1-D tensors stay float32, as llama.cpp's converter keeps them; `q8_0` quantizes every
2-D weight in blocks of 32 (one float16 scale each).
"""

from __future__ import annotations

import os

import gguf
import numpy as np

from gemma_tune import model
from gemma_tune.export import hf_export, merge
from gemma_tune.model import families, vision

TYPES = {
    "f32": gguf.GGMLQuantizationType.F32,
    "f16": gguf.GGMLQuantizationType.F16,
    "q8_0": gguf.GGMLQuantizationType.Q8_0,
}
_FILE_TYPES = {
    "f32": gguf.LlamaFileType.ALL_F32,
    "f16": gguf.LlamaFileType.MOSTLY_F16,
    "q8_0": gguf.LlamaFileType.MOSTLY_Q8_0,
}
MODELFILE = "Modelfile"


def file_name(gguf_type: str) -> str:
    """The GGUF file's name in the export directory, e.g. `model-q8_0.gguf`."""
    return f"model-{gguf_type}.gguf"


def _family_gguf(family: families.base.Family) -> families.base.GgufImport:
    if family.gguf is None:
        supported = [f.title for f in families.ALL if f.gguf is not None]
        raise ValueError(
            f"GGUF export of {family.title} is not supported; it is for {', '.join(supported)}"
        )
    return family.gguf


def tensors(backbone, gguf_type: str) -> dict[str, tuple[np.ndarray, gguf.GGMLQuantizationType]]:
    """llama.cpp tensor name -> (data, GGML type) for a Gemma backbone without LoRA.

    2-D weights are stored as `gguf_type` (quantized when `q8_0`); 1-D ones as float32. The
    data of a quantized tensor is its GGML bytes.
    """
    spec = _family_gguf(families.of_backbone(backbone))
    out = {}
    for hf_name, weight in hf_export.state_dict(backbone).items():
        name, plus_one = spec.tensor_name(hf_name)
        weight = np.asarray(weight, np.float32) + (1.0 if plus_one else 0.0)
        kind = TYPES[gguf_type] if weight.ndim == 2 else gguf.GGMLQuantizationType.F32
        if kind == gguf.GGMLQuantizationType.F16:
            data = weight.astype(np.float16)
        elif kind == gguf.GGMLQuantizationType.Q8_0:
            data = gguf.quants.quantize(weight, kind)
        else:
            data = weight
        out[name] = (np.ascontiguousarray(data), kind)
    return out


def _token_types(tokenizer) -> tuple[list[str], list[float], list[int]]:
    """Pieces, scores and llama.cpp token types of a SentencePiece tokenizer's model."""
    from sentencepiece import sentencepiece_model_pb2 as sp_model

    proto = sp_model.ModelProto()
    proto.ParseFromString(tokenizer.proto)
    kinds = sp_model.ModelProto.SentencePiece
    types = {
        kinds.NORMAL: gguf.TokenType.NORMAL,
        kinds.UNKNOWN: gguf.TokenType.UNKNOWN,
        kinds.CONTROL: gguf.TokenType.CONTROL,
        kinds.USER_DEFINED: gguf.TokenType.USER_DEFINED,
        kinds.UNUSED: gguf.TokenType.UNUSED,
        kinds.BYTE: gguf.TokenType.BYTE,
    }
    pieces = list(proto.pieces)
    return (
        [p.piece for p in pieces],
        [float(p.score) for p in pieces],
        [int(types[p.type]) for p in pieces],
    )


def _write_tokenizer(writer: gguf.GGUFWriter, tokenizer, family) -> None:
    tokens, scores, token_types = _token_types(tokenizer)
    writer.add_tokenizer_model("llama")
    writer.add_tokenizer_pre("default")
    writer.add_token_list(tokens)
    writer.add_token_scores(scores)
    writer.add_token_types(token_types)
    writer.add_bos_token_id(int(tokenizer.start_token_id))
    writer.add_eos_token_id(int(tokenizer.end_token_id))
    writer.add_pad_token_id(int(tokenizer.pad_token_id))
    unknown = tokenizer.token_to_id("<unk>")
    if unknown is not None:
        writer.add_unk_token_id(int(unknown))
    writer.add_add_bos_token(True)
    writer.add_add_eos_token(False)
    writer.add_add_space_prefix(False)
    writer.add_chat_template(family.hf_chat_template)


def write(loaded: model.LoadedModel, path: str, gguf_type: str = "f16", name: str = "") -> str:
    """Writes `loaded` (LoRA merged first, in float32) as one GGUF file at `path`.

    Args:
      loaded: a Gemma of a family with GGUF support (Gemma 3 today).
      path: the file to write.
      gguf_type: "f16" (default), "q8_0" or "f32" for the 2-D weights.
      name: `general.name` in the file.

    Returns:
      `path`.

    Raises:
      ValueError: for another type, or a family or model llama.cpp's converter cannot express.
    """
    if gguf_type not in TYPES:
        raise ValueError(f"--gguf_type must be one of {sorted(TYPES)}, got {gguf_type!r}")
    family = loaded.family
    spec = _family_gguf(family)
    backbone = loaded.backbone
    if merge.has_lora(backbone):
        backbone = merge.merge_lora(loaded).backbone
    hf_config = hf_export.config_dict(backbone, loaded.tokenizer)
    metadata = spec.metadata(hf_config)
    weights = tensors(backbone, gguf_type)
    writer = gguf.GGUFWriter(path, spec.architecture)
    writer.add_name(name or loaded.preset)
    writer.add_file_type(int(_FILE_TYPES[gguf_type]))
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
    for key, value in metadata.items():
        _add_value(writer, f"{spec.architecture}.{key}", value)
    _write_tokenizer(writer, loaded.tokenizer, family)
    for tensor_name, (data, kind) in weights.items():
        writer.add_tensor(tensor_name, data, raw_dtype=kind)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file(progress=True)
    writer.close()
    return path


def _add_value(writer: gguf.GGUFWriter, key: str, value) -> None:
    if isinstance(value, bool):
        writer.add_bool(key, value)
    elif isinstance(value, int):
        writer.add_uint32(key, value)
    elif isinstance(value, float):
        writer.add_float32(key, value)
    else:
        writer.add_string(key, str(value))


def modelfile(gguf_file: str, family: families.base.Family) -> str:
    """An Ollama `Modelfile` for the GGUF file beside it: Gemma's turn format, and generation
    stopping at the end-of-turn marker."""
    chat = family.chat
    start, end = chat.start_of_turn, chat.end_of_turn
    user, model_role = chat.user_role, chat.model_role
    template = (
        f"{{{{- range .Messages }}}}{start}"
        f'{{{{ if eq .Role "assistant" }}}}{model_role}{{{{ else }}}}{user}{{{{ end }}}}\n'
        f"{{{{ .Content }}}}{end}\n{{{{ end }}}}{start}{model_role}\n"
    )
    return (
        f"FROM ./{gguf_file}\n"
        f'TEMPLATE """{template}"""\n'
        f'PARAMETER stop "{end}"\n'
        f'PARAMETER stop "<eos>"\n'
    )


def save(loaded: model.LoadedModel, directory: str, gguf_type: str = "f16") -> str:
    """Writes `model-TYPE.gguf` and an Ollama `Modelfile` into `directory`.

    Returns:
      `directory`.

    Raises:
      ValueError: for a model with a vision encoder (its GGUF would lose the encoder).
    """
    if vision.encoder_of(loaded.backbone) is not None:
        raise ValueError(
            f"--to=gguf writes the language model alone and {loaded.preset} reads images: "
            "export it with --to=hf or --to=keras (docs/export.md)"
        )
    os.makedirs(directory, exist_ok=True)
    gguf_file = file_name(gguf_type)
    write(loaded, os.path.join(directory, gguf_file), gguf_type)
    with open(os.path.join(directory, MODELFILE), "w") as f:
        f.write(modelfile(gguf_file, loaded.family))
    return directory
