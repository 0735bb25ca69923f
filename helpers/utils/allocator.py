"""glibc's allocator kept from handing each large activation back to the kernel (Linux; elsewhere nothing changes).

glibc serves a block above its mmap threshold (128 KiB at start, raised as such blocks are freed) with a fresh
mapping, so every batch's activations are page-faulted and zeroed anew until the threshold has grown; the
frozen layers' cache of 2 091 images at 80 px ran at 710-840 img/s in its first two passes and 1 850-2 150
afterwards. Fixing the threshold at its maximum (32 MiB) and not trimming the heap after each free serves them
from memory already mapped from the first batch: 1 360-1 950 img/s from the first pass (`MALLOC_MMAP_THRESHOLD_`
and `MALLOC_TRIM_THRESHOLD_` do the same from the environment). The price is that freed memory stays with the
process until it ends.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters (malloc.h)
MMAP_THRESHOLD = 32 << 20  # glibc's largest allowed on 64-bit systems
TRIM_THRESHOLD = 1 << 30

_done = False


def keep_large_blocks() -> bool:
    """Set glibc's mmap and trim thresholds once per process; True where glibc took them."""
    global _done
    if _done or not sys.platform.startswith("linux"):
        return _done
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and other C libraries have no mallopt
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    _done = bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
    return _done
