"""Preference pairs split by prompt (all pairs of a prompt on one side) and deduplicated."""

import pytest

from gemma_tune.data import example as ex
from gemma_tune.data import preference, preference_split


def _pair(prompt, chosen="a", rejected="b", system=None):
    return preference.PreferencePair((ex.Turn(ex.USER, prompt),), chosen, rejected, system)


def test_every_pair_of_a_prompt_lands_on_the_same_side():
    pairs = [_pair(f"q{i % 10}", chosen=f"c{i}") for i in range(40)]  # 4 pairs per prompt
    train, validation = preference_split.split(pairs, 0.2, seed=3)
    held_out = {pair.prompt for pair in validation}
    assert len(held_out) == 2 and len(validation) == 8 and len(train) == 32
    assert not held_out & {pair.prompt for pair in train}
    assert validation == [pair for pair in pairs if pair.prompt in held_out]  # source order
    assert preference_split.split(pairs, 0.2, seed=3) == (train, validation)
    assert preference_split.split(pairs, 0.0, seed=3) == (pairs, [])
    with pytest.raises(ValueError, match=r"validation_fraction must be in \[0, 1\)"):
        preference_split.split(pairs, 1.0, seed=3)


def test_a_system_prompt_makes_a_different_prompt():
    pairs = [_pair("q"), _pair("q", system="Be brief.")]
    train, validation = preference_split.split(pairs, 0.5, seed=0)
    assert len(train) == len(validation) == 1


def test_deduplicate_exact_and_normalized():
    pairs = [_pair("Q 1"), _pair("Q 1"), _pair("q  1"), _pair("Q 1", chosen="other")]
    assert preference_split.deduplicate(pairs, "exact") == ([pairs[0], pairs[2], pairs[3]], 1)
    assert preference_split.deduplicate(pairs, "normalized") == ([pairs[0], pairs[3]], 2)
    assert preference_split.deduplicate(pairs, "none") == (pairs, 0)
