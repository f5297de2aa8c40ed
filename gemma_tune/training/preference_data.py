"""A DPO run's data between reading and training: preference pairs encoded through the chat
template, and the reference model's log-probabilities of every answer, computed once.

`encode` is the preference counterpart of `encoding.encode_examples`: both answers of each pair
are encoded after the shared prompt (`pair_encoding`), pairs whose prompt leaves no answer token
within `sequence_length` are dropped and counted, and the token lengths of both rows go into the
data summary. With `train.packing`, both sets are packed into rows of whole pairs
(`pair_packing`).

`attach_reference` is the reference pass (`dpo`'s design): the model as prepared before the
first step (the base with fresh adapters, or the run named by `train.init_from`) scores every
training and validation pair, without dropout, through the trainer's own compiled forward and
mesh, in the batches validation uses (packed rows too: each answer scored as its own
segment); the two arrays per set, indexed by pair, are saved in the run directory
(`run_dir.REFERENCE_LOGPS`), so a resumed run, whose model is no longer the reference, reads
them back instead. The same scores give the validation metrics at step 0, where the policy
still is the reference (`objectives.Preference.reference_validation`).
"""

from __future__ import annotations

import numpy as np
import tqdm

from gemma_tune.data import example
from gemma_tune.training import encoding, objectives, pair_batches, pair_encoding, pair_packing


def encode(config, chat_template, summary, train_pairs, validation_pairs):
    """Encodes both sets of pairs and records their token lengths in `summary`.

    Returns:
      `(train, validation_kept, validation)`: the training pairs as `objectives.ScoredPairs`
      (no reference yet; packed into rows of whole pairs with `train.packing`), the kept
      validation pairs' prompts answered with the chosen answer (the examples the
      base-vs-tuned comparison answers), and the validation pairs (packed alike).

    Raises:
      DataError: when no training pair keeps an answer within `sequence_length`.
    """
    length, packed = config.sequence_length, config.train.packing
    lengths = []

    def encode_all(pairs):
        kept, encoded = [], []
        for pair in pairs:
            rows = pair_encoding.encode_pair(chat_template, pair, length)
            lengths.extend((rows.chosen.full_length, rows.rejected.full_length))
            if rows.chosen.target_weights.sum() and rows.rejected.target_weights.sum():
                kept.append(pair)
                encoded.append(rows)
        return kept, encoded

    train_kept, train_encoded = encode_all(train_pairs)
    validation_kept, validation_encoded = encode_all(validation_pairs)
    summary.add_token_lengths(lengths, length)
    cut = len(train_pairs) + len(validation_pairs) - len(train_kept) - len(validation_kept)
    if cut:
        summary.dropped["answer cut away by sequence_length"] = cut
    summary.train_count, summary.validation_count = len(train_kept), len(validation_kept)
    if not train_encoded:
        source = encoding.source_name(config.data)
        reason = f"no training pair keeps an answer within {length} tokens"
        raise example.DataError([example.Problem(source, 0, "sequence_length", reason)])
    train_set, validation_set = (
        objectives.ScoredPairs(
            encoded, packed=pair_packing.pack_pairs(encoded, length) if packed else None
        )
        for encoded in (train_encoded, validation_encoded)
    )
    if packed:
        print(
            f"Packed {len(train_encoded)} training pairs into {len(train_set)} rows of "
            f"{pair_packing.row_width(length)} tokens (at most {train_set.segments // 2} in "
            f"a row), {len(validation_encoded)} validation pairs into {len(validation_set)} rows",
            flush=True,
        )
    return train_set, [pair.chosen_example for pair in validation_kept], validation_set


def _score(tuner, sets: dict, config, pad_id: int) -> dict:
    """Both answers' log-probabilities of every pair of each set under the trainer's current
    weights, in the set's validation batches, with a progress bar: `{name}_chosen`,
    `{name}_rejected` per set, indexed by pair."""
    per_batch = config.train.eval_batch_size
    batches = sum(-(-len(pairs) // per_batch) for pairs in sets.values())
    progress = tqdm.tqdm(total=batches, desc="reference", unit="batch", dynamic_ncols=True)

    def scored(batch):
        values = tuner.pair_log_probs(batch)
        progress.update(1)
        return values

    count = sum(len(pairs.pairs) for pairs in sets.values())
    print(f"Scoring {count} pairs with the reference model ...", flush=True)
    saved = {}
    with progress:
        for name, pairs in sets.items():
            chosen, rejected = pair_batches.scatter_by_pair(
                tuner.objective.eval_batches(pairs, per_batch, config.sequence_length, pad_id),
                scored,
                len(pairs.pairs),
            )
            saved[f"{name}_chosen"], saved[f"{name}_rejected"] = chosen, rejected
    return saved


def attach_reference(tuner, train, validation, *, config, pad_id, run_path, has_checkpoint):
    """Gives both sets of pairs their reference log-probabilities: read from the run directory
    when an earlier start of this run computed them, else computed now with the trainer's
    current weights (which must then be the reference: no checkpoint restored yet) and saved.
    Reference-free losses (`dpo.REFERENCE_FREE`) skip all of it.

    Raises:
      ValueError: the run has a checkpoint but its reference file is missing (the reference
        cannot be recomputed from trained weights), or the file does not match the pairs.
    """
    from gemma_tune.runs import reference_logps, run_dir

    if not tuner.objective.needs_reference:
        return
    saved = reference_logps.read_reference(run_path)
    if saved is None and has_checkpoint:
        raise ValueError(
            f"{run_path} has checkpoints but no {run_dir.REFERENCE_LOGPS}: the DPO reference "
            "log-probabilities cannot be recomputed from trained weights; start the run again "
            "with --overwrite"
        )
    if saved is None:
        saved = _score(tuner, {"train": train, "validation": validation}, config, pad_id)
        reference_logps.write_reference(run_path, saved)
    for name, pairs in (("train", train), ("validation", validation)):
        chosen, rejected = saved[f"{name}_chosen"], saved[f"{name}_rejected"]
        if len(chosen) != len(pairs.pairs):
            raise ValueError(
                f"{run_path}/{run_dir.REFERENCE_LOGPS} holds {len(chosen)} {name} pairs, the "
                f"data {len(pairs.pairs)}; the data changed since the run started"
            )
        pairs.reference_chosen = np.asarray(chosen, np.float32)
        pairs.reference_rejected = np.asarray(rejected, np.float32)
