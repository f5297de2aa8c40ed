"""Tiny Gemma models and a generated vocabulary, for tests, smoke runs and offline demos.

Real Gemma weights need a download; these build in code, in seconds, on any machine. They
follow the real architectures exactly (Gemma 1, Gemma 2's extra norms and soft caps, Gemma 3's
query/key norm and sliding window, Gemma 4's KV sharing, per-layer inputs and experts), only
smaller, so every code path is exercised.

    from gemma_tune import testing
    backbone, tokenizer = testing.tiny_model("gemma3")
    backbone, tokenizer = testing.tiny_model("gemma3_vision")  # with a tiny vision encoder
    backbone, tokenizer = testing.tiny_model("gemma4_vision")  # Gemma 4's (also gemma4_moe_vision)
"""

from __future__ import annotations

import io

import numpy as np
import sentencepiece

from gemma_tune.model import families

# Words the tiny vocabulary is trained on; the generated examples use only these.
_SUBJECTS = ["the cat", "a dog", "my friend", "the robot", "our teacher", "the bird"]
_VERBS = ["likes", "sees", "paints", "finds", "carries", "follows"]
_OBJECTS = ["red apples", "blue boxes", "green hats", "small stones", "old books", "warm bread"]
_COLORS = ["red", "blue", "green", "yellow", "black", "white"]


VISION_SUFFIX = "_vision"


def family_of(architecture: str):
    """`(family, with_vision)` of a tiny architecture name ("gemma3", "gemma3_vision", ...).

    Raises:
      ValueError: for an unknown family, or `_vision` on a family without a vision encoder.
    """
    with_vision = architecture.endswith(VISION_SUFFIX)
    family = families.by_name(architecture.removesuffix(VISION_SUFFIX))
    if with_vision and family.vision is None:
        raise ValueError(
            f"{family.title} has no vision model; choose one of {VISION_ARCHITECTURES}"
        )
    return family, with_vision


def turn_markers(architecture: str = "gemma1") -> tuple[str, ...]:
    """The family's turn markers, the user-defined pieces of its tiny vocabulary (and, for a
    vision architecture, its image tokens after them).

    Each tiny vocabulary holds its own family's markers only, so Gemma 1-3's is the vocabulary
    it always was (runs written by earlier versions, e.g. tests/fixtures/run_v1, keep their
    token ids) and Gemma 4's has `<|turn>` and `<turn|>` in the same slots.
    """
    family, with_vision = family_of(architecture)
    chat = family.chat
    return (chat.start_of_turn, chat.end_of_turn) + (family.vision.tokens if with_vision else ())


ARCHITECTURES = families.NAMES
# Tiny models with a vision encoder (`tiny:gemma3_vision`, `tiny:gemma4_vision`,
# `tiny:gemma4_moe_vision`): the family's tiny language model
# plus a one-layer vision encoder, and a vocabulary with the image tokens.
VISION_ARCHITECTURES = tuple(
    f"{family.name}{VISION_SUFFIX}" for family in families.ALL if family.vision is not None
)


# What the bundled image questions ask and answer (`gemma_tune/bundled/vision/`), added to the
# vision vocabulary so that tiny vision answers are a token or two, not bytes.
_VISION_SENTENCES = [
    "What colour is the square? What colour is the circle? What colour is the triangle?",
    "Which colour is the tallest bar? Which colour is the shortest bar?",
    "How many shapes are there? What shape is in the picture?",
    "Is the square on the left or the right? Is the circle on the left or the right?",
    "Is the triangle on the left or the right?",
    "red green blue yellow orange purple one two three four left right circle square triangle",
]


def _vocabulary_corpus() -> list[str]:
    sentences = []
    for subject in _SUBJECTS:
        for verb in _VERBS:
            for obj in _OBJECTS:
                sentences.append(f"{subject} {verb} {obj}.")
    sentences += [f"What color is the sky? It is {c}. Answer: {c}" for c in _COLORS]
    sentences += ["Repeat after me: hello world. Summarize the following text: question context"]
    sentences += ["user model instruction response system 0 1 2 3 4 5 6 7 8 9"]
    return sentences


def sentencepiece_proto(
    vocabulary_size: int = 320,
    markers: tuple[str, ...] | None = None,
    extra_sentences: tuple[str, ...] = (),
) -> bytes:
    """Trains a small SentencePiece BPE model with Gemma's special tokens and ids.

    The settings mirror Gemma's real vocabulary (byte fallback, no dummy prefix, identity
    normalization, ids pad 0 / eos 1 / bos 2 / unk 3, the turn markers as user-defined pieces
    so they match inside raw text), so templating and masking behave as on the real model.

    Args:
      vocabulary_size: the number of pieces.
      markers: the turn markers to add as pieces (ids 4, 5, ...); None: Gemma 1-3's.
      extra_sentences: more training sentences (the vision vocabulary's image questions).

    Returns:
      The serialized ModelProto, ready for `GemmaTokenizer(proto=...)`.
    """
    model = io.BytesIO()
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(_vocabulary_corpus() + list(extra_sentences)),
        model_writer=model,
        vocab_size=vocabulary_size,
        model_type="bpe",
        byte_fallback=True,
        add_dummy_prefix=False,
        normalization_rule_name="identity",
        remove_extra_whitespaces=False,
        split_digits=True,
        pad_id=0,
        eos_id=1,
        bos_id=2,
        unk_id=3,
        pad_piece="<pad>",
        eos_piece="<eos>",
        bos_piece="<bos>",
        unk_piece="<unk>",
        user_defined_symbols=list(markers or turn_markers()),
        minloglevel=2,
    )
    return model.getvalue()


