"""The train_speed benchmark's worker processes: one side each, driven over JSON lines.

`worker` runs inside the process (started as `train_speed.py --worker=ours|peer`): it loads its
side, replies with what it loaded, then answers one JSON command per stdin line on its original
stdout. `Side` is the driver's handle on such a process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import numpy as np
from train_speed_common import reset_peak_rss, status_mib
from train_speed_ours import Ours
from train_speed_peer import Peer

SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "train_speed.py")


def worker(
    side: str, preset: str = "gemma3_270m_gguf", peer_dir: str | None = None, remat: str = "auto"
) -> None:
    """Serves `side` ("ours" or "peer") until the "quit" command; see the module docstring.
    Ours loads `preset` with `train.remat=remat`; the peer loads `peer_dir` (a Hugging Face
    export), else the GGUF."""
    replies = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # library prints go to stderr, never into the reply channel
    start = time.perf_counter()
    runner = Ours(preset, remat) if side == "ours" else Peer(peer_dir)
    ready = {
        "load_s": time.perf_counter() - start,
        "rss_mib": status_mib("VmRSS"),
        # The loading peak: VmHWM belongs to this process's address space, which exec started
        # afresh (wait4's ru_maxrss would also count the driver's memory at fork time).
        "load_peak_rss_mib": status_mib("VmHWM"),
        "trainable_params": runner.trainable_params,
        "versions": runner.versions(),
    }
    if side == "ours":
        ready["dims"] = runner.dims
        ready["remat"] = runner.remat
        ready["tensorflow_loaded"] = "tensorflow" in sys.modules
    else:
        ready["attention"] = runner.attention
    replies.write(json.dumps(ready) + "\n")
    for line in sys.stdin:
        command = json.loads(line)
        op = command["op"]
        if op == "prepare":
            reset_peak_rss()
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
            reply = {"peak_rss_mib": status_mib("VmHWM"), "rss_mib": status_mib("VmRSS")}
        elif op == "matmul":
            reply = {"flops_per_s": runner.matmul()}
        elif op == "quit":
            return
        else:
            raise ValueError(f"unknown command {op!r}")
        replies.write(json.dumps(reply) + "\n")


class Side:
    """The driver's handle on one worker process."""

    def __init__(self, name: str, arguments: tuple[str, ...] = ()):
        self.name = name
        self.process = subprocess.Popen(
            [sys.executable, SCRIPT, f"--worker={name}", *arguments],
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

    def quit(self) -> int:
        """Stops the worker; returns its exit code."""
        self.process.stdin.write(json.dumps({"op": "quit"}) + "\n")
        self.process.stdin.close()
        return self.process.wait()
