"""Tests for gemma_tune.model.gguf_convert.

These tests write tiny Gemma 3 GGUF files with `gguf.GGUFWriter` and need no download. The
real Gemma 3 270M is checked against Hugging Face transformers in `gguf_parity_test.py`
(`pip install -e '.[parity]'`, then `pytest -m slow tests/gguf_parity_test.py`, ~3 min).
"""

import json
import os
import time

import gguf
import numpy as np
import pytest
import sentencepiece

from gemma_tune.model import gguf_convert, gguf_vocab

TokenType = gguf.TokenType

# ---------------------------------------------------------------------------------------------
# A tiny Gemma 3 written as GGUF, the way llama.cpp writes one.

SPECIALS = ["<pad>", "<eos>", "<bos>", "<unk>", "<mask>", "<start_of_turn>", "<end_of_turn>"]
WHITESPACE = ["\n", "\n\n", "  ", "   "]  # llama.cpp keeps real spaces in these pieces
BYTES = [f"<0x{byte:02X}>" for byte in range(256)]
# Best merges first, as in Gemma's vocabulary (single characters come last there too).
MERGED = ["he", "ll", "hell", "hello", "▁w", "or", "▁wor", "ld", "▁world", "▁he"]
CHARS = ["▁", "h", "e", "l", "o", "w", "r", "d", "u", "s"]
TOKENS = SPECIALS + WHITESPACE + BYTES + MERGED + CHARS
TYPES = (
    [TokenType.CONTROL] * len(SPECIALS)
    + [TokenType.USER_DEFINED] * len(WHITESPACE)
    + [TokenType.BYTE] * len(BYTES)
    + [TokenType.NORMAL] * (len(MERGED) + len(CHARS))
)
SCORES = [-1000.0] * (len(SPECIALS) + len(WHITESPACE)) + [0.0] * 256
SCORES += [-float(rank) for rank in range(len(MERGED) + len(CHARS))]

TINY = {"layers": 2, "hidden": 32, "heads": 2, "kv_heads": 1, "head_dim": 16, "ffn": 64}


def tiny_weights(seed: int = 0) -> dict[str, np.ndarray]:
    """Tensors in the Hugging Face [out, in] layout; norms stored as w + 1, as llama.cpp does."""
    rng = np.random.default_rng(seed)
    hidden, head_dim, ffn = TINY["hidden"], TINY["head_dim"], TINY["ffn"]
    q_dim, kv_dim = TINY["heads"] * head_dim, TINY["kv_heads"] * head_dim

    def normal(*shape):
        return rng.normal(size=shape).astype(np.float32)

    weights = {"token_embd.weight": normal(len(TOKENS), hidden)}
    weights["output_norm.weight"] = 1 + 0.1 * normal(hidden)
    for i in range(TINY["layers"]):
        for name, size in (
            ("attn_norm", hidden),
            ("post_attention_norm", hidden),
            ("ffn_norm", hidden),
            ("post_ffw_norm", hidden),
            ("attn_q_norm", head_dim),
            ("attn_k_norm", head_dim),
        ):
            weights[f"blk.{i}.{name}.weight"] = 1 + 0.1 * normal(size)
        weights[f"blk.{i}.attn_q.weight"] = normal(q_dim, hidden)
        weights[f"blk.{i}.attn_k.weight"] = normal(kv_dim, hidden)
        weights[f"blk.{i}.attn_v.weight"] = normal(kv_dim, hidden)
        weights[f"blk.{i}.attn_output.weight"] = normal(hidden, q_dim)
        weights[f"blk.{i}.ffn_gate.weight"] = normal(ffn, hidden)
        weights[f"blk.{i}.ffn_up.weight"] = normal(ffn, hidden)
        weights[f"blk.{i}.ffn_down.weight"] = normal(hidden, ffn)
    return weights


def write_tiny_gguf(path, weights, arch="gemma3", raw_types=None):
    """Writes `weights` as a GGUF file; `raw_types` maps a name to a GGML type to store it in."""
    writer = gguf.GGUFWriter(str(path), arch)
    writer.add_name("tiny gemma 3")
    writer.add_context_length(128)
    writer.add_block_count(TINY["layers"])
    writer.add_embedding_length(TINY["hidden"])
    writer.add_feed_forward_length(TINY["ffn"])
    writer.add_head_count(TINY["heads"])
    writer.add_head_count_kv(TINY["kv_heads"])
    writer.add_key_length(TINY["head_dim"])
    writer.add_value_length(TINY["head_dim"])
    writer.add_layer_norm_rms_eps(1e-6)
    writer.add_rope_freq_base(1e6)
    writer.add_sliding_window(4)
    writer.add_tokenizer_model("llama")
    writer.add_token_list(TOKENS)
    writer.add_token_scores(SCORES)
    writer.add_token_types(TYPES)
    writer.add_pad_token_id(0)
    writer.add_eos_token_id(1)
    writer.add_bos_token_id(2)
    writer.add_unk_token_id(3)
    writer.add_add_space_prefix(False)
    for name, weight in weights.items():
        raw_type = (raw_types or {}).get(name)
        if raw_type is None:
            writer.add_tensor(name, weight)
        elif raw_type == gguf.GGMLQuantizationType.I32:
            writer.add_tensor(name, weight.astype(np.int32))
        else:
            writer.add_tensor(name, gguf.quants.quantize(weight, raw_type), raw_dtype=raw_type)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


