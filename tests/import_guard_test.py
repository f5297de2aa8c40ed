"""KerasHub runs without TensorFlow in gemma_tune's commands (`gemma_tune.import_guard`):
nothing that trains, samples or evaluates loads it, the tokenizers give the same ids as
KerasHub's TensorFlow path, user code can still import TensorFlow, and a library user's
process keeps KerasHub as it is.

Each case runs in a fresh interpreter: whether TensorFlow is loaded is a process-wide fact.
"""

import json
import os
import subprocess
import sys

import pytest

from gemma_tune import import_guard

TEXTS = [
    "Hello world",
    "<start_of_turn>user\nWhat time does the workshop open?<end_of_turn>\n",
    "  two  spaces, tabs\tand\nnew lines\n\n",
    "digits 12345 and punctuation!?",
    "unknown pieces: \u00fc\u00f1\u00ee\u00e7\u00f8d\u00e9 \U0001f9a6 \u65e5\u672c",
]


def _run(code: str) -> str:
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout.strip().splitlines()[-1]


def _tokenize_script(first_line: str) -> str:
    return f"""
{first_line}
import json, sys
import gemma_tune
gemma_tune.import_guard.install()
from gemma_tune import testing
tokenizer = testing.tiny_tokenizer("gemma3")
ids = [[int(i) for i in tokenizer(text)] for text in {TEXTS!r}]
back = [str(tokenizer.detokenize(row)) for row in ids]
print(json.dumps({{"ids": ids, "back": back, "tf": "tensorflow" in sys.modules}}))
"""


def test_training_a_tiny_model_never_loads_tensorflow():
    out = _run(
        """
import sys
import numpy as np
import gemma_tune
gemma_tune.import_guard.install()
import keras_hub
from gemma_tune.model.load import load
from gemma_tune.training import optimizer, trainer
from gemma_tune import config, model
loaded = load("tiny:gemma3")
model.enable_lora(loaded, 2)
tuner = trainer.Trainer(loaded.causal_lm, optimizer.make(config.base_config().train, 10))
rows = np.arange(2 * 17).reshape(2, 17) % 300 + 3
batch = {"token_ids": rows[None, :, :-1], "padding_mask": np.ones((1, 2, 16), bool),
         "target_ids": rows[None, :, 1:], "target_weights": np.ones((1, 2, 16), np.float32)}
tuner.train_step(batch)
print("tensorflow" in sys.modules, "tensorflow_text" in sys.modules)
"""
    )
    assert out == "False False"


def test_tokenizer_ids_equal_kerashubs_tensorflow_path():
    guarded = json.loads(_run(_tokenize_script("")))
    # TensorFlow loaded first: the guard refuses nothing and KerasHub tokenizes with
    # tensorflow-text, as it does without gemma_tune.
    with_tf = json.loads(_run(_tokenize_script("import tensorflow")))
    assert not guarded["tf"] and with_tf["tf"]
    assert guarded["ids"] == with_tf["ids"]
    assert guarded["back"] == with_tf["back"]
    assert all(len(row) > 1 for row in guarded["ids"])


def test_user_code_can_still_import_tensorflow():
    out = _run(
        """
import gemma_tune
gemma_tune.import_guard.install()
import keras_hub
import tensorflow as tf
print(int(tf.constant(2) + 3))
"""
    )
    assert out == "5"


@pytest.mark.parametrize(
    "preset, loads", [("gs://bucket/gemma", True), ("/tmp/preset", False), ("gemma3_1b", False)]
)
def test_only_gfile_presets_load_tensorflow(preset, loads):
    out = _run(
        f"""
import sys
import gemma_tune
from gemma_tune import import_guard
import_guard.load_for_preset({preset!r})
print("tensorflow" in sys.modules)
"""
    )
    assert out == str(loads)


def _guards() -> int:
    return sum(isinstance(f, import_guard._KerasHubTensorFlowFinder) for f in sys.meta_path)


def test_install_is_idempotent():
    assert _guards() == 0  # the test process imports gemma_tune as a library
    try:
        import_guard.install()
        import_guard.install()
        assert _guards() == 1
    finally:
        finder = import_guard._KerasHubTensorFlowFinder
        sys.meta_path[:] = [f for f in sys.meta_path if not isinstance(f, finder)]


@pytest.mark.parametrize(
    "argv, command",
    [
        (["python", "-m", "gemma_tune.train", "--experiment=demo"], True),
        (["python", "-X", "importtime", "-m", "gemma_tune.sample"], True),
        (["/venv/bin/python", "/venv/bin/gemma-tune", "train"], True),
        (["python", "-m", "pytest", "-q"], False),
        (["python", "notebook_kernel.py"], False),
        (["python", "-c", "import gemma_tune"], False),
        (["python", "script.py", "-m", "gemma_tune.train"], False),  # the script's arguments
        (["python", "-W", "ignore", "-m", "gemma_tune.evaluate"], True),
    ],
)
def test_commands_are_told_from_library_use(argv, command):
    assert import_guard.is_command_process(argv) is command


# Loaded by the command's interpreter before anything else (PYTHONPATH): at exit it writes
# which of these modules the command had imported.
SITECUSTOMIZE = """
import atexit, json, os, sys
atexit.register(lambda: open(os.environ["IMPORT_PROBE"], "w").write(json.dumps(
    [name for name in ("keras_hub", "tensorflow", "tensorflow_text") if name in sys.modules])))
"""


def test_a_command_runs_without_tensorflow_and_a_library_import_keeps_it(tmp_path):
    (tmp_path / "sitecustomize.py").write_text(SITECUSTOMIZE)
    environ = dict(os.environ, IMPORT_PROBE=str(tmp_path / "imported.json"))
    environ["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")])
    )
    command = [sys.executable, "-m", "gemma_tune.sample", "--model=tiny:gemma3", "--prompt=hi"]
    result = subprocess.run(
        command + ["--max_new_tokens=2"], env=environ, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads((tmp_path / "imported.json").read_text()) == ["keras_hub"]
    out = _run("import sys, gemma_tune, keras_hub; print('tensorflow' in sys.modules)")
    assert out == "True"  # a library user's KerasHub imports TensorFlow as it always did
