"""Every command turns a user error into one line on stderr and a non-zero exit, never a
traceback (`--debug` shows one), and `sample` prints only the answer on stdout
(docs/reliability.md, "Command-line errors").

A bad setting, an empty data file, a missing, half-written or damaged run: each case runs the
real command in a subprocess and checks the exit status, that stderr is exactly one line
naming what is wrong, and that no traceback is shown.
"""

import os
import shutil
import subprocess
import sys

import pytest

from gemma_tune import config as config_lib
from gemma_tune import train
from gemma_tune.runs import run_dir


def _command(*args, timeout=300):
    return subprocess.run(
        [sys.executable, "-m", *args], capture_output=True, text=True, timeout=timeout
    )


def _one_error_line(result, *named):
    """Asserts a failed command printed exactly one stderr line, `error: ...`, naming each of
    `named`; returns the line."""
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr[-3000:]
    assert lines[0].startswith("error: "), lines[0]
    for text in named:
        assert text in lines[0], lines[0]
    return lines[0]


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    run_path = str(tmp_path_factory.mktemp("cli") / "run")
    settings = ["train.max_steps=2", "eval.limit=0", "samples.count=1", "eval.prompts=[]"]
    train.run(config_lib.load("tiny", settings), run_path)
    return run_path


@pytest.mark.parametrize(
    "setting, message",
    [
        ("lora.rank=0", "lora.rank=0: must be >= 1"),
        ("train.batch_size=0", "train.batch_size=0: must be >= 1"),
    ],
)
def test_a_bad_setting_is_one_line_and_writes_nothing(tmp_path, setting, message):
    workdir = tmp_path / "run"
    result = _command(
        "gemma_tune.train", "--experiment=tiny", f"--workdir={workdir}", "--set", setting
    )
    assert result.returncode == 2
    _one_error_line(result, message)
    assert not workdir.exists()


