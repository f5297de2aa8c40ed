"""A GGUF file's vocabulary as a SentencePiece model, for KerasHub's Gemma tokenizers.

A GGUF keeps the pieces, scores and token types of a model's `tokenizer.model` but not the file
itself; `sentencepiece_proto` rebuilds it (used by `gemma_tune.model.gguf_convert`).
"""

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import gguf

BIG_FIELDS = ("tokenizer.ggml.tokens", "tokenizer.ggml.scores", "tokenizer.ggml.token_type")


def sentencepiece_proto(
    tokens: Sequence[str],
    scores: Sequence[float],
    token_types: Sequence[int],
    *,
    pad_id: int = 0,
    eos_id: int = 1,
    bos_id: int = 2,
    unk_id: int = 3,
    add_dummy_prefix: bool = False,
) -> bytes:
    """Rebuilds a serialized SentencePiece BPE model from a GGUF vocabulary.

    A GGUF keeps the pieces, scores and llama.cpp token types of the original `tokenizer.model`
    but not the model file itself, which KerasHub's tokenizers need. llama.cpp changed a few
    things on the way in, undone here:
    - pieces stored with real spaces (Gemma's runs of spaces) get their spaces back as U+2581,
      since SentencePiece matches pieces against text whose spaces it has already escaped;
    - `<unk>` is marked CONTROL; it becomes UNKNOWN;
    - every CONTROL token other than pad, eos and bos (`<start_of_turn>`, `<end_of_turn>`,
      `<mask>`, `<unusedN>`) becomes USER_DEFINED, so it is matched whole inside raw text, as
      chat templates and Hugging Face's tokenizer expect. Literal "<bos>"/"<eos>" text is not.

    Args:
        tokens: the pieces, indexed by token id (`tokenizer.ggml.tokens`).
        scores: one BPE merge score per piece (`tokenizer.ggml.scores`); higher merges first.
        token_types: one `gguf.TokenType` per piece (`tokenizer.ggml.token_type`).
        pad_id: id of the padding piece.
        eos_id: id of the end-of-sequence piece.
        bos_id: id of the beginning-of-sequence piece.
        unk_id: id of the unknown piece.
        add_dummy_prefix: whether SentencePiece prepends a space to the text (Gemma: no).

    Returns:
        The serialized `ModelProto`, for `Gemma3Tokenizer(proto=...)` or
        `sentencepiece.SentencePieceProcessor(model_proto=...)`.

    Raises:
        ValueError: if the lists differ in length, an id is out of range or two pieces collide.
    """
    from sentencepiece import sentencepiece_model_pb2 as sp_model

    if not len(tokens) == len(scores) == len(token_types):
        raise ValueError(
            f"tokens, scores and token_types differ in length: "
            f"{len(tokens)}, {len(scores)}, {len(token_types)}"
        )
    for role, index in (("pad", pad_id), ("eos", eos_id), ("bos", bos_id), ("unk", unk_id)):
        if not 0 <= index < len(tokens):
            raise ValueError(f"{role} id {index} is outside the vocabulary of {len(tokens)}")

    piece_type = sp_model.ModelProto.SentencePiece
    proto = sp_model.ModelProto()
    seen: dict[str, int] = {}
    specials = {"unk": unk_id, "control": (pad_id, eos_id, bos_id)}
    for index, (token, score, token_type) in enumerate(
        zip(tokens, scores, token_types, strict=True)
    ):
        piece = token.replace(" ", "\u2581")
        if piece in seen:
            raise ValueError(f"pieces {seen[piece]} and {index} are both {piece!r}")
        seen[piece] = index
        kind = _piece_kind(piece_type, index, token_type, specials)
        proto.pieces.add(
            piece=piece, score=float(score) if kind == piece_type.NORMAL else 0.0, type=kind
        )
    _set_specs(proto, tokens, seen, (pad_id, eos_id, bos_id, unk_id), add_dummy_prefix)
    return proto.SerializeToString()


def _piece_kind(piece_type, index: int, token_type: int, specials: dict) -> int:
    """The SentencePiece type of a GGUF piece (see `sentencepiece_proto` for the rules)."""
    if index == specials["unk"]:
        return piece_type.UNKNOWN
    if index in specials["control"]:
        return piece_type.CONTROL
    if token_type in (gguf.TokenType.CONTROL, gguf.TokenType.USER_DEFINED):
        return piece_type.USER_DEFINED
    if token_type == gguf.TokenType.BYTE:
        return piece_type.BYTE
    if token_type == gguf.TokenType.UNUSED:
        return piece_type.UNUSED
    return piece_type.NORMAL


def _set_specs(proto, tokens, seen: dict, special_ids: tuple, add_dummy_prefix: bool) -> None:
    """Gemma's trainer and normalizer settings: BPE, byte fallback when all 256 byte pieces
    exist, split digits, identity normalization, escaped whitespace."""
    from sentencepiece import sentencepiece_model_pb2 as sp_model

    pad_id, eos_id, bos_id, unk_id = special_ids
    trainer = proto.trainer_spec
    trainer.model_type = sp_model.TrainerSpec.BPE
    trainer.vocab_size = len(tokens)
    trainer.byte_fallback = all(f"<0x{byte:02X}>" in seen for byte in range(256))
    trainer.split_digits = True
    trainer.allow_whitespace_only_pieces = True
    trainer.pad_id, trainer.eos_id, trainer.bos_id, trainer.unk_id = pad_id, eos_id, bos_id, unk_id
    trainer.pad_piece, trainer.eos_piece = tokens[pad_id], tokens[eos_id]
    trainer.bos_piece, trainer.unk_piece = tokens[bos_id], tokens[unk_id]
    for spec in (proto.normalizer_spec, proto.denormalizer_spec):
        spec.name = "identity"
        spec.add_dummy_prefix = add_dummy_prefix
        spec.remove_extra_whitespaces = False
        spec.escape_whitespaces = True


def tokenizer_proto(reader: gguf.GGUFReader, metadata: Mapping[str, Any], gguf_path: Path) -> bytes:
    """The SentencePiece model of a GGUF file's vocabulary (see `sentencepiece_proto`).

    Raises:
        ValueError: if the file's tokenizer is not SentencePiece.
    """
    model = metadata.get("tokenizer.ggml.model")
    if model != "llama":
        raise ValueError(f"{gguf_path}: tokenizer {model!r} is not SentencePiece ('llama')")
    fields = [reader.fields[name].contents() for name in BIG_FIELDS]
    return sentencepiece_proto(
        *fields,
        pad_id=int(metadata.get("tokenizer.ggml.padding_token_id", 0)),
        eos_id=int(metadata.get("tokenizer.ggml.eos_token_id", 1)),
        bos_id=int(metadata.get("tokenizer.ggml.bos_token_id", 2)),
        unk_id=int(metadata.get("tokenizer.ggml.unknown_token_id", 3)),
        add_dummy_prefix=bool(metadata.get("tokenizer.ggml.add_space_prefix", False)),
    )