@pytest.fixture(scope="module")
def tiny_gguf(tmp_path_factory):
    weights = tiny_weights()
    quantized = {
        "blk.0.ffn_gate.weight": gguf.GGMLQuantizationType.Q8_0,
        "blk.1.ffn_up.weight": gguf.GGMLQuantizationType.F16,
    }
    path = write_tiny_gguf(
        tmp_path_factory.mktemp("gguf") / "tiny.gguf", weights, raw_types=quantized
    )
    # What the converter should see after dequantizing.
    weights["blk.0.ffn_gate.weight"] = gguf.quants.dequantize(
        gguf.quants.quantize(weights["blk.0.ffn_gate.weight"], quantized["blk.0.ffn_gate.weight"]),
        quantized["blk.0.ffn_gate.weight"],
    )
    weights["blk.1.ffn_up.weight"] = weights["blk.1.ffn_up.weight"].astype(np.float16)
    return path, weights


@pytest.fixture(scope="module")
def tiny_preset(tiny_gguf, tmp_path_factory):
    path, _ = tiny_gguf
    return gguf_convert.convert(path, tmp_path_factory.mktemp("presets") / "tiny", progress=False)


# ---------------------------------------------------------------------------------------------
# Fast tests.


def test_sentencepiece_proto_tokenizes_like_gemma():
    processor = sentencepiece.SentencePieceProcessor(
        model_proto=gguf_vocab.sentencepiece_proto(TOKENS, SCORES, TYPES)
    )
    ids = {token: index for index, token in enumerate(TOKENS)}

    def pieces(text):
        return [processor.id_to_piece(i) for i in processor.encode(text)]

    assert (processor.pad_id(), processor.eos_id(), processor.bos_id(), processor.unk_id()) == (
        0,
        1,
        2,
        3,
    )
    assert pieces("hello world") == ["hello", "▁world"]  # BPE by score, no dummy prefix
    assert pieces("hello  world") == ["hello", "▁▁", "w", "or", "ld"]  # space run stays whole
    assert processor.encode("<start_of_turn>user\nhello<end_of_turn>\n") == [
        ids["<start_of_turn>"],
        ids["u"],
        ids["s"],
        ids["e"],
        ids["r"],
        ids["\n"],
        ids["hello"],
        ids["<end_of_turn>"],
        ids["\n"],
    ]
    assert ids["<mask>"] in processor.encode("a <mask> b")
    assert pieces("é") == ["<0xC3>", "<0xA9>"]  # byte fallback, not <unk>
    # bos/eos stay CONTROL: literal text must not become a sequence boundary.
    assert ids["<bos>"] not in processor.encode("<bos>")
    for text in ["hello  world\n\nhe", "<start_of_turn>user\né<end_of_turn>", "   x"]:
        assert processor.decode(processor.encode(text)) == text


def test_sentencepiece_proto_rejects_inconsistent_vocabulary():
    with pytest.raises(ValueError, match="differ in length"):
        gguf_vocab.sentencepiece_proto(TOKENS, SCORES[:-1], TYPES)
    with pytest.raises(ValueError, match="both"):
        gguf_vocab.sentencepiece_proto(TOKENS + ["▁▁"], SCORES + [0.0], TYPES + [1])


def gemma3_270m_metadata(**overrides):
    metadata = {
        "general.architecture": "gemma3",
        "gemma3.block_count": 18,
        "gemma3.embedding_length": 640,
        "gemma3.feed_forward_length": 2048,
        "gemma3.attention.head_count": 4,
        "gemma3.attention.head_count_kv": 1,
        "gemma3.attention.key_length": 256,
        "gemma3.attention.value_length": 256,
        "gemma3.attention.layer_norm_rms_epsilon": 9.999999974752427e-07,
        "gemma3.rope.freq_base": 1e6,
        "gemma3.attention.sliding_window": 512,
    }
    metadata.update(overrides)
    return metadata


