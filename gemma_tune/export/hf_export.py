"""A KerasHub Gemma -> a Hugging Face transformers model directory.

    python -m gemma_tune.export --run=RUN_DIR --to=hf --out=DIR

writes `model.safetensors`, `config.json`, `generation_config.json` and the tokenizer
(`tokenizer.model`, `tokenizer_config.json` with Gemma's chat template,
`special_tokens_map.json`, and `tokenizer.json` when transformers is installed), so that

    transformers.AutoModelForCausalLM.from_pretrained(DIR)
    transformers.AutoTokenizer.from_pretrained(DIR)

load it directly. A model with a vision encoder (Gemma 3 4B+, Gemma 4, `tiny:gemma3_vision`,
`tiny:gemma4_vision`) is written as transformers' image-text-to-text class
(`Gemma3ForConditionalGeneration`, `Gemma4ForConditionalGeneration`), with the processor's
files (the family's: `processor_config.json`, and Gemma 3's `preprocessor_config.json`) and the
image tokens in the tokenizer config, so that

    transformers.AutoModelForImageTextToText.from_pretrained(DIR)
    transformers.AutoProcessor.from_pretrained(DIR)  # Gemma 4: needs torchvision

load it. A model with LoRA is merged first (`gemma_tune.export.merge`): LoRA is never
dropped.

The weight names and config of each Gemma family are its module's (`model/families/`): this
module merges, asks the family, and writes the files.
"""

from __future__ import annotations

import json
import os

import ml_dtypes
import numpy as np
import safetensors.numpy

from gemma_tune import model
from gemma_tune.export import merge
from gemma_tune.model import families

WEIGHTS_FILE = "model.safetensors"
_NUMPY_DTYPES = {"float32": np.float32, "bfloat16": ml_dtypes.bfloat16, "float16": np.float16}


def state_dict(backbone) -> dict[str, np.ndarray]:
    """The transformers `*ForCausalLM` weights of a Gemma backbone without LoRA, in float32
    (the family's `hf_weights`).

    Raises:
      ValueError: when the backbone still has LoRA (merge it first) or is not a Gemma.
    """
    if merge.has_lora(backbone):
        raise ValueError("the backbone has LoRA enabled: merge it first (merge.merge_lora)")
    return families.of_backbone(backbone).hf_weights(backbone)


def config_dict(backbone, tokenizer, dtype: str = "float32") -> dict:
    """The transformers `config.json` for a Gemma backbone and its tokenizer (the family's
    `hf_config`, e.g. a `Gemma3TextConfig` as a dict).

    Args:
      backbone: a KerasHub backbone of a supported family.
      tokenizer: its KerasHub tokenizer (for the special token ids).
      dtype: the dtype the weights are saved in.
    """
    return families.of_backbone(backbone).hf_config(backbone, tokenizer, dtype)


def generation_config_dict(tokenizer) -> dict:
    """`generation_config.json`: generation stops at `<eos>` and at the end-of-turn marker."""
    stop_ids = [int(tokenizer.end_token_id)]
    end_of_turn = tokenizer.token_to_id(families.of_tokenizer(tokenizer).chat.end_of_turn)
    if end_of_turn is not None:
        stop_ids.append(int(end_of_turn))
    return {
        "bos_token_id": int(tokenizer.start_token_id),
        "eos_token_id": stop_ids,
        "pad_token_id": int(tokenizer.pad_token_id),
    }


