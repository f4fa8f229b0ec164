"""The server process's malloc upkeep (glibc only).

A server runs many threads (the event loop, the read pool, one per ingest)
that allocate and free buffers of about a MiB each: request chunks, gunzip
output, RecordBatch reads, answers. glibc keeps what a thread frees in that
thread's arena, fragmented, and gives back to the system only what lies at
the top of a heap: under a mixed load of 8 clients the server's anonymous
memory climbed past its budget and kept climbing (benchmarks/load.py: peak
RssAnon 235 MB against a 231 MB bound after 60 s, 327 MB after 180 s),
while Python's own allocations grew by ~5 MB.

Two settings, measured on that load (60 s; peak RssAnon, bound 231 MB):
  * at most ARENA_MAX arenas (mallopt M_ARENA_MAX), so freed space is
    shared by all threads instead of kept apart per thread;
  * `malloc_trim(0)` every TRIM_INTERVAL_S seconds from a background
    thread, which hands the free pages of every arena back (madvise), the
    middle of heaps included; a call takes well under a millisecond when
    little is free.
Neither: 235 MB; trimming alone: 215; both: 190. Over 180 s: 327 MB before,
216 MB with both, level at 182-192 MB over the last 90 s. HTTP ingest (curl,
one POST of 100 MB, plain and gzip) kept its speed (paired runs).
Tried and dropped: fixing the mmap threshold at 256 KiB (each MiB buffer its
own mapping) held the load to 160 MB but made HTTP ingest 1.4-2x slower, as
a fresh mapping faults in every page of every buffer.

Only the server does this (the library leaves its host process alone); a
user's own MALLOC_ARENA_MAX or GLIBC_TUNABLES wins over ARENA_MAX.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import threading

log = logging.getLogger("shoal.api")

TRIM_INTERVAL_S = 2.0
ARENA_MAX = 2
M_ARENA_MAX = -8  # glibc's <malloc.h>
_USER_SETTINGS = ("MALLOC_ARENA_MAX", "GLIBC_TUNABLES")


def _libc():
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        return ctypes.CDLL(name)
    except OSError:
        return None


def limit_arenas() -> bool:
    """Cap malloc's arenas at ARENA_MAX (call before the server's threads
    start); True if set, False without glibc or when the user chose."""
    libc = _libc()
    if libc is None or any(v in os.environ for v in _USER_SETTINGS):
        return False
    try:
        mallopt = libc.mallopt
    except AttributeError:  # not glibc
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return mallopt(M_ARENA_MAX, ARENA_MAX) == 1


def _malloc_trim():
    libc = _libc()
    try:
        trim = libc.malloc_trim if libc is not None else None
    except AttributeError:  # not glibc (musl has no malloc_trim)
        return None
    if trim is None:
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim


def start_trimming(interval_s: float = TRIM_INTERVAL_S) -> threading.Event | None:
    """Start the daemon thread that trims malloc's arenas every
    `interval_s`; returns the event that stops it, or None without glibc."""
    trim = _malloc_trim()
    if trim is None:
        return None
    stop = threading.Event()

    def run() -> None:
        while not stop.wait(interval_s):
            trim(0)

    threading.Thread(target=run, name="shoal-malloc-trim", daemon=True).start()
    return stop
