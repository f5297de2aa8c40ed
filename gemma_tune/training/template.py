"""The Gemma chat template and loss masking: `Example` -> token ids and per-token loss weights.

The turn markers and role names are the model family's (`families.*.chat`); Gemma 1, 2 and 3
are prompted as

    <bos><start_of_turn>user
    {system}\n\n{context}\n\n{user text}<end_of_turn>
    <start_of_turn>model
    {model text}<end_of_turn>

Gemma 1-3 have no system role, so a system prompt is folded into the first user turn, as is a
context passage; Gemma 4 (`<|turn>` ... `<turn|>`) has one, and a system prompt becomes its own
first turn (`<|turn>system\n{system}<turn|>`), never carrying loss. By default only the model
turns' text and their closing `<end_of_turn>` carry loss, so the model learns to answer and to
stop, not to imitate questions; a model turn with `weight` 0 (OpenAI's `"weight": 0`) stays
in the conversation but carries no loss. Turn markers are inserted by id rather than left to the
tokenizer, which makes the template independent of how a vocabulary marks those pieces.

A user turn with images (a vision model, `model.vision`) holds its text and images in order,
each image as its family's span (Gemma 3: `\n\n<start_of_image>`, the model's placeholder
tokens and `<end_of_image>\n\n`; Gemma 4: `<|image>`, the placeholders `<|image|>`, `<image|>`;
as KerasHub's and transformers' processors write them: `families.base.Vision`). That span
never carries loss, not even with `train_on_prompt`; its placeholders are where the backbone
puts the image. A span the sequence length would cut is cut whole (the ids end before it).

A conversation with tools (OpenAI `tools`, `tool_calls`, `tool` messages) is written in the
family's tool format (`families.*.tools`, Gemma 4's `<|tool_call>` ...): the declarations
close the system turn, a model turn's calls carry its loss weight and the tool results after
them none, except their first token: the one the model writes after its calls to hand over
to the tools (`<|tool_response>`), which carries the calls' loss weight (also when the calls
end the conversation) and stops generation. The model turn that answers the results
continues the same turn (no new `<|turn>model` marker). A family
without a tool format refuses such an example, naming its file, line and field.

A document (`Example.text`, language modelling) gets no chat markers: `<bos>{text}<eos>`, every
token after BOS carrying loss.

Memory stays bounded for any input: before tokenizing, `encode` cuts each text to
`MAX_CHARS_PER_TOKEN` characters per token it can keep (no token of a Gemma vocabulary is that
long, so the ids kept are the same as without the cut); the `full_length` of an example with a
cut text counts only up to the cut.
"""

from __future__ import annotations

import dataclasses
import re

import numpy as np
import sentencepiece

from gemma_tune.data import example as example_lib
from gemma_tune.model import families, vision

# More characters than any token of a Gemma vocabulary covers, and the tokens kept beyond the
# sequence length so that a cut never changes the ids kept (a cut only affects the tokens
# around it).
MAX_CHARS_PER_TOKEN = 128
_SLACK_TOKENS = 16
# The loss weight `_segments` gives an image span: never a target.
_IMAGE = "image"


@dataclasses.dataclass(frozen=True)
class Encoded:
    """One tokenized example.

    Attributes:
      token_ids: `[n]` int32 ids, starting with BOS.
      target_weights: `[n]` float32; `target_weights[i]` is the loss weight of predicting
        `token_ids[i]` from the tokens before it (so `target_weights[0]`, BOS, is always 0).
      full_length: the length before truncation, for the data summary.
      segment_ids: `[n]` int32 example numbers (1, 2, ...) when several examples are packed
        into this row (`packing`); None for one example.
      images: the images whose placeholders are in `token_ids`, in order (vision models).
    """

    token_ids: np.ndarray
    target_weights: np.ndarray
    full_length: int
    segment_ids: np.ndarray | None = None
    images: tuple[vision.PlacedImage, ...] = ()

    @property
    def truncated(self) -> bool:
        return self.full_length > len(self.token_ids)


def first_user_text(example: example_lib.Example, fold_system: bool = True) -> str:
    """The first user turn's text with the context (and, with `fold_system`, the system
    prompt) folded in."""
    parts = []
    if example.system and fold_system:
        parts.append(example.system.strip())
    if example.context:
        parts.append(f"Context:\n{example.context.strip()}")
    parts.append(example.turns[0].text)
    return "\n\n".join(parts)


