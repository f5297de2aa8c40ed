"""One run per run directory: `with lock.RunLock(run_path):` for the life of a run.

An exclusive `fcntl.flock` on `RUN_DIR/.lock` (`run_dir.LOCK`), which holds the holder's PID.
The kernel releases it when the holder exits, even on SIGKILL, so a stale lock never blocks a
resume, and a second run on the same directory is refused, naming the PID, before it touches
a file (`truncate_metrics` and `checkpoint.remove_partial` run only under the lock). The lock
is advisory and per machine: hosts sharing a network disk are not covered.
"""

from __future__ import annotations

import errno
import fcntl
import os

from gemma_tune.runs import run_dir, run_start


class RunLocked(OSError):
    """Another live process holds the run directory's lock; the message names its PID."""


class RunLock:
    """An exclusive lock on a run directory for the life of a run (`with RunLock(path):`).

    An `fcntl.flock` on `RUN_DIR/.lock`: the kernel releases it when the holder exits, even
    on SIGKILL, so a stale lock never blocks a resume. The file holds the holder's PID, named
    when a second run is refused.
    """

    def __init__(self, run_path: str):
        self.run_path = run_path
        self.path = os.path.join(run_path, run_dir.LOCK)
        self._fd = None

    def acquire(self) -> RunLock:
        """Creates the directory if needed and takes the lock.

        Raises:
          RunLocked: another process holds it (its PID named).
          OSError: the directory cannot be created or written.
        """
        run_start.make_writable_dir(self.run_path)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            holder = os.read(fd, 64).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            if error.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise RunLocked(
                    f"{self.run_path} is in use by another run (process {holder}); wait for it "
                    "to finish or stop it, or choose another --workdir"
                ) from None
            raise
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return self

    def release(self) -> None:
        """Releases the lock (the file stays; an unlocked file means nobody holds it)."""
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc_info) -> None:
        self.release()
