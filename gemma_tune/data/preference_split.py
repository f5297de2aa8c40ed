"""Duplicate pairs and the train/validation split of preference pairs, by prompt.

Preference datasets often hold several pairs per prompt (UltraFeedback's four answers give up to
six pairs). Splitting pairs one by one would put the same prompt on both sides, and held-out
preference accuracy would then measure prompts the model was tuned on. `split` holds out whole
prompts instead: every pair of a prompt (its system prompt and turns) goes to the same side.
`deduplicate` removes repeated pairs (same prompt and both answers), with the supervised
reader's modes (`duplicates.MODES`).
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence

import numpy as np

from gemma_tune.data import duplicates, example, preference


def prompt_key(pair: preference.PreferencePair, mode: str = "exact") -> Hashable:
    """What pairs share when they answer the same prompt (`mode` "normalized" ignores
    whitespace and letter case)."""
    return duplicates.key(example.Example(turns=pair.prompt, system=pair.system), mode)


def _pair_key(pair: preference.PreferencePair, mode: str) -> Hashable:
    """What two repeated pairs share: the prompt and both answers (normalized with `mode`)."""
    answers = (pair.chosen, pair.rejected)
    if mode == "normalized":
        answers = tuple(" ".join(text.split()).casefold() for text in answers)
    return (prompt_key(pair, mode), answers)


def deduplicate(
    pairs: Sequence[preference.PreferencePair],
    mode: str,
    seen: Sequence[preference.PreferencePair] = (),
) -> tuple[list[preference.PreferencePair], int]:
    """Keeps the first of each set of repeated pairs (same prompt, chosen and rejected), and
    removes those repeating a pair of `seen` (the training pairs, when deduplicating a
    separate validation file, so validation never repeats training).

    Returns:
      The kept pairs, in order, and how many were removed.
    """
    duplicates.check_mode(mode)
    if mode == "none":
        return list(pairs), 0
    taken = {_pair_key(pair, mode) for pair in seen}
    kept = []
    for pair in pairs:
        pair_key = _pair_key(pair, mode)
        if pair_key not in taken:
            taken.add(pair_key)
            kept.append(pair)
    return kept, len(pairs) - len(kept)


def split(
    pairs: Sequence[preference.PreferencePair], fraction: float, seed: int
) -> tuple[list[preference.PreferencePair], list[preference.PreferencePair]]:
    """Holds out about `fraction` of the prompts, with all their pairs, for validation.

    The distinct prompts are shuffled with `numpy.random.default_rng(seed)`, so a seed always
    gives the same split; with a fraction above zero and at least two prompts, at least one
    prompt goes to validation and one stays for training. Both parts keep the source order.

    Returns:
      (train, validation).

    Raises:
      ValueError: unless 0 <= fraction < 1.
    """
    if not 0 <= fraction < 1:
        raise ValueError(f"validation_fraction must be in [0, 1), got {fraction}")
    prompts = list(dict.fromkeys(prompt_key(pair) for pair in pairs))
    if fraction == 0 or len(prompts) < 2:
        return list(pairs), []
    count = min(len(prompts) - 1, max(1, round(len(prompts) * fraction)))
    held_out = {prompts[i] for i in np.random.default_rng(seed).permutation(len(prompts))[:count]}
    train = [pair for pair in pairs if prompt_key(pair) not in held_out]
    validation = [pair for pair in pairs if prompt_key(pair) in held_out]
    return train, validation
