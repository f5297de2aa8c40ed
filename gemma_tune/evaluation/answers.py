"""The answers an evaluation compares: every system's answers to the same prompts.

A system is a model state (`BASE` before tuning, `TUNED` after) and a prompt variant: the
examples as given (suffix ""), and with a retriever also without any context ("") and with the
retrieved passages (`CONTEXT`, "+context"). Answers are greedy; with `eval.sample_temperature`
> 0 each model also answers the main variant's prompts once by sampling (`SAMPLED`,
"+sampled", the same seed for both models), which shows what greedy answers hide: a model
that is right greedily may still, when sampled, run on or answer wrong. Training's evaluation
and `python -m gemma_tune.evaluate` both generate through here, so their answers are the same.
"""

from __future__ import annotations

import dataclasses

BASE, TUNED, CONTEXT, SAMPLED = "base", "tuned", "+context", "+sampled"


def answerable(examples, what: str) -> list:
    """The examples a model can be asked to answer: documents (`{"text"}` rows, language
    modelling) have no prompt, so they are scored by validation loss only and left out of the
    generated answers, with a line saying how many."""
    kept = [example for example in examples if not example.is_document]
    if len(kept) < len(examples):
        print(
            f"{what}: {len(examples) - len(kept)} documents have no prompt to answer; "
            "they are scored by validation loss only",
            flush=True,
        )
    return kept


def variants(examples, retriever=None, top_k: int = 0) -> dict[str, list]:
    """The prompt variants each model answers, keyed by the system-name suffix: as given (""),
    and with a retriever also without any context ("") and with the retrieved passages
    ("+context"), so the effect of the passages is measured on the same questions."""
    if retriever is None:
        return {"": list(examples)}
    from gemma_tune.evaluation import retrieval

    without = [dataclasses.replace(item, context=None) for item in examples]
    return {"": without, CONTEXT: retrieval.attach_context(without, retriever, top_k)}


def main_suffix(prompt_variants) -> str:
    """The variant the report leads with: with retrieved context when there is some."""
    return CONTEXT if CONTEXT in prompt_variants else ""


def sampling_settings(eval_config, seed: int) -> dict:
    """`eval.sample_temperature` and `eval.sample_top_p` as `generate_ids` sampling keywords
    (with `seed`), or {} when the temperature is 0 (greedy answers only)."""
    temperature = eval_config.get("sample_temperature", 0.0)
    if not temperature:
        return {}
    return {"temperature": temperature, "top_p": eval_config.get("sample_top_p", 0.9), "seed": seed}


def answer_variants(
    causal_lm,
    chat_template,
    prompt_variants,
    label,
    max_new_tokens,
    batch_size,
    decode_dtype: str = "float32",
    sampling: dict | None = None,
):
    """Greedy answers of the model as it is now to every variant; keys are system names
    (`label` + the variant's suffix, e.g. "tuned+context"), as the comparison scores them.
    With `sampling` (`sampling_settings`) also one sampled answer to each prompt of the main
    variant, as `label` + its suffix + `SAMPLED`. `decode_dtype`: the weight matrices' dtype
    for decoding (`generate.DECODE_DTYPES`)."""
    from gemma_tune.evaluation import samples

    runs = [(f"{label}{suffix}", examples, {}) for suffix, examples in prompt_variants.items()]
    if sampling:
        suffix = main_suffix(prompt_variants)
        runs.append((f"{label}{suffix}{SAMPLED}", prompt_variants[suffix], sampling))
    answers = {}
    for name, examples, drawn in runs:
        how = f" (temperature {drawn['temperature']}, top_p {drawn['top_p']})" if drawn else ""
        verb = "Sampling" if drawn else "Generating"
        print(f"{verb} {len(examples)} {name} answers{how} ...", flush=True)
        answers[name] = samples.generate_texts(
            causal_lm, chat_template, examples, max_new_tokens, batch_size, decode_dtype, **drawn
        )
    return answers


def answer_prompts(
    causal_lm, chat_template, prompts, max_new_tokens, batch_size, decode_dtype: str = "float32"
) -> list[str]:
    """Greedy answers to free-form prompts (an experiment's fixed qualitative prompts), which
    have no reference answer and are shown, not scored."""
    from gemma_tune.evaluation import samples

    examples = prompt_examples(prompts)
    return samples.generate_texts(
        causal_lm, chat_template, examples, max_new_tokens, batch_size, decode_dtype
    )


def prompt_examples(prompts) -> list:
    """Free-form prompts as one-turn `Example`s (a placeholder answer, left out when the
    prompt is encoded for generation), the way every fixed prompt is answered."""
    from gemma_tune.data import example

    return [
        example.Example(turns=(example.Turn(example.USER, p), example.Turn(example.MODEL, "-")))
        for p in prompts
    ]


def qualitative_records(prompts, answers_by_system: dict[str, list[str]]) -> list[dict]:
    """The comparison's "qualitative" list: each prompt with every system's answer."""
    return [
        {
            "prompt": prompt,
            "answers": {name: answers[i] for name, answers in answers_by_system.items()},
        }
        for i, prompt in enumerate(prompts)
    ]


def examples_for_scoring(prompt_variants: dict[str, list]) -> list:
    """The examples the comparison lists (with retrieved context when there is some, so the
    report shows what the +context systems saw)."""
    return prompt_variants[main_suffix(prompt_variants)]


# The validation metrics a comparison shows base vs tuned: the supervised ones, and for DPO
# runs (`training.objectives.Preference`) the held-out preference scores.
VALIDATION_METRICS = (
    "loss",
    "perplexity",
    "accuracy",
    "target_tokens",
    "likelihood_accuracy",
    "rewards/accuracies",
    "rewards/margins",
)


def loss_record(result: dict, prefix: str = "") -> dict:
    """Picks loss, perplexity and accuracy out of a validation result (keys may be prefixed,
    e.g. "base_val_"), in the shape the comparison's "losses" hold them."""
    return {
        name: result[f"{prefix}{name}"]
        for name in VALIDATION_METRICS
        if f"{prefix}{name}" in result
    }
