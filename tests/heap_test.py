"""`gemma_tune.model.heap.release` hands freed malloc memory back to the kernel."""

import subprocess
import sys

# A worker thread (as loading uses) allocates 300 MB in 100 KB blocks, interleaved with small
# blocks that stay alive, and frees the big ones: glibc keeps the freed pages in the thread's
# arena, whose heap only shrinks from its top.
PROGRAM = """
import ctypes, ctypes.util, threading
from gemma_tune.model import heap

def rss_mib():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS"):
            return int(line.split()[1]) / 1024

libc = ctypes.CDLL(ctypes.util.find_library("c"))
libc.malloc.restype = ctypes.c_void_p
libc.malloc.argtypes = [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
kept = []

def allocate_and_free():
    blocks = []
    for _ in range(3000):
        blocks.append(libc.malloc(100 * 1024))
        ctypes.memset(blocks[-1], 1, 100 * 1024)
        kept.append(libc.malloc(64))
    for block in blocks:
        libc.free(block)

start = rss_mib()
worker = threading.Thread(target=allocate_and_free)
worker.start()
worker.join()
before = rss_mib()
released = heap.release()
print(released, before - start, before - rss_mib())
"""


def test_release_returns_a_threads_freed_heap_pages():
    result = subprocess.run(
        [sys.executable, "-c", PROGRAM], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-2000:]
    released, kept_after_free, returned = result.stdout.split()
    assert released == "True"
    assert float(kept_after_free) > 200  # free() alone kept most of the 300 MB
    assert float(returned) > 200, (kept_after_free, returned)
