"""What answering the fixed prompts at each validation costs (`train.generate_every_eval`).

    python benchmarks/progress_generations.py [--preset=tiny:gemma3] [--prompts=4] [--new_tokens=32]

Prepares the model as a LoRA run does, answers the prompts once with the base weights through
`answers.answer_prompts` (what a run does before training, compiling the decoder), then trains
a few steps and answers them with the trainer's weights (`ProgressGenerations`), as each
validation does. Prints the seconds of each answering and whether it compiled anything (JAX's
compilation count, from `jax.monitoring`): the weights are arguments of the compiled decoder,
so only the base answers should compile.
"""

from __future__ import annotations

import argparse
import platform
import time

import numpy as np

import gemma_tune  # noqa: F401  (JAX backend)
from gemma_tune import config as config_lib
from gemma_tune.evaluation import answers, progress_generations
from gemma_tune.model import prepare
from gemma_tune.training import batching, optimizer, template, tracking, trainer

PROMPTS = [
    "Repeat after me: the cat likes red apples.",
    "What colour is the sky?",
    "When does the makerspace open?",
    "How long does a welcome tour last?",
]


def main() -> None:
    import jax

    parser = argparse.ArgumentParser()
    parser.add_argument("--preset", default="tiny:gemma3")
    parser.add_argument("--prompts", type=int, default=4)
    parser.add_argument("--new_tokens", type=int, default=32)
    args = parser.parse_args()
    compiles = []
    jax.monitoring.register_event_duration_secs_listener(
        lambda event, seconds, **_: (
            compiles.append(event)
            if event == "/jax/core/compile/backend_compile_duration"
            else None
        )
    )
    config = config_lib.load("tiny:gemma3", [f"model.preset={args.preset}"])
    loaded = prepare.prepare(args.preset, prepare.Tuning.from_config(config), "float32").loaded
    chat_template = template.ChatTemplate(loaded.tokenizer)
    prompts = (PROMPTS * args.prompts)[: args.prompts]

    def timed(label, answer):
        before, started = len(compiles), time.perf_counter()
        answer()
        seconds = time.perf_counter() - started
        print(f"| {label} | {seconds:.2f} | {len(compiles) - before} |", flush=True)

    print(
        f"{args.preset}, {len(prompts)} prompts x {args.new_tokens} new tokens at most, "
        f"{platform.processor() or platform.machine()}, {jax.devices()[0].platform}"
    )
    print("| answering | seconds | compilations |\n| --- | --- | --- |")
    timed(
        "base (before training)",
        lambda: answers.answer_prompts(
            loaded.causal_lm, chat_template, prompts, args.new_tokens, 8
        ),
    )
    tuner = trainer.Trainer(loaded.causal_lm, optimizer.make(config.train, 100))
    progress = progress_generations.ProgressGenerations(
        loaded.causal_lm,
        chat_template,
        prompts,
        args.new_tokens,
        8,
        None,
        tracking.Trackers(config, run_path=""),
    )
    encoded = [
        chat_template.encode(item, config.sequence_length)
        for item in answers.prompt_examples(prompts)
    ]
    batch = batching.train_batch(
        encoded, np.arange(len(encoded)), 0, 2, 1, config.sequence_length, chat_template.pad_id, 0
    )
    for validation in range(1, 4):
        for _ in range(2):
            tuner.train_step(batch)
        timed(f"validation {validation} (step {tuner.step})", lambda: progress(tuner.step, tuner))


if __name__ == "__main__":
    main()