def test_backbone_config_of_gemma3_270m():
    config = gguf_convert.backbone_config(gemma3_270m_metadata())
    assert config == {
        "image_size": None,
        "num_layers": 18,
        "num_query_heads": 4,
        "num_key_value_heads": 1,
        "hidden_dim": 640,
        "intermediate_dim": 2048,
        "head_dim": 256,
        "query_head_dim_normalize": True,
        "use_query_key_norm": True,
        "use_post_ffw_norm": True,
        "use_post_attention_norm": True,
        "attention_logit_soft_cap": None,
        "final_logit_soft_cap": None,
        "use_sliding_window_attention": True,
        "sliding_window_size": 512,
        "local_rope_scaling_factor": 1.0,
        "global_rope_scaling_factor": 1.0,
        "layer_norm_epsilon": 1e-6,
        "vision_encoder": None,
    }


def test_backbone_config_larger_gemma3():
    scaled = gemma3_270m_metadata(
        **{"gemma3.rope.scaling.type": "linear", "gemma3.rope.scaling.factor": 8.0}
    )
    assert gguf_convert.backbone_config(scaled)["global_rope_scaling_factor"] == 8.0
    # 27B: queries scaled by 1/sqrt(hidden / heads) rather than 1/sqrt(head_dim).
    assert not gguf_convert.backbone_config(gemma3_270m_metadata(**{"gemma3.block_count": 62}))[
        "query_head_dim_normalize"
    ]


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"general.architecture": "llama"}, "architecture 'llama'"),
        ({"gemma3.rope.freq_base": 5e5}, "RoPE bases"),
        ({"gemma3.rope.freq_base_swa": 1e6}, "RoPE bases"),
        ({"gemma3.rope.scaling.type": "yarn"}, "yarn"),
        ({"gemma3.attention.sliding_window_pattern": 4}, "pattern"),
        ({"gemma3.block_count": None}, "gemma3.block_count"),
    ],
)
def test_backbone_config_rejects_what_gemma3_backbone_cannot_express(overrides, message):
    with pytest.raises(ValueError, match=message) as error:
        gguf_convert.backbone_config(gemma3_270m_metadata(**overrides), source="model.gguf")
    assert "model.gguf" in str(error.value)


def test_convert_rejects_other_architecture(tmp_path):
    path = write_tiny_gguf(tmp_path / "llama.gguf", tiny_weights(), arch="llama")
    with pytest.raises(ValueError, match="architecture 'llama' is not supported") as error:
        gguf_convert.convert(path, tmp_path / "preset", progress=False)
    assert str(path) in str(error.value)
    assert not (tmp_path / "preset").exists()


def test_convert_rejects_unsupported_tensor_type(tmp_path):
    path = write_tiny_gguf(
        tmp_path / "int.gguf",
        tiny_weights(),
        raw_types={"blk.1.ffn_down.weight": gguf.GGMLQuantizationType.I32},
    )
    with pytest.raises(ValueError, match="blk.1.ffn_down.weight has type I32") as error:
        gguf_convert.convert(path, tmp_path / "preset", progress=False)
    assert str(path) in str(error.value)


def test_convert_rejects_missing_tensor(tmp_path):
    weights = tiny_weights()
    del weights["blk.1.attn_v.weight"]
    path = write_tiny_gguf(tmp_path / "missing.gguf", weights)
    with pytest.raises(ValueError, match="missing .'blk.1.attn_v.weight'"):
        gguf_convert.convert(path, tmp_path / "preset", progress=False)


