"""The TRL peer of `benchmarks/packing_speed.py --trl` on a tiny Gemma 3 (never timed): TRL's
`SFTTrainer` with padding-free packing gets exactly our examples and response-only labels,
trains one epoch, and its loss on its first batch (several examples flattened into one
sequence) equals ours on the same examples packed our way, so both keep attention within each
example. Needs the `parity` extra (trl, peft, torch)."""

import pathlib
import sys

import numpy as np
import pytest

from gemma_tune import model, testing
from gemma_tune.data import example as ex
from gemma_tune.export import hf_export
from gemma_tune.training import packing, template

pytest.importorskip("torch")
pytest.importorskip("peft")
pytest.importorskip("trl")

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent / "benchmarks"))
import packing_speed  # noqa: E402
import packing_trl  # noqa: E402

SEQUENCE_LENGTH = 256


def _tiny_gemma3():
    """A six-layer tiny Gemma 3: its sixth layer attends globally (the first five slide over 16
    tokens), so attention reaching into a row's earlier examples would change the loss."""
    tokenizer = testing.tiny_tokenizer("gemma3")
    backbone = testing.tiny_backbone("gemma3", tokenizer.vocabulary_size(), num_layers=6)
    return model.LoadedModel(model.causal_lm_for(backbone), tokenizer, "tiny:gemma3")


def _encoded(loaded):
    chat_template = template.ChatTemplate(loaded.tokenizer)
    examples = [
        ex.Example(turns=(ex.Turn(ex.USER, row["instruction"]), ex.Turn(ex.MODEL, row["response"])))
        for row in testing.tiny_conversations(24)
    ]
    return [chat_template.encode(e, SEQUENCE_LENGTH) for e in examples]


def test_trl_rows_carry_our_tokens_and_response_only_labels():
    loaded = _tiny_gemma3()
    encoded = _encoded(loaded)
    rows = packing_trl.trl_rows(encoded)
    for item, ids, labels in zip(encoded, rows["input_ids"], rows["labels"], strict=True):
        assert ids == item.token_ids.tolist()
        trained = np.asarray(labels) != packing_trl.IGNORE
        np.testing.assert_array_equal(trained, item.target_weights > 0)
        np.testing.assert_array_equal(np.asarray(labels)[trained], item.token_ids[trained])
        assert labels[0] == packing_trl.IGNORE and 0 < trained.sum() < len(ids)


def test_trl_packed_epoch_holds_our_examples_and_computes_our_loss(tmp_path):
    loaded = _tiny_gemma3()
    encoded = _encoded(loaded)
    hf_export.save(loaded, str(tmp_path))
    result = packing_trl.trl_epoch(encoded, SEQUENCE_LENGTH, 2, hf_dir=str(tmp_path))

    # trl_epoch raises unless TRL's batches hold exactly our (tokens, labels); its rows are at
    # most as many as ours (both pack by length, decreasing, into the same capacity).
    rows = packing.combine(encoded, SEQUENCE_LENGTH)
    assert result["rows"] <= len(rows)
    assert result["steps"] == -(-result["rows"] // 2)
    first = result["first_batch"]
    assert len(first) > 2  # several examples share the flattened sequence
    ours = packing_speed.loss_on(loaded, first, SEQUENCE_LENGTH)
    assert result["first_loss"] == pytest.approx(ours, rel=1e-5)
    assert result["attention"] in ("sdpa", "eager")
