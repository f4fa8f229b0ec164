"""The hash index: one FASTER-style table holding the head of every
(PSF, value) chain (see _native/index.c for the layout and growth).

The writer (ingest, replay) inserts through C; readers look up heads from any
thread. Growth runs on the writer thread between ingest calls.
"""
from __future__ import annotations

from dataclasses import dataclass

from .._native import check, ffi, lib
from ..errors import CorruptionError, StorageError

# Grow when the table averages this many entries per 7-slot bucket.
GROW_ENTRIES_PER_BUCKET = 4


@dataclass(frozen=True)
class IndexStats:
    buckets: int
    overflow_buckets: int
    entries: int
    bytes: int


class HashIndex:
    def __init__(self, bucket_bits: int = 14, *, _ptr=None):
        ptr = _ptr if _ptr is not None else lib.shoal_index_new(bucket_bits)
        if ptr == ffi.NULL:
            raise StorageError("cannot allocate the hash index")
        self.ptr = ffi.gc(ptr, lib.shoal_index_free)

    @classmethod
    def load(cls, data: bytes) -> "HashIndex":
        err = ffi.new("int *")
        ptr = lib.shoal_index_load(data, len(data), err)
        if ptr == ffi.NULL:
            if err[0] == lib.SHOAL_E_NOMEM:
                raise StorageError("cannot allocate the hash index")
            raise CorruptionError("index checkpoint file is malformed")
        return cls(_ptr=ptr)

    def dump(self) -> bytes:
        n = lib.shoal_index_dump_bytes(self.ptr)
        buf = ffi.new("char[]", n)
        check(lib.shoal_index_dump(self.ptr, buf, n), "index dump")
        return ffi.buffer(buf, n)[:]

    def stats(self) -> IndexStats:
        s = ffi.new("shoal_index_stats *")
        lib.shoal_index_get_stats(self.ptr, s)
        return IndexStats(s.buckets, s.overflow_buckets, s.entries, s.bytes)

    def lookup(self, value_hash: int) -> int:
        return lib.shoal_index_lookup(self.ptr, value_hash)

    def maybe_grow(self) -> bool:
        """Double the table if it is too full. Writer only."""
        s = ffi.new("shoal_index_stats *")
        lib.shoal_index_get_stats(self.ptr, s)
        if s.entries > GROW_ENTRIES_PER_BUCKET * s.buckets:
            check(lib.shoal_index_grow(self.ptr), "index growth")
            return True
        return False

    def count_below(self, address: int) -> int:
        """Entries whose chain head lies below `address`. Any thread: a
        reader's pass over the table, taking no lock."""
        return lib.shoal_index_count_below(self.ptr, address)

    def prune(self, below: int, min_bucket_bits: int) -> int:
        """Rebuild the table without the entries below `below` (chains a
        compaction dropped whole: lookups already treat them as empty, so
        only memory changes), shrinking it to the smallest size, not under
        min_bucket_bits, that holds the rest at half the growth load.
        Writer only. Returns how many entries were dropped."""
        before = self.stats()
        live = before.entries - self.count_below(below)
        bits = max(min_bucket_bits, 1)
        while bits < 32 and live * 2 > GROW_ENTRIES_PER_BUCKET << bits:
            bits += 1
        bits = min(bits, before.buckets.bit_length() - 1)  # never larger than it was
        check(lib.shoal_index_prune(self.ptr, below, bits), "index prune")
        return before.entries - self.stats().entries

    def free(self) -> None:
        """Release native memory now (after close; no reader may use it)."""
        if self.ptr is not None:
            ffi.release(self.ptr)
            self.ptr = None
