"""Process-wide malloc settings for the command line (the library never changes them).

occystrap moves data in chunks of about 1 MiB, allocated and freed many times a second in
several threads. glibc serves such blocks with ``mmap`` (or trims them off the heap top)
and gives the pages back to the kernel at once, so every new chunk faults its pages in
again, zero-filled by the kernel: 50,000-70,000 page faults for a 680 MB pull. Raising
the mmap threshold to 64 MiB and the trim threshold to 256 MiB keeps freed chunks in the
heap for reuse: 14,000 faults, 0.1-0.2 s less system time and 6-8% less wall time in the
benchmark's pulls and rewrites (docs/performance.md), for about 10 MiB more peak RSS.
"""

from __future__ import annotations

import ctypes
import sys

M_TRIM_THRESHOLD = -1  # glibc's malloc.h
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 64 << 20
TRIM_THRESHOLD = 256 << 20


def tune() -> bool:
    """Apply the settings where the C library has ``mallopt`` (glibc); True if applied."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(
        mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) and mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD)
    )
