"""Tiny tuned Gemma models and logit helpers shared by the export tests.

The test modules beside this one import it by name (`from export_helpers import ...`): pytest
puts tests/ on sys.path, since the directory has no __init__.py.
"""

import functools

import numpy as np
import pytest

from gemma_tune import model, testing

SEQUENCE_LENGTH = 24
CASES = [("gemma1", 2), ("gemma1", 1), ("gemma2", 2), ("gemma3", 2), ("gemma3", 1)]


@functools.cache
def tiny_tokenizer(architecture):
    """The tiny test tokenizer of `architecture`, built once per session."""
    return testing.tiny_tokenizer(architecture)


def base_model(architecture, num_key_value_heads=2, seed=0):
    """An untuned tiny float32 `architecture` model, no preprocessor; `seed` fixes its weights."""
    tokenizer = tiny_tokenizer(architecture)
    backbone = testing.tiny_backbone(
        architecture,
        tokenizer.vocabulary_size(),
        seed=seed,
        dtype="float32",
        num_key_value_heads=num_key_value_heads,
    )
    return model.LoadedModel(model.causal_lm_for(backbone), tokenizer, f"tiny:{architecture}")


def tuned_model(
    architecture, num_key_value_heads=2, rank=4, dora=False, layout="per_head", targets=None
):
    """A tiny model with LoRA (or DoRA) in `layout` on `targets` (default: query, value) whose
    factors are all random and nonzero."""
    loaded = base_model(architecture, num_key_value_heads)
    model.enable_lora(loaded, rank, targets=targets, dora=dora, layout=layout)
    rng = np.random.default_rng(1)
    for variable in loaded.causal_lm.trainable_variables:
        if variable.path.endswith("lora_magnitude"):
            scale = rng.uniform(0.5, 1.5, variable.shape)
            variable.assign((np.asarray(variable.numpy()) * scale).astype(np.float32))
        else:
            variable.assign(rng.normal(0, 0.2, variable.shape).astype(np.float32))
    return loaded


def sample_token_ids(batch=2):
    """`[batch, SEQUENCE_LENGTH]` random ids from a fixed seed, each row starting with <bos>."""
    rng = np.random.default_rng(7)
    ids = rng.integers(4, 320, (batch, SEQUENCE_LENGTH)).astype(np.int32)
    ids[:, 0] = 2  # <bos>
    return ids


def encode(tokenizer, text):
    """Our tokenizer's ids for `text`, as a list of ints."""
    return [int(i) for i in tokenizer(text)]


def keras_logits(loaded, token_ids):
    """The Keras model's logits for `token_ids` with no padding."""
    inputs = loaded.family.backbone_inputs(token_ids, np.ones_like(token_ids, bool))
    return np.asarray(loaded.causal_lm(inputs))


def hf_logits(hf_model, token_ids):
    """A transformers model's logits for `token_ids`, without gradients."""
    import torch

    with torch.no_grad():
        return hf_model(torch.tensor(token_ids, dtype=torch.long)).logits.numpy()


def hf_load(directory):
    """A transformers export loaded in float32, every weight matched; skips without torch."""
    transformers = pytest.importorskip("transformers")
    torch = pytest.importorskip("torch")
    hf_model, info = transformers.AutoModelForCausalLM.from_pretrained(
        str(directory), dtype=torch.float32, output_loading_info=True
    )
    assert not any(info.values()), info  # no missing, unexpected or mismatched weights
    return hf_model.eval()


def peft_logits(base_dir, adapter_dir, token_ids):
    """Logits of the PEFT adapter in `adapter_dir` on the transformers base in `base_dir`."""
    peft = pytest.importorskip("peft")
    tuned = peft.PeftModel.from_pretrained(hf_load(base_dir), str(adapter_dir))
    return hf_logits(tuned.eval(), token_ids)


def random_picture(directory, size):
    """A checked `size` x `size` RGB image of random pixels saved under `directory` (the
    encoder's square size, so both sides' resizing leaves its pixels as they are)."""
    from PIL import Image

    from gemma_tune.data import images

    path = directory / "picture.png"
    pixels = np.random.default_rng(0).integers(0, 256, (size, size, 3)).astype(np.uint8)
    Image.fromarray(pixels).save(path)
    return images.check("test", "image", path=str(path))


def image_prompt_batch(loaded, picture, question):
    """Our ids, padding mask and image arrays for `picture` then `question`, as a prompt."""
    from gemma_tune.data import example
    from gemma_tune.model import vision
    from gemma_tune.training import template

    chat = template.ChatTemplate(loaded.tokenizer, False, vision.image_inputs(loaded))
    turns = (
        example.Turn(example.USER, question, parts=(picture, question)),
        example.Turn(example.MODEL, "-"),
    )
    item = example.Example(turns=turns)
    ids = np.asarray(chat.encode_prompt(item), np.int32)[None]
    arrays = vision.batch_arrays([chat.prompt_images(item)], 1, ids.shape[1])
    return {"token_ids": ids, "padding_mask": np.ones_like(ids, bool), **arrays}


def image_model_logits(loaded, batch):
    """A vision model's logits for an `image_prompt_batch`."""
    from gemma_tune.model import vision

    inputs = loaded.family.backbone_inputs(batch["token_ids"], batch["padding_mask"])
    inputs.update(vision.backbone_inputs(loaded.backbone, batch))
    return np.asarray(loaded.causal_lm(inputs))
