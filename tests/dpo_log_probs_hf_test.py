"""Per-row answer log-probabilities of encoded preference pairs on a tiny exported Gemma equal
those TRL's DPOTrainer computes on the transformers model (its fused LM head, labels -100
outside the answer), for Gemma 2 (final soft cap) and Gemma 3. Slow: exports and loads models.
"""

import numpy as np
import pytest
from export_helpers import base_model, hf_load

from gemma_tune.data import example as ex
from gemma_tune.data import preference
from gemma_tune.training import batching, loss, pair_encoding, template

SEQUENCE_LENGTH = 96


def _pairs():
    user = ex.Turn(ex.USER, "What colour is the sky on a clear day?")
    history = (ex.Turn(ex.USER, "hi"), ex.Turn(ex.MODEL, "hello"), user)
    return [
        preference.PreferencePair((user,), "blue", "green, mostly, or red", system="Be brief."),
        preference.PreferencePair(history, "It is blue.", "blue " * 30),  # truncated
    ]


@pytest.mark.slow
@pytest.mark.parametrize("architecture", ["gemma2", "gemma3"])
def test_row_log_probs_equal_trl_on_the_exported_model(tmp_path, architecture):
    torch = pytest.importorskip("torch")
    trl_utils = pytest.importorskip("trl.trainer.utils")
    from gemma_tune.export import hf_export

    loaded = base_model(architecture)
    chat_template = template.ChatTemplate(loaded.tokenizer)
    encoded, cut_away = pair_encoding.encode_pairs(chat_template, _pairs(), SEQUENCE_LENGTH)
    assert cut_away == 0
    assert encoded[1].rejected.truncated and not encoded[0].rejected.truncated
    rows = [pair.chosen for pair in encoded] + [pair.rejected for pair in encoded]
    batch = batching.pack(rows, SEQUENCE_LENGTH, chat_template.pad_id, len(rows))

    backbone = loaded.causal_lm.backbone
    inputs = loaded.family.backbone_inputs(batch["token_ids"], batch["padding_mask"])
    ours = loss.head_row_log_probs(
        np.asarray(backbone(inputs)),
        np.asarray(backbone.token_embedding.embeddings.value),
        batch["target_ids"],
        batch["target_weights"],
        soft_cap=backbone.token_embedding.logit_soft_cap,
        chunk_size=16,
    )

    hf_export.save(loaded, str(tmp_path))
    hf_model = hf_load(tmp_path)
    trl_utils.add_fused_lm_head(hf_model)
    width = SEQUENCE_LENGTH + 1
    input_ids = np.full((len(rows), width), chat_template.pad_id, np.int64)
    completion_mask = np.zeros((len(rows), width), np.int64)
    for index, row in enumerate(rows):
        input_ids[index, : len(row.token_ids)] = row.token_ids
        completion_mask[index, : len(row.token_ids)] = row.target_weights > 0
    input_ids = torch.tensor(input_ids)
    # What DPOTrainer._compute_loss does: labels are the ids outside the answer set to -100.
    labels = input_ids.masked_fill(torch.tensor(completion_mask) == 0, -100)
    attention_mask = torch.tensor(input_ids != chat_template.pad_id, dtype=torch.long)
    with torch.no_grad():
        outputs = hf_model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            labels=labels,
            fused_lm_head=True,
            use_cache=False,
        )
    theirs = outputs.log_probs.sum(dim=1).numpy()
    np.testing.assert_allclose(np.asarray(ours), theirs, rtol=2e-5, atol=2e-4)
    assert np.all(np.asarray(ours) < 0)
