"""The run's data for `gemma_tune.train`: read and checked before any model is loaded
(supervised examples, or DPO preference pairs with their chosen answers as examples), retrieved
context attached when `retrieval.train`, then encoded (pairs through
`gemma_tune.training.preference_data`) and packed when `train.packing`.
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass
class Data:
    """The checked examples (retrieved context attached if asked), summary and retriever; for
    DPO also the pairs (the examples are then their prompts answered with the chosen answer)."""

    train_examples: list
    validation_examples: list
    summary: object
    retriever: object
    train_pairs: list | None = None
    validation_pairs: list | None = None


@dataclasses.dataclass
class Encoded:
    """Training rows (packed if asked), the validation examples kept and their encodings."""

    train: list
    validation_kept: list
    validation: list


def read_data(config) -> Data:
    """Reads and checks the data, and attaches retrieved passages when `retrieval.train`."""
    from gemma_tune import model
    from gemma_tune.data import preference_sources, sources
    from gemma_tune.evaluation import retrieval

    print("Reading and checking the data ...", flush=True)
    _check_not_empty(config.data)
    if config.train.get("objective") == "dpo":
        train_pairs, validation_pairs, summary = preference_sources.load(config.data)
        train_chosen, validation_chosen = (
            [pair.chosen_example for pair in pairs] for pairs in (train_pairs, validation_pairs)
        )
        return Data(train_chosen, validation_chosen, summary, None, train_pairs, validation_pairs)
    # Image rows are kept while reading; only when there are some is the model asked whether
    # it reads them (that reads the preset's config, which may need the network).
    train_examples, validation_examples, summary = sources.load(config.data, images=True)
    examples = [*train_examples, *validation_examples]
    if any(item.images for item in examples) and not model.reads_images(config.model.preset):
        sources.refuse_images(examples)
    retriever = retrieval.from_config(config.retrieval)
    if retriever is not None and config.retrieval.train:
        print(f"Attaching {config.retrieval.top_k} retrieved passages to every prompt ...")
        train_examples, validation_examples = (
            retrieval.attach_context(items, retriever, config.retrieval.top_k)
            for items in (train_examples, validation_examples)
        )
    return Data(train_examples, validation_examples, summary, retriever)


def check_selection(config, data: Data) -> None:
    """Refuses `train.keep_best` and `train.early_stopping_patience` where there is nothing
    to choose by: no validation data, or (for early stopping) no validation before the end.

    Raises:
      ValueError: naming the setting and what it needs.
    """
    train = config.train
    asked = [key for key in ("keep_best", "early_stopping_patience") if train.get(key)]
    if asked and not data.validation_examples:
        raise ValueError(
            f"train.{asked[0]} needs validation data: set data.validation_path or "
            "data.validation_fraction"
        )
    if train.get("early_stopping_patience") and not train.eval_every:
        raise ValueError(
            "train.early_stopping_patience needs validations during training: set train.eval_every"
        )


def _check_not_empty(data_config) -> None:
    """Refuses a data file with nothing in it, naming it, before any reader looks at it.

    Raises:
      ValueError: `data.path` or `data.validation_path` is an empty file.
    """
    import os

    if data_config.source != "file":
        return
    for key in ("path", "validation_path"):
        path = data_config[key]
        if path and os.path.isfile(path) and not _has_text(path):
            raise ValueError(f"data.{key}: {path} is empty; it holds no examples")


def _has_text(path: str) -> bool:
    """Whether the file holds anything but whitespace (reading up to its first text)."""
    with open(path, "rb") as f:
        while chunk := f.read(1 << 16):
            if chunk.strip():
                return True
    return False


def encode(config, chat_template, data: Data, run_path: str) -> Encoded:
    """Encodes the examples, writes the data summary, and packs the training rows if asked."""
    from gemma_tune.runs import run_dir
    from gemma_tune.training import encoding, packing, preference_data

    if data.train_pairs is not None:
        train_encoded, val_kept, val_encoded = preference_data.encode(
            config, chat_template, data.summary, data.train_pairs, data.validation_pairs
        )
    else:
        train_encoded, val_kept, val_encoded = encoding.encode_examples(
            config, chat_template, data.summary, data.train_examples, data.validation_examples
        )
    run_dir.write_data_summary(run_path, data.summary.to_dict())
    print(data.summary.format(), flush=True)
    if config.train.packing and data.train_pairs is None:  # Pairs: packed by `encode`.
        examples_count = len(train_encoded)
        train_encoded = packing.combine(train_encoded, config.sequence_length)
        filled = packing.fill(train_encoded, config.sequence_length)
        print(
            f"Packed {examples_count} training examples into {len(train_encoded)} rows of "
            f"{config.sequence_length} tokens ({100 * filled:.0f}% of the slots hold tokens)",
            flush=True,
        )
    return Encoded(train_encoded, val_kept, val_encoded)