def tiny_backbone(
    architecture: str = "gemma1",
    vocabulary_size: int = 320,
    seed: int = 0,
    dtype: str | None = None,
    num_key_value_heads: int = 2,
    num_layers: int = 2,
):
    """Builds a randomly initialised (by default two-layer) Gemma backbone of the given
    architecture.

    Args:
      architecture: a family name (`families.NAMES`); each family's `tiny_backbone` adds its
        features (Gemma 2's post-norms, soft caps and sliding window, Gemma 3's query/key
        norm, ...) to the small common shape below. `gemma3_vision`, `gemma4_vision`, ...
        (`VISION_ARCHITECTURES`) add a tiny vision encoder (the family's
        `vision.tiny_backbone`).
      vocabulary_size: must equal the tokenizer's.
      seed: weight initialisation seed.
      dtype: a Keras dtype policy name ("float32", "bfloat16"); None for the global policy.
      num_key_value_heads: 2 (grouped attention over the 4 query heads), 1 (multi-query, as in
        Gemma 3 270M) or 4 (multi-head).
    """
    import keras

    keras.utils.set_random_seed(seed)
    common = dict(
        vocabulary_size=vocabulary_size,
        num_layers=num_layers,
        num_query_heads=4,
        num_key_value_heads=num_key_value_heads,
        hidden_dim=32,
        intermediate_dim=64,
        head_dim=8,
        dtype=dtype,
    )
    family, with_vision = family_of(architecture)
    build = family.vision.tiny_backbone if with_vision else family.tiny_backbone
    backbone = build(common)
    # Keras' default embedding init (std 1/sqrt(vocabulary)) caps a frozen tied LM head's
    # logits near +-2, so a LoRA-tuned tiny model could never be confident. Real Gemma heads
    # are not so limited; scale the embeddings up to behave alike.
    embeddings = backbone.token_embedding.embeddings
    rng = np.random.default_rng(seed)
    embeddings.assign(rng.normal(0.0, 0.25, embeddings.shape).astype(np.float32))
    return backbone


def tiny_tokenizer(architecture: str = "gemma1", vocabulary_size: int | None = None):
    """Returns the KerasHub tokenizer class of `architecture` over a generated vocabulary of
    `vocabulary_size` pieces (default 320; 384 for a vision architecture, whose vocabulary also
    holds the image tokens and the bundled image questions' words). A family with a tool
    format (Gemma 4) has its tool tokens after the turn markers."""
    family, with_vision = family_of(architecture)
    extra = tuple(_VISION_SENTENCES) if with_vision else ()
    size = vocabulary_size or (384 if with_vision else 320)
    tool_tokens = family.tools.tokens if family.tools else ()
    proto = sentencepiece_proto(size, turn_markers(architecture) + tool_tokens, extra)
    return (family.vision.tiny_tokenizer if with_vision else family.tiny_tokenizer)(proto)


def tiny_image_converter(architecture: str, backbone):
    """The image converter of a tiny vision model (resize and normalize, as the family's real
    presets do), or None for a text-only architecture."""
    family, with_vision = family_of(architecture)
    return family.vision.image_converter(backbone) if with_vision else None


def tiny_model(architecture: str = "gemma1", seed: int = 0):
    """Returns `(backbone, tokenizer)` for a tiny Gemma of the given architecture."""
    tokenizer = tiny_tokenizer(architecture)
    backbone = tiny_backbone(architecture, tokenizer.vocabulary_size(), seed=seed)
    return backbone, tokenizer


def tiny_conversations(count: int = 48, seed: int = 0) -> list[dict]:
    """Generates simple instruction/response rows in Dolly's shape, from the tiny vocabulary.

    The task is learnable in a few dozen steps (a colour question answered with a fixed
    pattern, a sentence to repeat), so "loss goes down" is a meaningful smoke test.
    """
    rng = np.random.default_rng(seed)
    rows = []
    for index in range(count):
        obj = _OBJECTS[rng.integers(len(_OBJECTS))]
        if index % 2 == 0:
            color = _COLORS[rng.integers(len(_COLORS))]
            rows.append(
                {
                    "instruction": f"What color is the sky above {obj}? It is {color}.",
                    "context": "",
                    "response": f"Answer: {color}",
                    "category": "open_qa",
                }
            )
        else:
            subject = _SUBJECTS[rng.integers(len(_SUBJECTS))]
            verb = _VERBS[rng.integers(len(_VERBS))]
            sentence = f"{subject} {verb} {obj}."
            rows.append(
                {
                    "instruction": f"Repeat after me: {sentence}",
                    "context": "",
                    "response": sentence,
                    "category": "creative_writing",
                }
            )
    return rows


def tiny_preference_pairs(count: int = 48, seed: int = 0) -> list[dict]:
    """Generates preference rows in TRL's form from the tiny vocabulary: a colour question
    whose answer is in the prompt, the correct colour preferred to another one.

    The model must copy the colour the prompt names, which a tiny model with LoRA learns in a
    few dozen DPO steps, so "reward accuracy on held-out pairs goes up" is a meaningful test.
    """
    rng = np.random.default_rng([seed, 1])
    rows = []
    for _ in range(count):
        obj = _OBJECTS[rng.integers(len(_OBJECTS))]
        color, other = rng.choice(len(_COLORS), size=2, replace=False)
        rows.append(
            {
                "prompt": f"What color is the sky above {obj}? It is {_COLORS[color]}.",
                "chosen": f"Answer: {_COLORS[color]}",
                "rejected": f"Answer: {_COLORS[other]}",
            }
        )
    return rows
