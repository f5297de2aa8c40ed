"""Offline preference-tuning demo: DPO after the supervised demo, on the real Gemma 3 270M.

    python -m gemma_tune.train --experiment=demo                    # step 1: supervised
    python -m gemma_tune.train --experiment=demo_dpo:runs/demo-...  # step 2: DPO from its adapter

The two-step recipe Vertex AI and OpenAI recommend: supervised tuning first, then DPO from the
supervised adapter, which is also DPO's frozen reference. The supervised demo's setup (Gemma 3
270M from the bundled GGUF package, LoRA rank 8, the handbook section in each 128-token prompt,
batch 4, cosine schedule) on the bundled preference pairs (`gemma_tune/bundled/preference_*.jsonl`,
made by `make_preference_data.py`): for every handbook question the correct short answer is
preferred to a wrong span of the same section or to the whole sentence that holds the answer.
Whole sections are held out, so held-out reward accuracy and margin measure unseen passages,
and the held-out answers (supervised vs supervised + DPO, side by side) show whether the
model now picks the right span. The argument is the finished `demo` run to start from; the
learning rate is 30x below the supervised one, as DPO moves far from its reference quickly.
Measured (seed 0): held-out reward accuracy 0 -> 0.80, but the answers got shorter and worse
(exact match 0.648 -> 0.507); docs/preference.md#the-demo has the numbers and what to try.
"""

from gemma_tune import bundled
from gemma_tune import config as config_lib


def get_config(arg=None):
    if not arg:
        raise ValueError(
            "demo_dpo starts from a finished supervised demo run: run "
            "`python -m gemma_tune.train --experiment=demo` first, then "
            "`python -m gemma_tune.train --experiment=demo_dpo:RUN_DIR` with the run directory "
            "it printed"
        )
    config = config_lib.base_config()
    config.description = "Gemma 3 270M, tuned by the demo, learns to prefer correct answers (DPO)"
    config.model.preset = "gemma3_270m_gguf"
    config.model.dtype = "float32"
    config.sequence_length = 128
    config.lora.rank = 8  # the supervised demo's adapter
    config.lora.layout = "per_head"
    config.data.source = "file"
    config.data.path = bundled.path("preference_train.jsonl")
    config.data.validation_path = bundled.path("preference_validation.jsonl")
    config.data.max_examples = 160  # the pairs 40 steps of 4 see: the reference pass scores no more
    config.train.objective = "dpo"
    config.train.init_from = arg
    config.dpo.beta = 0.1
    config.train.batch_size = 4
    config.train.max_steps = 40
    config.train.learning_rate = 1e-4
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
