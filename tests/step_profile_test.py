"""`benchmarks/step_profile.py` finds the compiled step's operations in the profiler trace and
puts them in the model's parts (never timed: only which parts are found)."""

import argparse
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent / "benchmarks"))

import step_profile  # noqa: E402


def test_classify_reads_the_fused_operations_sources():
    backward = (
        "jit(_step)/transpose(jvp(decoder_block_0))/attention/query/lora/bsd,dr->bsr/dot_general"
    )
    assert step_profile.classify("dot.3", backward) == ("backward", "LoRA factors", "matmul")
    forward = "jit(_step)/jvp(decoder_block_1)/attention/softmax/reduce_max"
    assert step_profile.classify("ynn_fusion.2", forward) == ("forward", "attention", "other")
    head = "jit(_step)/while/body/_chunk_forward.<locals>.step/dot_general"
    assert step_profile.classify("ynn_fusion.9", head)[1:] == (
        "LM head (vocabulary walk, loss)",
        "matmul",
    )


def test_a_tiny_steps_time_lands_in_attention_mlp_and_head():
    args = argparse.Namespace(model="tiny:gemma3", batch=2, seq_len=32, steps=1, remat=False)
    result = step_profile.profile(args)
    parts = {part for (_, part, _) in result["busy"]}
    directions = {direction for (direction, _, _) in result["busy"]}
    expected = {"attention", "MLP", "LoRA factors", "LM head (vocabulary walk, loss)"}
    assert expected <= parts, parts
    assert directions == {"forward", "backward"}
    assert sum(result["busy"].values()) > 0
