"""Offline preference-tuning demo: DPO teaches the real Gemma 3 270M which answers to prefer.

    python -m gemma_tune.train --experiment=demo_dpo
    python -m gemma_tune.train --experiment=demo_dpo --set train.init_from=RUN_DIR  # after `demo`

The supervised demo's recipe (Gemma 3 270M from the bundled GGUF package, LoRA rank 8, the
handbook section in each 128-token prompt, batch 4, cosine schedule) on the bundled preference
pairs (`gemma_tune/bundled/preference_*.jsonl`, made by `make_preference_data.py`): for every
handbook question the short answer span is preferred to either a wrong span of the same
section or the whole sentence that holds the answer. Whole sections are held out, so the
held-out preference accuracy and reward margin measure unseen passages, and the held-out
answers (base vs tuned, side by side) show whether the model now gives the short answer.
By default DPO starts from the pretrained model; `train.init_from` names a finished `demo`
run to start from its adapter instead (the two-step recipe: supervised, then preferences).
Measured (seed 0): held-out reward accuracy 0 -> 0.94, but the greedy answers degenerate;
docs/preference.md has the numbers and the recipe to try next.
"""

from gemma_tune import bundled
from gemma_tune import config as config_lib


def get_config(arg=None):
    if arg:
        raise ValueError(f"demo_dpo takes no argument, got {arg!r}")
    config = config_lib.base_config()
    config.description = "Gemma 3 270M learns to prefer short, correct answers with DPO (offline)"
    config.model.preset = "gemma3_270m_gguf"
    config.model.dtype = "float32"
    config.sequence_length = 128
    config.lora.rank = 8
    config.data.source = "file"
    config.data.path = bundled.path("preference_train.jsonl")
    config.data.validation_path = bundled.path("preference_validation.jsonl")
    config.data.max_examples = 160  # the pairs 40 steps of 4 see: the reference pass scores no more
    config.train.objective = "dpo"
    config.dpo.beta = 0.1
    config.train.batch_size = 4
    config.train.max_steps = 40
    config.train.learning_rate = 1e-3
    config.train.schedule = "cosine"
    config.train.warmup_steps = 4
    config.train.grad_clip_norm = 1.0
    config.train.weight_decay = 0.0
    config.train.log_every = 5
    config.train.eval_every = 20
    config.train.eval_batches = 0
    config.samples.count = 6
    config.samples.max_new_tokens = 24
    config.eval.limit = 100  # every held-out pair's prompt (71)
    return config