class ChatTemplate:
    """Formats and tokenizes conversations for one Gemma tokenizer.

    Args:
      tokenizer: a KerasHub tokenizer of a Gemma family (its class says which family's turn
        markers to use).
      train_on_prompt: when True every token after BOS carries loss, not only the model turns
        (never the image spans).
      image_inputs: the model's `vision.ImageInputs`; None for a model that cannot see images,
        for which an example with images is an error.
    """

    def __init__(
        self,
        tokenizer,
        train_on_prompt: bool = False,
        image_inputs: vision.ImageInputs | None = None,
    ):
        self._encoder = sentencepiece.SentencePieceProcessor(model_proto=tokenizer.proto)
        self.bos_id = int(tokenizer.start_token_id)
        self.eos_id = int(tokenizer.end_token_id)
        self.pad_id = int(tokenizer.pad_token_id)
        family = families.of_tokenizer(tokenizer)
        chat = family.chat
        self._family_title = family.title
        self._tools = family.tools
        self._tool_ids = self._tool_token_ids(family.tools)
        self._roles = {example_lib.USER: chat.user_role, example_lib.MODEL: chat.model_role}
        self._system_role = chat.system_role
        self.start_of_turn_id = int(tokenizer.token_to_id(chat.start_of_turn))
        self.end_of_turn_id = int(tokenizer.token_to_id(chat.end_of_turn))
        self.train_on_prompt = train_on_prompt
        self.image_inputs = image_inputs

    def _tool_token_ids(self, tools) -> dict[str, int]:
        """The ids of the family's tool tokens this vocabulary has (none without a format)."""
        if tools is None:
            return {}
        ids = {token: self._encoder.piece_to_id(token) for token in tools.tokens}
        return {token: int(i) for token, i in ids.items() if i != self._encoder.unk_id()}

    @property
    def stop_token_ids(self) -> tuple[int, ...]:
        """Ids that end a model turn in generation: `<end_of_turn>` and `<eos>`, and for a
        family with a tool format the token that hands over to the tools after a call."""
        handover = self._tool_ids.get(self._tools.awaiting_response) if self._tools else None
        return (self.end_of_turn_id, self.eos_id) + (() if handover is None else (handover,))

    def _tool_text(self, text: str, max_chars: int | None) -> list[int]:
        """Token ids of a tool text (`families.*.tools`), its tool tokens inserted by id (a
        tool token the vocabulary lacks is tokenized as text, as a tokenizer would)."""
        if max_chars is not None:
            text = text[:max_chars]
        if not self._tool_ids:
            return self._text(text)
        pattern = "(" + "|".join(re.escape(token) for token in self._tool_ids) + ")"
        ids: list[int] = []
        for index, piece in enumerate(re.split(pattern, text)):
            ids += [self._tool_ids[piece]] if index % 2 else self._text(piece)
        return ids

    def _check_tools(self, example: example_lib.Example) -> None:
        """Raises ValueError naming the row and field when `example` uses tools and this
        family's chat template cannot write them."""
        field = example.tool_field
        if field is not None and self._tools is None:
            raise ValueError(
                f"{example.source}: {field}: tool calls need a model with tool support "
                f"(Gemma 4); {self._family_title}'s chat template has none: tune a Gemma 4 "
                "model, or leave out the tools, tool_calls and tool messages to tune on the "
                "text turns"
            )

    def _text(self, text: str, max_chars: int | None = None) -> list[int]:
        """Token ids of `text`, cut to `max_chars` characters first (None = all)."""
        if max_chars is not None:
            text = text[:max_chars]
        return self._encoder.encode(text) if text else []

    def _segments(
        self, example: example_lib.Example, for_generation: bool, max_chars: int | None = None
    ):
        """Yields `(ids, weight)` pieces of the conversation in order: `weight` is the loss
        weight of a response piece, None for the prompt's pieces. Each text is cut to
        `max_chars` characters before tokenizing (None = whole)."""
        yield [self.bos_id], None
        if example.is_document:
            if not for_generation:
                yield self._text(example.text, max_chars) + [self.eos_id], 1.0
            return
        self._check_tools(example)
        fold_system = self._system_role is None
        if (example.system or example.tools) and not fold_system:
            yield [self.start_of_turn_id] + self._text(f"{self._system_role}\n"), None
            system = self._text((example.system or "").strip(), max_chars)
            if example.tools:
                system += self._tool_text(self._tools.declarations(example.tools), max_chars)
            yield system + [self.end_of_turn_id], None
            yield self._text("\n"), None
        turns = example.turns[:-1] if for_generation else example.turns
        for index, turn in enumerate(turns):
            # A model turn after calls continues the turn that made them.
            if not (index and turns[index - 1].tool_calls):
                yield [self.start_of_turn_id] + self._text(f"{self._roles[turn.role]}\n"), None
            if turn.tool_calls:
                yield from self._call_turn(turn, max_chars)
                continue
            if turn.images:
                yield from self._image_turn(example, turn, index == 0, fold_system, max_chars)
                yield [self.end_of_turn_id], None
                yield self._text("\n"), None
                continue
            text = first_user_text(example, fold_system) if index == 0 else turn.text
            weight = turn.weight if turn.role == example_lib.MODEL else None
            yield self._text(text, max_chars) + [self.end_of_turn_id], weight
            yield self._text("\n"), None
        if for_generation and not (turns and turns[-1].tool_calls):
            model_role = self._roles[example_lib.MODEL]
            yield [self.start_of_turn_id] + self._text(f"{model_role}\n"), None

    def _call_turn(self, turn: example_lib.Turn, max_chars: int | None):
        """Yields the pieces of a model turn's tool calls and the hand-over token after them
        (the model writes both: the turn's loss weight), then the rest of the results
        answering them (prompt), which start with that token (`base.ToolFormat`)."""
        yield self._tool_text(self._tools.calls(turn.tool_calls), max_chars), turn.weight
        handover = self._tools.awaiting_response
        yield self._tool_text(handover, None), turn.weight
        if turn.tool_responses:
            responses = self._tools.responses(turn.tool_responses).removeprefix(handover)
            yield self._tool_text(responses, max_chars), None

    def _image_turn(self, example, turn, first: bool, fold_system: bool, max_chars):
        """Yields the pieces of a user turn with images: its text parts, and each image's span
        `(ids, image)` with weight `_IMAGE`; the first turn starts with the folded system
        prompt and context, as `first_user_text` does.

        Raises:
          ValueError: naming the image, when this model cannot see images.
        """
        inputs = self.image_inputs
        if inputs is None:
            raise ValueError(
                f"{turn.images[0].where}: this model does not read images (which models do: "
                "docs/vision.md)"
            )
        if first:
            prefix = first_user_text(example, fold_system).removesuffix(example.turns[0].text)
            if prefix:
                yield self._text(prefix, max_chars), None
        for part in turn.parts:
            if isinstance(part, str):
                yield self._text(part, max_chars), None
                continue
            span = [inputs.start_of_image_id] + [inputs.placeholder_id] * inputs.tokens_per_image
            yield (self._text(inputs.span_prefix) + span, part), _IMAGE
            yield [inputs.end_of_image_id] + self._text(inputs.span_suffix), _IMAGE

    def encode(self, example: example_lib.Example, sequence_length: int) -> Encoded:
        """Tokenizes a whole conversation for training, truncated to `sequence_length + 1` ids.

        The model sees `sequence_length` input positions; one more id is kept so that the last
        position still has a target. Use `Encoded.target_weights.sum() == 0` to spot examples
        whose responses were cut away entirely.
        """
        keep = sequence_length + 1
        max_chars = (keep + _SLACK_TOKENS) * MAX_CHARS_PER_TOKEN
        token_ids: list[int] = []
        weights: list[float] = []
        images: list[vision.PlacedImage] = []
        cut = None  # Where the ids end when an image span would be cut.
        for ids, weight in self._segments(example, for_generation=False, max_chars=max_chars):
            if isinstance(ids, tuple):  # An image's span: (ids, image).
                ids, image = ids
                start = len(token_ids) + len(ids) - self.image_inputs.tokens_per_image
                # Inputs are ids[:-1]: every placeholder must be an input position.
                if cut is None and len(token_ids) + len(ids) >= keep:
                    cut = len(token_ids)
                if cut is None:
                    images.append(vision.PlacedImage(image, start, self.image_inputs))
            if weight is None:  # A prompt piece.
                weight = 1.0 if self.train_on_prompt else 0.0
            elif weight == _IMAGE:
                weight = 0.0
            token_ids += ids
            weights += [float(weight)] * len(ids)
        weights[0] = 0.0  # BOS is never a target.
        kept = keep if cut is None else min(cut, keep)
        return Encoded(
            token_ids=np.asarray(token_ids[:kept], np.int32),
            target_weights=np.asarray(weights[:kept], np.float32),
            full_length=len(token_ids),
            images=tuple(images),
        )

    def encode_prompt(self, example: example_lib.Example) -> np.ndarray:
        """Token ids of the conversation up to the last model turn, ready for generation.

        The example's final model turn (the reference answer) is left out; the ids end with
        `<start_of_turn>model\\n` so the model writes the answer next. A document's prompt is
        BOS alone.
        """
        return self._prompt(example)[0]

    def prompt_images(self, example: example_lib.Example) -> tuple[vision.PlacedImage, ...]:
        """The images of `encode_prompt(example)`'s ids, where their placeholders start (for
        generation on a vision model; () for a prompt without images)."""
        return self._prompt(example)[1]

    def _prompt(self, example):
        """`(ids, placed images)` of the generation prompt."""
        ids: list[int] = []
        images: list[vision.PlacedImage] = []
        for piece, _ in self._segments(example, for_generation=True):
            if isinstance(piece, tuple):
                piece, image = piece
                start = len(ids) + len(piece) - self.image_inputs.tokens_per_image
                images.append(vision.PlacedImage(image, start, self.image_inputs))
            ids += piece
        return np.asarray(ids, np.int32), tuple(images)

    def answer_ids(self, text: str) -> list[int]:
        """Token ids of a model answer as training encodes it: its text, then `<end_of_turn>`."""
        return self._text(text) + [self.end_of_turn_id]

    def decode(self, token_ids) -> str:
        """Decodes generated ids to text, stopping at the first stop token."""
        out = []
        for token_id in token_ids:
            token_id = int(token_id)
            if token_id in self.stop_token_ids:
                break
            if token_id != self.pad_id:
                out.append(token_id)
        return self._encoder.decode(out)

    def prompt_text(self, example: example_lib.Example) -> str:
        """The generation prompt as text (turn markers included), for reports."""
        return self._encoder.decode(self.encode_prompt(example).tolist()[1:])