def test_convert_maps_every_weight(tiny_gguf, tiny_preset):
    import keras_hub

    _, weights = tiny_gguf
    backbone = keras_hub.models.Gemma3Backbone.from_preset(tiny_preset)
    heads, kv_heads, head_dim, hidden = 2, 1, 16, 32
    np.testing.assert_array_equal(
        backbone.get_layer("token_embedding").embeddings.numpy(), weights["token_embd.weight"]
    )
    np.testing.assert_allclose(
        backbone.get_layer("final_normalization").scale.numpy(),
        weights["output_norm.weight"] - 1,
    )

    def heads_in(weight, heads):
        return weight.reshape(heads, head_dim, hidden).transpose(0, 2, 1)

    for i in range(2):
        block = backbone.get_layer(f"decoder_block_{i}")
        attention = block.attention
        layer = {name[len(f"blk.{i}.") :]: w for name, w in weights.items() if f"blk.{i}." in name}
        expected = [
            (block.pre_attention_norm.scale, layer["attn_norm.weight"] - 1),
            (block.post_attention_norm.scale, layer["post_attention_norm.weight"] - 1),
            (block.pre_ffw_norm.scale, layer["ffn_norm.weight"] - 1),
            (block.post_ffw_norm.scale, layer["post_ffw_norm.weight"] - 1),
            (attention.query_norm.scale, layer["attn_q_norm.weight"] - 1),
            (attention.key_norm.scale, layer["attn_k_norm.weight"] - 1),
            (attention.query_dense.kernel, heads_in(layer["attn_q.weight"], heads)),
            (attention.key_dense.kernel, heads_in(layer["attn_k.weight"], kv_heads)),
            (attention.value_dense.kernel, heads_in(layer["attn_v.weight"], kv_heads)),
            (
                attention.output_dense.kernel,
                layer["attn_output.weight"].reshape(hidden, heads, head_dim).transpose(1, 2, 0),
            ),
            (block.gating_ffw.kernel, layer["ffn_gate.weight"].T),
            (block.gating_ffw_2.kernel, layer["ffn_up.weight"].T),
            (block.ffw_linear.kernel, layer["ffn_down.weight"].T),
        ]
        for variable, value in expected:
            np.testing.assert_allclose(variable.numpy(), value, rtol=1e-6, err_msg=variable.path)
    config = backbone.get_config()
    assert (config["sliding_window_size"], config["layer_norm_epsilon"]) == (4, 1e-6)


def test_converted_preset_loads_as_causal_lm(tiny_gguf, tiny_preset):
    import keras_hub

    causal_lm = keras_hub.models.Gemma3CausalLM.from_preset(tiny_preset)
    tokenizer = causal_lm.preprocessor.tokenizer
    ids = [int(i) for i in tokenizer("<start_of_turn>user\nhello world<end_of_turn>\n")]
    assert ids[0] == TOKENS.index("<start_of_turn>")
    assert TOKENS.index("▁world") in ids
    assert (tokenizer.start_token_id, tokenizer.end_token_id, tokenizer.pad_token_id) == (2, 1, 0)
    with open(os.path.join(tiny_preset, "gguf_source.json")) as source:
        assert json.load(source)["source_file"] == "tiny.gguf"
    assert os.listdir(os.path.dirname(tiny_preset)) == ["tiny"]  # no staging directory left
    with pytest.raises(FileExistsError):
        gguf_convert.convert(tiny_gguf[0], tiny_preset, progress=False)


def test_ensure_preset_converts_a_gguf_once(tiny_gguf, tmp_path, capsys):
    path, _ = tiny_gguf
    first = gguf_convert.ensure_preset(str(path), cache_dir=tmp_path, progress=False)
    assert "converting" in capsys.readouterr().out
    start = time.perf_counter()
    second = gguf_convert.ensure_preset(str(path), cache_dir=tmp_path, progress=False)
    assert second == first and time.perf_counter() - start < 0.5
    assert capsys.readouterr().out == ""
    assert os.path.basename(first).startswith("tiny-")
    assert not [name for name in os.listdir(os.path.dirname(first)) if name.endswith(".tmp")]


def test_ensure_preset_rejects_unknown_names(tmp_path):
    with pytest.raises(ValueError, match="gemma3_270m_gguf"):
        gguf_convert.ensure_preset("gemma_2b_en", cache_dir=tmp_path)
    with pytest.raises(FileNotFoundError, match="nowhere.gguf"):
        gguf_convert.ensure_preset(str(tmp_path / "nowhere.gguf"), cache_dir=tmp_path)


def test_default_cache_dir(monkeypatch, tmp_path):
    monkeypatch.delenv("GEMMA_TUNE_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert gguf_convert.default_cache_dir() == tmp_path / "xdg" / "gemma_tune"
    monkeypatch.setenv("GEMMA_TUNE_CACHE", str(tmp_path / "mine"))
    assert gguf_convert.default_cache_dir() == tmp_path / "mine"


# ---------------------------------------------------------------------------------------------
# Slow tests: the real Gemma 3 270M against Hugging Face transformers' GGUF loader.


def test_the_earlier_builtin_name_still_loads_ours_with_a_note(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(gguf_convert, "_NOTED", set())
    cached = tmp_path / "presets" / "gemma3_270m_gguf"
    cached.mkdir(parents=True)
    (cached / "config.json").write_text("{}")  # a converted preset is already cached
    assert gguf_convert.ensure_preset("gemma3_270m", cache_dir=tmp_path) == str(cached)
    assert gguf_convert.ensure_preset("gemma3_270m_gguf", cache_dir=tmp_path) == str(cached)
    gguf_convert.ensure_preset("gemma3_270m", cache_dir=tmp_path)
    out = capsys.readouterr().out
    assert out.count("is now called gemma3_270m_gguf") == 1  # once per process
    assert "KerasHub's own gemma3_270m preset" in out
