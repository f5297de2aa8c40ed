"""Encoding a run's examples: chat template -> token ids and loss weights, with the examples
whose response the sequence length cuts away dropped and counted in the data summary (their
token lengths, the longest, still count in its length statistics)."""

from __future__ import annotations

from gemma_tune.data import example


def source_name(data_config) -> str:
    """The data source as users named it: the file, the dataset, or "tiny"."""
    if data_config.source == "file":
        return data_config.path
    if data_config.source == "tiny":
        return "tiny"
    return data_config.name


def encode_examples(config, chat_template, summary, train_examples, validation_examples):
    """Encodes examples with the chat template, drops those whose response is cut away
    entirely by the sequence length, and records token-length statistics in `summary`.

    Returns:
      `(train_encoded, validation_kept, validation_encoded)`.

    Raises:
      DataError: when no training example keeps any response within `sequence_length`.
    """
    length = config.sequence_length

    lengths = []  # Every example's, the ones cut away included: they are the longest.

    def encode_all(examples):
        """The examples keeping some response within the length, their encodings, and how
        many were cut away."""
        kept, encoded, cut_away = [], [], 0
        for item in examples:
            tokens = chat_template.encode(item, length)
            lengths.append(tokens.full_length)
            if tokens.target_weights.sum() == 0:
                cut_away += 1
                continue
            kept.append(item)
            encoded.append(tokens)
        return kept, encoded, cut_away

    train_kept, train_encoded, train_cut = encode_all(train_examples)
    val_kept, val_encoded, val_cut = encode_all(validation_examples)
    summary.add_token_lengths(lengths, length)
    if train_cut or val_cut:
        summary.dropped["response cut away by sequence_length"] = train_cut + val_cut
    summary.train_count = len(train_kept)
    summary.validation_count = len(val_kept)
    if not train_encoded:
        reason = f"no training example keeps a response within {length} tokens"
        raise example.DataError(
            [example.Problem(source_name(config.data), 0, "sequence_length", reason)]
        )
    return train_encoded, val_kept, val_encoded
