"""Returns freed memory to the operating system after loading a model.

Loading a preset reads every weight through temporary host buffers (file reads, float
conversions, KerasHub's variable assignment, partly in worker threads) that Python and NumPy
free, but glibc's allocator keeps the freed pages in its arenas, so the process stays larger
than the model it holds for the rest of a run: 0.20 to 0.27 GiB for Gemma 3 270M, whose
float32 weights are 1.0 GiB (`benchmarks/RESULTS.md`, "Resident memory"). `release()` asks glibc to
hand them back.
"""

from __future__ import annotations

import ctypes
import ctypes.util


def release() -> bool:
    """Calls glibc's `malloc_trim(0)`, which returns the free pages of every malloc arena to
    the kernel; a no-op where the C library is not glibc (macOS, musl).

    Returns:
      Whether memory was released (glibc's return value).
    """
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    libc = ctypes.CDLL(name)
    trim = getattr(libc, "malloc_trim", None)
    if trim is None:
        return False
    trim.argtypes = [ctypes.c_size_t]
    return bool(trim(0))
