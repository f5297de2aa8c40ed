"""Measurement helpers shared by the train_speed benchmark's driver and its two workers.

The LoRA rank both sides train, the matmul peak probe (also used by gpu_gemma2b.py), the
process memory readers, the project's training hyperparameters and the token rows both sides
train on.
"""

from __future__ import annotations

import time

import numpy as np

RANK = 4
MATMUL_SIZE = 4096


def status_mib(field: str) -> float:
    """A `/proc/self/status` memory field (VmRSS, VmHWM) in MiB."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    raise KeyError(field)


def reset_peak_rss() -> None:
    """Resets this process's RSS high-water mark (VmHWM) to its current RSS (Linux >= 4.0)."""
    with open("/proc/self/clear_refs", "w") as clear_refs:
        clear_refs.write("5")


def matmul_rate(run, repeats: int = 3, size: int = MATMUL_SIZE) -> float:
    """Best FLOP/s of `run()` (one size x size matmul, blocking) over `repeats` timed calls."""
    run()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best


def train_settings():
    """The project's default training hyperparameters (`config.base_config().train`)."""
    from gemma_tune import config

    return config.base_config().train


def token_rows(count: int, seq_len: int, preset: str = "gemma3_270m_gguf") -> np.ndarray:
    """`[count, seq_len + 1]` int32 ids: BOS then consecutive windows of the bundled handbook,
    in `preset`'s vocabulary."""
    import sentencepiece

    from gemma_tune import bundled, model

    tokenizer = model.load_tokenizer(preset)
    encoder = sentencepiece.SentencePieceProcessor(model_proto=tokenizer.proto)
    with open(bundled.path("handbook.md")) as handbook:
        ids = np.asarray(encoder.encode(handbook.read()), np.int32)
    ids = np.resize(ids, count * seq_len)  # wraps around if the handbook is too short
    rows = ids.reshape(count, seq_len)
    bos = np.full((count, 1), int(tokenizer.start_token_id), np.int32)
    return np.concatenate([bos, rows], axis=1)
