"""The server process's malloc settings (glibc only).

A server runs many threads (the event loop, the read pool, one per ingest)
that allocate and free buffers of about a MiB each: request chunks,
RecordBatch reads, answers. glibc serves such a block by mmap and, once it
is freed, raises its mmap threshold to the block's size ("dynamic mmap
threshold"), so later MiB blocks come from the threads' heap arenas. There
freed space is kept, fragmented, per arena: under a mixed load of 8 clients
the server's anonymous memory climbed past its budget and kept climbing
(benchmarks/load.py: peak RssAnon 235 MB against a 231 MB bound after 60 s,
327 MB after 180 s), while Python's own allocations grew by ~5 MB.

A fixed threshold keeps every block of 256 KiB and more in its own mapping,
returned to the system when freed, and so off the arenas: the same 60 s
load peaked at 160 MB, with the same request latencies. Fixing it by
mallopt also turns the dynamic threshold off.

Only the server does this (the library leaves its host process alone), and
not when the user chose a setting through glibc's environment variables.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os

log = logging.getLogger("shoal.api")

M_MMAP_THRESHOLD = -3  # glibc's <malloc.h>
MMAP_THRESHOLD_BYTES = 256 * 1024
_USER_SETTINGS = ("MALLOC_MMAP_THRESHOLD_", "GLIBC_TUNABLES")


def tune_for_server() -> bool:
    """Fix malloc's mmap threshold for this process; True if it was set."""
    if any(v in os.environ for v in _USER_SETTINGS):
        return False
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (musl has no mallopt)
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    ok = mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES) == 1
    if not ok:
        log.warning("could not set malloc's mmap threshold; memory may grow under mixed load")
    return ok
