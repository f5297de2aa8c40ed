"""The GGUF export (llama.cpp / Ollama): a tuned tiny Gemma 3 written as F32, F16 and Q8_0
reads back through gemma_tune's own GGUF import with the tuned logits (within what each type
keeps), the same tokenizer and an Ollama Modelfile; transformers' GGUF loader reads an
exported real Gemma 3 270M with our logits (slow).

    python -m pytest -q tests/export_gguf_test.py
"""

import numpy as np
import pytest
from export_helpers import encode, keras_logits, sample_token_ids, tuned_model

from gemma_tune import model
from gemma_tune.export import gguf_export

# Max |logit error| allowed per type, relative to the largest |logit|: float32 is exact up to
# rounding; float16 keeps ~3 decimal digits; Q8_0 one int8 per weight and a scale per 32.
TOLERANCE = {"f32": 1e-6, "f16": 2e-3, "q8_0": 3e-2}


@pytest.mark.parametrize("gguf_type", ["f32", "f16", "q8_0"])
def test_an_exported_gguf_reads_back_with_the_tuned_logits(tmp_path, monkeypatch, gguf_type):
    monkeypatch.setenv("GEMMA_TUNE_CACHE", str(tmp_path / "cache"))
    tuned = tuned_model("gemma3", 1)
    token_ids = sample_token_ids()
    expected = keras_logits(tuned, token_ids)
    gguf_export.save(tuned, str(tmp_path / "out"), gguf_type)
    path = tmp_path / "out" / gguf_export.file_name(gguf_type)
    reloaded = model.load(str(path), "float32")
    error = np.abs(keras_logits(reloaded, token_ids) - expected).max()
    print(f"{gguf_type}: {path.stat().st_size} bytes, max |error| {error:.2e}")
    assert error <= TOLERANCE[gguf_type] * np.abs(expected).max()
    # The LoRA was merged, not dropped: the untuned model is far from the tuned one.
    untuned = keras_logits(model.load("tiny:gemma3", "float32"), token_ids)
    assert np.abs(untuned - expected).max() > 10 * error
    text = "<start_of_turn>user\nthe cat likes red apples.<end_of_turn>\n"
    assert encode(reloaded.tokenizer, text) == encode(tuned.tokenizer, text)
    modelfile = (tmp_path / "out" / gguf_export.MODELFILE).read_text()
    assert modelfile.startswith(f"FROM ./{path.name}\n")
    assert 'PARAMETER stop "<end_of_turn>"' in modelfile


def test_gguf_export_of_a_family_without_gguf_names_is_refused(tmp_path):
    loaded = model.load("tiny:gemma1", "float32")
    with pytest.raises(ValueError, match="GGUF export of Gemma 1 is not supported"):
        gguf_export.save(loaded, str(tmp_path), "f16")
    with pytest.raises(ValueError, match="--gguf_type must be one of"):
        gguf_export.save(model.load("tiny:gemma3", "float32"), str(tmp_path), "q4_k")


@pytest.mark.slow
def test_transformers_reads_an_exported_gemma3_270m_with_our_logits(tmp_path):
    """transformers' own GGUF loader on the real 270M written by us, F16 and Q8_0. (On tiny
    models it cannot match: it leaves `query_pre_attn_scalar` at 256, right only for head_dim
    256.)"""
    transformers = pytest.importorskip("transformers")
    torch = pytest.importorskip("torch")
    loaded = model.load("gemma3_270m_gguf", "float32")
    ids = [int(i) for i in loaded.tokenizer("The history of the Roman Empire spans")]
    token_ids = np.array([[loaded.tokenizer.start_token_id, *ids]], np.int32)
    expected = keras_logits(loaded, token_ids)
    for gguf_type in ("f16", "q8_0"):
        gguf_export.save(loaded, str(tmp_path / gguf_type), gguf_type)
        hf_model = transformers.AutoModelForCausalLM.from_pretrained(
            str(tmp_path / gguf_type),
            gguf_file=gguf_export.file_name(gguf_type),
            dtype=torch.float32,
        ).eval()
        with torch.no_grad():
            logits = hf_model(torch.tensor(token_ids, dtype=torch.long)).logits.numpy()
        del hf_model
        error = np.abs(logits - expected).max()
        print(f"{gguf_type}: max |transformers - ours| {error:.3f} of {np.abs(expected).max():.1f}")
        assert error <= 2 * TOLERANCE[gguf_type] * np.abs(expected).max()
        assert logits[0, -1].argmax() == expected[0, -1].argmax()
