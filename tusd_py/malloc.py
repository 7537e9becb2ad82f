"""Keeping freed body buffers in the process for reuse (glibc's malloc).

Each buffer a request body arrives in is a new bytes object of up to 256 KiB, freed once
the store has written it. With glibc's defaults, freed memory at the top of the heap goes
back to the kernel as soon as it passes twice the largest buffer freed so far, and the
next buffers fault fresh pages in again (each zeroed, and on virtual machines whose host
takes back free guest memory, each faulted on the host too). With allocations under
MMAP_THRESHOLD kept on the heap and up to TRIM_THRESHOLD of free heap kept for reuse, one
PATCH took 1.2-1.7 s of server CPU per GiB instead of 1.8-2.1 s on the machine the
benchmarks ran on, at the same peak RSS.

`tusd-py serve` applies this in each of its processes. An app mounted in another server
gets the same from the environment: MALLOC_MMAP_THRESHOLD_=1048576
MALLOC_TRIM_THRESHOLD_=33554432.
"""

from __future__ import annotations

import ctypes
import os

MMAP_THRESHOLD = 1024 * 1024
TRIM_THRESHOLD = 32 * 1024 * 1024
# mallopt's parameter numbers, from glibc's malloc.h.
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_ENVIRONMENT = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_")


def keep_freed_buffers() -> bool:
    """Set malloc's thresholds for this process; True if they were set.

    Nothing is changed when the environment already tunes malloc (its settings win) or
    when the C library has no `mallopt` that accepts them (not glibc).
    """
    if any(name in os.environ for name in _ENVIRONMENT) or "glibc.malloc" in os.environ.get("GLIBC_TUNABLES", ""):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    return bool(mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD)) and bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD))