def test_an_empty_data_file_is_one_line_naming_it(tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    result = _command(
        "gemma_tune.train", f"--experiment=jsonl_sft:{empty}", f"--workdir={tmp_path / 'run'}"
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        f"error: data.path: {empty} is empty; it holds no examples"
    )
    assert not (tmp_path / "run").exists()


def _copy(run_path, tmp_path):
    copy = str(tmp_path / "copy")
    shutil.copytree(run_path, copy)
    return copy


def _damage_adapter_json(run_path, tmp_path):
    copy = _copy(run_path, tmp_path)
    path = os.path.join(copy, run_dir.ADAPTER_DIR, run_dir.ADAPTER_METADATA)
    text = open(path).read()
    open(path, "w").write(text[: len(text) // 2])
    return copy, path


def _damage_adapter_npz(run_path, tmp_path):
    copy = _copy(run_path, tmp_path)
    path = os.path.join(copy, run_dir.ADAPTER_DIR, run_dir.ADAPTER_WEIGHTS)
    data = open(path, "rb").read()
    open(path, "wb").write(data[: len(data) // 2])
    return copy, path


def _mismatch_adapter(run_path, tmp_path):
    import json

    copy = _copy(run_path, tmp_path)
    path = os.path.join(copy, run_dir.ADAPTER_DIR, run_dir.ADAPTER_METADATA)
    metadata = json.loads(open(path).read())
    name = sorted(metadata["weights"])[0]
    metadata["weights"][name] = [7, 7]
    open(path, "w").write(json.dumps(metadata))
    return copy, name


def _half_written(run_path, tmp_path):
    copy = str(tmp_path / "half")
    os.makedirs(copy)
    shutil.copy(os.path.join(run_path, run_dir.CONFIG), copy)
    return copy, "has no adapter yet"


def test_sample_on_a_missing_run_is_one_line(tmp_path):
    missing = str(tmp_path / "nowhere")
    result = _command("gemma_tune.sample", f"--run={missing}", "--prompt=hi", timeout=120)
    _one_error_line(result, missing, "not a run directory")


def test_sample_on_a_half_written_run_is_one_line(finished_run, tmp_path):
    run_path, message = _half_written(finished_run, tmp_path)
    result = _command("gemma_tune.sample", f"--run={run_path}", "--prompt=hi", timeout=120)
    _one_error_line(result, run_path, message)


def test_sample_on_a_truncated_adapter_json_is_one_line_naming_it(finished_run, tmp_path):
    run_path, damaged = _damage_adapter_json(finished_run, tmp_path)
    result = _command("gemma_tune.sample", f"--run={run_path}", "--prompt=hi", timeout=120)
    _one_error_line(result, damaged, "not valid JSON")


def test_sample_on_a_truncated_adapter_npz_is_one_line_naming_it(finished_run, tmp_path):
    run_path, damaged = _damage_adapter_npz(finished_run, tmp_path)
    result = _command("gemma_tune.sample", f"--run={run_path}", "--prompt=hi", timeout=120)
    _one_error_line(result, damaged, "not a complete .npz")


def test_sample_on_an_adapter_json_not_matching_its_weights_is_one_line(finished_run, tmp_path):
    run_path, name = _mismatch_adapter(finished_run, tmp_path)
    result = _command("gemma_tune.sample", f"--run={run_path}", "--prompt=hi", timeout=120)
    line = _one_error_line(result, run_dir.ADAPTER_WEIGHTS, run_dir.ADAPTER_METADATA, name)
    assert "shape [7, 7] in the metadata" in line


def test_debug_shows_the_traceback(tmp_path):
    missing = str(tmp_path / "nowhere")
    result = _command(
        "gemma_tune.sample", f"--run={missing}", "--prompt=hi", "--debug", timeout=120
    )
    assert result.returncode != 0
    assert "Traceback" in result.stderr and "FileNotFoundError" in result.stderr


@pytest.mark.parametrize(
    "command",
    [
        ("gemma_tune.evaluate",),
        ("gemma_tune.export", "--to=hf", "--out=OUT"),
        ("gemma_tune.cli", "sample", "--prompt=hi"),
    ],
)
def test_every_command_reports_a_damaged_run_in_one_line(finished_run, tmp_path, command):
    run_path, damaged = _damage_adapter_json(finished_run, tmp_path)
    args = [arg.replace("OUT", str(tmp_path / "out")) for arg in command]
    result = _command(*args, f"--run={run_path}", timeout=180)
    _one_error_line(result, damaged)


@pytest.mark.slow  # two model loads and generations (~23 s on 2 CPU cores)
def test_sample_prints_only_the_answer_on_stdout(finished_run):
    args = ("gemma_tune.sample", f"--run={finished_run}", "--prompt=hi", "--max_new_tokens=4")
    answer = _command(*args)
    assert answer.returncode == 0, answer.stderr[-3000:]
    both = _command(*args, "--compare_base")
    assert both.returncode == 0, both.stderr[-3000:]
    assert answer.stdout == both.stdout.split("--- tuned ---\n")[1]


@pytest.mark.slow  # >12 s on a 2-core AVX2 CPU: slow suite (CI runs it)
def test_sample_keeps_its_interactive_hint_off_stdout(finished_run):
    result = subprocess.run(
        [sys.executable, "-m", "gemma_tune.sample", f"--run={finished_run}"],
        input="\n",
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Type a prompt" in result.stderr and result.stdout == ""


@pytest.mark.slow  # >12 s on a 2-core AVX2 CPU: slow suite (CI runs it)
def test_ctrl_c_is_one_line_not_a_traceback(finished_run):
    import signal

    process = subprocess.Popen(
        [sys.executable, "-m", "gemma_tune.sample", f"--run={finished_run}"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # As from a terminal: a shell starts background jobs (`nohup ... &`, CI runners) with
        # SIGINT ignored, which the child would inherit, and Python then never raises
        # KeyboardInterrupt.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    while "Type a prompt" not in process.stderr.readline():  # loaded, waiting for a prompt
        assert process.poll() is None
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert stderr.strip() == "interrupted" and stdout == ""


def test_train_on_a_directory_in_use_is_one_line_naming_the_holder(tmp_path):
    workdir = str(tmp_path / "run")
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from gemma_tune.runs import lock; "
            "held = lock.RunLock(sys.argv[1]).acquire(); print('held', flush=True); "
            "time.sleep(600)",
            workdir,
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        result = _command("gemma_tune.train", "--experiment=tiny", f"--workdir={workdir}")
    finally:
        holder.kill()
        holder.wait()
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        f"error: {workdir} is in use by another run (process {holder.pid}); wait for it to "
        "finish or stop it, or choose another --workdir"
    )
