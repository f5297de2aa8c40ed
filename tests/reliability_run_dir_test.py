"""A run directory is locked for the life of its run, and every file in it is written
atomically: unique temporary names, flushed to disk, renamed into place; a checkpoint saved
again is never absent (docs/reliability.md, "Locking" and "Atomic files")."""

import os
import signal
import subprocess
import sys
import textwrap
import threading
import types

import numpy as np
import pytest

from gemma_tune import config as config_lib
from gemma_tune import train, train_model
from gemma_tune.runs import lock, run_dir, run_start
from gemma_tune.training import checkpoint

# Holds a run directory's lock until killed, as a live run does.
_HOLDER = textwrap.dedent(
    """
    import sys, time
    from gemma_tune.runs import lock

    held = lock.RunLock(sys.argv[1]).acquire()
    print("held", flush=True)
    time.sleep(600)
    """
)


@pytest.fixture
def holder(tmp_path):
    run_path = str(tmp_path / "run")
    process = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, run_path], stdout=subprocess.PIPE, text=True
    )
    assert process.stdout.readline().strip() == "held"
    yield run_path, process
    if process.poll() is None:
        process.send_signal(signal.SIGKILL)
        process.wait()


def test_a_second_run_on_a_locked_directory_is_refused_naming_the_holder(holder):
    run_path, process = holder
    metrics = os.path.join(run_path, run_dir.METRICS)
    with open(metrics, "w") as f:  # the live run's log, which must stay untouched
        f.write('{"step": 5, "loss": 1.0}\n')
    settings = ["train.max_steps=2", "eval.limit=0", "samples.count=0"]
    with pytest.raises(lock.RunLocked, match=f"in use by another run \\(process {process.pid}\\)"):
        train.run(config_lib.load("tiny", settings), run_path)
    assert sorted(os.listdir(run_path)) == [run_dir.LOCK, run_dir.METRICS]
    assert open(metrics).read() == '{"step": 5, "loss": 1.0}\n'


def test_the_lock_is_released_when_its_holder_is_killed(holder):
    run_path, process = holder
    process.send_signal(signal.SIGKILL)
    process.wait()
    with lock.RunLock(run_path):
        pass


class _Stop(Exception):
    """Ends a run early, once the test has looked at its lock."""


def test_the_lock_is_held_for_the_run_and_released_after(tmp_path, monkeypatch):
    run_path = str(tmp_path / "run")
    seen = []

    def check_held(config, *args):
        with pytest.raises(lock.RunLocked, match=f"process {os.getpid()}"):
            lock.RunLock(run_path).acquire()
        seen.append(True)
        raise _Stop

    monkeypatch.setattr(train_model, "prepare_model", check_held)
    with pytest.raises(_Stop):
        train.run(config_lib.load("tiny", ["train.max_steps=1"]), run_path)
    assert seen
    with lock.RunLock(run_path):  # released although the run failed
        pass


def test_temporary_names_are_unique_so_concurrent_writers_never_mix(tmp_path):
    path = str(tmp_path / "result.json")
    both_open = threading.Barrier(2, timeout=10)
    errors = []

    def writer(letter):
        def content(f):
            f.write(letter.encode() * 1000)
            both_open.wait()
            f.write(letter.encode() * 1000)

        try:
            run_dir.write_atomically(path, content)
        except Exception as error:  # noqa: BLE001  (reported below)
            errors.append(error)

    threads = [threading.Thread(target=writer, args=(letter,)) for letter in "AB"]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert open(path).read() in ("A" * 2000, "B" * 2000)
    assert os.listdir(tmp_path) == ["result.json"]


def test_a_write_is_flushed_to_disk_and_readable_by_others(tmp_path, monkeypatch):
    flushed = []
    fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (flushed.append(fd), fsync(fd)))
    previous = os.umask(0o022)
    try:
        run_dir.write_json(str(tmp_path), run_dir.RESULT, {"steps": 1})
    finally:
        os.umask(previous)
    assert len(flushed) == 2  # the file, then the folder holding the rename
    assert os.stat(tmp_path / run_dir.RESULT).st_mode & 0o777 == 0o644


def _stub_trainer(step, value):
    """What `checkpoint.save` reads from a Trainer: variables, arrays and the step."""
    variable = types.SimpleNamespace(path="layer/lora_a")
    return types.SimpleNamespace(
        backbone=types.SimpleNamespace(trainable_variables=[variable]),
        optimizer=types.SimpleNamespace(variables=[types.SimpleNamespace(path="adam/m")]),
        trainable=[np.full(4, value, np.float32)],
        optimizer_state=[np.full(1, value, np.float32)],
        step=step,
    )


def test_a_step_saved_again_is_never_absent(tmp_path, monkeypatch):
    run_path = str(tmp_path)
    final = checkpoint.save(run_path, _stub_trainer(3, 1.0), {"validated_step": None})
    state_file = os.path.join(final, checkpoint.STATE_FILE)
    moments = []

    def watch(function):
        def watched(*args, **kwargs):
            moments.append(os.path.exists(state_file))
            return function(*args, **kwargs)

        return watched

    monkeypatch.setattr(os, "replace", watch(os.replace))
    monkeypatch.setattr(os, "rename", watch(os.rename))
    monkeypatch.setattr(checkpoint.shutil, "rmtree", watch(checkpoint.shutil.rmtree))
    checkpoint.save(run_path, _stub_trainer(3, 1.0), {"validated_step": 3})
    monkeypatch.undo()
    assert moments and all(moments)
    assert [os.path.basename(p) for p in checkpoint.list_complete(run_path)] == ["step-000003"]
    assert run_dir.read_json(final, checkpoint.STATE_FILE)["validated_step"] == 3
    assert os.listdir(run_dir.checkpoints_dir(run_path)) == ["step-000003"]


@pytest.mark.parametrize("name", [checkpoint.STATE_FILE, checkpoint.ARRAYS_FILE])
def test_a_damaged_checkpoint_file_is_named(tmp_path, name):
    final = checkpoint.save(str(tmp_path), _stub_trainer(3, 1.0), {})
    path = os.path.join(final, name)
    data = open(path, "rb").read()
    open(path, "wb").write(data[: len(data) // 2])
    restored = _stub_trainer(0, 0.0)
    restored.set_state = lambda *state: None
    with pytest.raises(ValueError, match=f"{path} is damaged"):
        checkpoint.restore(final, restored)


def test_starting_over_removes_only_what_a_run_wrote(tmp_path):
    for name in (run_dir.CONFIG, run_dir.METRICS, ".result.json.k2j4.tmp", "notes.txt"):
        (tmp_path / name).write_text("x")
    for folder in (run_dir.CHECKPOINTS_DIR, run_dir.EVALUATIONS_DIR, run_dir.ADAPTER_DIR):
        (tmp_path / folder).mkdir()
    with lock.RunLock(str(tmp_path)):
        run_start.remove_run_files(str(tmp_path))
    assert sorted(os.listdir(tmp_path)) == [run_dir.LOCK, "notes.txt"]
