"""The vision recipe on a real model: Gemma 3 4B instruct (KerasHub `gemma3_instruct_4b`, with
its SigLIP vision encoder) learns the bundled image questions with LoRA, the encoder frozen.

    python -m gemma_tune.train --experiment=vision_gemma3_4b
    python -m gemma_tune.train --experiment=vision_gemma3_4b --set model.quantize=int4
    python -m gemma_tune.train --experiment=vision_gemma3_4b --set data.path=train.jsonl \\
        --set data.validation_path=val.jsonl                        # your own image rows

Needs Kaggle access to the Gemma 3 weights (KAGGLE_USERNAME / KAGGLE_KEY, the licence
accepted) and a GPU or TPU. `tiny_vision`'s data and schedule (the bundled 288 training and 72
validation drawings with a question each), with what a 4B model needs instead: 384 tokens per
row (each image is 256 image tokens: 896x896 pixels, the 64x64 drawings upscaled), LoRA rank 8
at a learning rate for a pretrained model, batches of 2 accumulated to 4, remat, bf16.

Memory, an estimate from the parameter count, not measured (no run has been made here): the
preset has 4,299,915,632 weights (KerasHub's metadata), 3,880,099,328 of them the language
model, bf16 (7.2 GiB), and 419,816,304 the vision encoder and projector, which KerasHub keeps in
float32 (1.6 GiB): 8.8 GiB resident. The frozen encoder's forward pass holds its attention
probabilities transiently (16 heads x 4096 patches squared, float32: 1 GiB per image and
layer), the decoder keeps one block's activations (remat), so a training peak of roughly 12 GiB
is expected: a 16 GB GPU may fit, a 24 GB GPU should. `model.quantize=int4` stores the language
model's projections in 4 bits (the encoder stays float32): about 4.2 GiB resident. With
`lora.vision_targets` the encoder's backward pass keeps those probabilities for every layer
(about 27 GiB per image): use `train.batch_size=1` and a 40 GB+ GPU. docs/vision.md has this
recipe; its results are not measured yet.
"""

from gemma_tune.experiments import tiny_vision


def get_config(arg=None):
    config = tiny_vision.get_config(arg)
    config.description = (
        "Gemma 3 4B instruct with its vision encoder on the bundled image questions"
    )
    config.model.preset = "gemma3_instruct_4b"
    config.model.dtype = "auto"  # bfloat16 on GPU/TPU
    config.sequence_length = 384
    config.train.epochs = 1
    config.train.batch_size = 2
    config.train.grad_accum_steps = 2
    config.train.learning_rate = 1e-4
    config.train.warmup_steps = 8
    config.train.remat = "full"
    config.train.eval_batch_size = 2
    config.train.log_every = 4
    config.train.eval_every = 24
    config.samples.max_new_tokens = 16
    return config
