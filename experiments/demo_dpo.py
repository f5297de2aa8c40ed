"""Offline preference-tuning demo: DPO after the supervised demo, on the real Gemma 3 270M.

    python -m gemma_tune.train --experiment=demo                    # step 1: supervised
    python -m gemma_tune.train --experiment=demo_dpo:runs/demo-...  # step 2: DPO from its adapter

The two-step recipe Vertex AI and OpenAI recommend: supervised tuning first, then DPO from the
supervised adapter, which is also DPO's frozen reference. The supervised demo's setup (Gemma 3
270M from the bundled GGUF package, LoRA rank 8, the handbook section in each 128-token prompt,
batch 4, cosine schedule) on pairs of the supervised demo's own mistakes
(`gemma_tune/bundled/mistakes_*.jsonl`, written by `python -m gemma_tune.pairs --samples=4` from
the seed-0 `demo` run): for each training question, the correct answer preferred to the
answer the demo gave where it was wrong, else to a wrong answer sampled from it (most run on
past the right answer into junk tokens), each rejected answer cut after its first wrong token
(304 pairs, one epoch); the held-out pairs ask about 8 sections never trained on. The loss adds
the chosen answers' NLL (`dpo.rpo_alpha`, RPO), which keeps the preferred answers likely while
the margin grows. Both models also answer every held-out prompt once by sampling
(`eval.sample_temperature`), since the mistakes DPO is shown are mostly sampled ones. The
argument is the finished `demo` run to start from. Measured: docs/preference.md#the-demo.
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
    config.data.path = bundled.path("mistakes_train.jsonl")
    config.data.validation_path = bundled.path("mistakes_validation.jsonl")
    config.data.max_examples = 0
    config.train.objective = "dpo"
    config.train.init_from = arg
    config.dpo.beta = 0.1
    config.dpo.rpo_alpha = 1.0
    config.train.batch_size = 4
    config.train.epochs = 1  # 76 steps of 4 pairs
    config.train.learning_rate = 1e-4
    config.train.schedule = "cosine"
    config.train.warmup_steps = 4
    config.train.grad_clip_norm = 1.0
    config.train.weight_decay = 0.0
    config.train.log_every = 5
    config.train.eval_every = 38  # at the start, halfway and the end
    config.train.eval_batches = 0
    config.samples.count = 6
    config.samples.max_new_tokens = 24
    config.eval.limit = 100  # every held-out pair's prompt
    config.eval.sample_temperature = 1.0  # and one sampled answer to each
    return config
