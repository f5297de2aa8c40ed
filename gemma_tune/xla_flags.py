"""XLA flags gemma_tune sets for the programs it compiles, before JAX starts its backends.

`--xla_cpu_enable_concurrency_optimized_scheduler=false`: XLA:CPU's default scheduler orders a
program for parallel work at the price of keeping more buffers alive at once. For a training
step it hoists the backward pass's recomputation forward, so `train.remat` recomputed every
block yet saved no memory (`benchmarks/RESULTS.md`, "Activation rematerialization"). With the
memory-minimizing order instead, the Gemma 3 270M LoRA step at 8 x 256 tokens needs 2.4 GiB of
temporaries instead of 2.8, and 0.3 GiB instead of 2.8 with `train.remat`. It only concerns
the CPU backend; GPU and TPU programs are unchanged.

XLA reads `XLA_FLAGS` once, when JAX first initialises a backend, and no per-program compiler
option has this effect (measured: `Lowered.compile(compiler_options=...)` accepts the option
and keeps the default order). So `import gemma_tune` appends the flag to `XLA_FLAGS`, unless
the variable already names it (a user's own value wins); a process that ran JAX before
importing gemma_tune keeps its own flags.
"""

from __future__ import annotations

import os

# flag name -> gemma_tune's value
DEFAULTS = {"xla_cpu_enable_concurrency_optimized_scheduler": "false"}


def apply(environ=os.environ) -> None:
    """Appends each of `DEFAULTS` that `environ["XLA_FLAGS"]` does not already set."""
    flags = environ.get("XLA_FLAGS", "")
    added = [f"--{name}={value}" for name, value in DEFAULTS.items() if name not in flags]
    if added:
        environ["XLA_FLAGS"] = " ".join([flags, *added]).strip()
