"""helpers.utils.allocator: glibc keeps large blocks mapped, so a batch's activations are not page-faulted anew."""

from __future__ import annotations

import subprocess
import sys

import pytest

SCRIPT = """
import ctypes, ctypes.util, resource, sys
from helpers.utils import allocator
libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
libc.memset.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_size_t]
if sys.argv[1] == "tuned":
    assert allocator.keep_large_blocks()
faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for mib in range(1, 17):  # activations of growing size, 1 to 16 MiB, each allocated, written and freed
    size = mib << 20
    p = libc.malloc(size)
    libc.memset(p, 1, size)
    libc.free(p)
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults)
"""


def _page_faults(mode: str) -> int:
    out = subprocess.run([sys.executable, "-c", SCRIPT, mode], capture_output=True, text=True, check=True)
    return int(out.stdout.strip())


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt is Linux's")
def test_freed_activations_stay_mapped_for_the_next_batch():
    largest, total = (16 << 20) // 4096, sum(range(1, 17)) * (1 << 20) // 4096
    assert _page_faults("default") >= 0.9 * total  # each larger block mapped (and faulted in) afresh
    assert _page_faults("tuned") <= 1.5 * largest  # the heap grows to the largest once and is reused