def save_tokenizer(tokenizer, directory: str, vision=None) -> None:
    """Writes a KerasHub Gemma tokenizer in Hugging Face's format.

    `tokenizer.model` is the SentencePiece proto itself; transformers converts it to its fast
    tokenizer on load. When transformers is installed, that conversion is done once here and
    saved as `tokenizer.json`, so loading needs neither sentencepiece nor the conversion time.
    With `vision` (the family's `base.Vision`, for a model with a vision encoder), the image
    tokens are special tokens too and the config names them for transformers' processor.
    """
    family = families.of_tokenizer(tokenizer)
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, "tokenizer.model"), "wb") as f:
        f.write(tokenizer.proto)
    special = {
        "bos_token": tokenizer.start_token,
        "eos_token": tokenizer.end_token,
        "pad_token": tokenizer.pad_token,
        "unk_token": "<unk>",
    }
    if tokenizer.token_to_id("<mask>") is not None:
        special["mask_token"] = "<mask>"
    added = {}
    markers = (family.chat.start_of_turn, family.chat.end_of_turn)
    image_tokens = vision.tokens if vision is not None else ()
    for token in ("<pad>", "<eos>", "<bos>", "<unk>", "<mask>", *markers, *image_tokens):
        token_id = tokenizer.token_to_id(token)
        if token_id is not None:
            added[str(token_id)] = {
                "content": token,
                "lstrip": False,
                "normalized": False,
                "rstrip": False,
                "single_word": False,
                "special": True,
            }
    tokenizer_config = {
        "tokenizer_class": family.hf_tokenizer_class,
        **special,
        "add_bos_token": True,
        "add_eos_token": False,
        "clean_up_tokenization_spaces": False,
        "spaces_between_special_tokens": False,
        "model_max_length": 1000000000000000019884624838656,
        "added_tokens_decoder": added,
        "chat_template": family.hf_chat_template,
        **(vision.hf_tokenizer_entries(vision) if vision is not None else {}),
    }
    _write_json(os.path.join(directory, "tokenizer_config.json"), tokenizer_config)
    _write_json(
        os.path.join(directory, "special_tokens_map.json"),
        special,
    )
    try:
        import transformers
    except ImportError:
        return
    transformers.AutoTokenizer.from_pretrained(directory).save_pretrained(directory)


def _write_json(path: str, value: dict) -> None:
    with open(path, "w") as f:
        json.dump(value, f, indent=2, ensure_ascii=False)
        f.write("\n")


def save(loaded: model.LoadedModel, directory: str, dtype: str = "float32") -> str:
    """Writes `loaded` as a Hugging Face transformers model directory.

    Args:
      loaded: a Gemma; when it has LoRA enabled, the LoRA is merged first (in float32).
      directory: where to write; created if missing.
      dtype: "float32", "bfloat16" or "float16" for the saved weights.

    Returns:
      `directory`.
    """
    if dtype not in _NUMPY_DTYPES:
        raise ValueError(f"dtype must be one of {sorted(_NUMPY_DTYPES)}, got {dtype!r}")
    backbone = loaded.backbone
    # The processor first: what it refuses is refused before anything is written.
    vision_record = _vision_of(backbone)
    processor = {}
    if vision_record is not None:
        if loaded.image_converter is None:
            raise ValueError("a model with a vision encoder but no image converter")
        processor = vision_record.hf_processor_files(backbone, loaded.image_converter)
    if merge.has_lora(backbone):
        backbone = merge.merge_lora(loaded).backbone
    # `np.ascontiguousarray` makes a scalar 1-D; the reshape keeps scalars (Gemma 4's vision
    # clipping bounds) scalars.
    tensors = {
        name: np.ascontiguousarray(value.astype(_NUMPY_DTYPES[dtype])).reshape(value.shape)
        for name, value in state_dict(backbone).items()
    }
    os.makedirs(directory, exist_ok=True)
    safetensors.numpy.save_file(
        tensors, os.path.join(directory, WEIGHTS_FILE), metadata={"format": "pt"}
    )
    _write_json(
        os.path.join(directory, "config.json"), config_dict(backbone, loaded.tokenizer, dtype)
    )
    _write_json(
        os.path.join(directory, "generation_config.json"), generation_config_dict(loaded.tokenizer)
    )
    for name, value in processor.items():
        _write_json(os.path.join(directory, name), value)
    save_tokenizer(loaded.tokenizer, directory, vision_record)
    return directory


def _vision_of(backbone):
    """The family's `base.Vision` when `backbone` has a vision encoder, else None."""
    vision_record = families.of_backbone(backbone).vision
    if vision_record is None or vision_record.encoder(backbone) is None:
        return None
    return vision_record
