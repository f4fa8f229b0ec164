"""The value tally: each PSF's distinct values and how many records of the
log carry each (see _native/tally.c for the table and its rules).

It answers `Store.count` over the whole log in O(1) and `Store.group_count`
without reading the log. What must stay true for that (the engine keeps it):
  - a PSF is reset when it takes a fresh id (registration), with `since` at
    the start of its first range, so the tally holds its key pointers at or
    after `since` in [begin, tail);
  - the ingest and recovery's replay add every key pointer they link;
  - a compaction tallies the pages it drops into a delta (`tally_range`
    with only=the tally) and subtracts it when begin moves past them;
  - a checkpoint saves it with the index, at the same tail.

Bounds: a PSF holds at most `max_values` values of at most
`max_value_bytes` bytes; past either it overflows (`PSFTally.overflow`):
the values it holds keep exact counts, others are unknown, and answers
that need every value read the log instead.
"""
from __future__ import annotations

import contextlib
import struct
import threading
from dataclasses import dataclass
from typing import Any

import orjson

from .._native import check, ffi, lib
from ..errors import CorruptionError, StorageError
from .address import FIRST_ADDRESS

ALL_PSFS = lib.SHOAL_TALLY_ALL
_ITEM = struct.Struct("<qI")
_LOCAL = threading.local()  # per-thread output buffers of readers


@dataclass(frozen=True)
class PSFTally:
    """What the tally knows of one PSF."""
    tallied: bool
    since: int       # key pointers of records below it are not counted
    values: int      # distinct values held
    overflow: bool   # a value was met that the tally could not take


class Tally:
    def __init__(self, max_values: int, max_value_bytes: int, *, _ptr=None):
        ptr = _ptr if _ptr is not None else lib.shoal_tally_new(max_values, max_value_bytes)
        if ptr == ffi.NULL:
            raise StorageError("cannot allocate the value tally")
        self.ptr = ffi.gc(ptr, lib.shoal_tally_free)
        self.max_values = max_values
        self.max_value_bytes = max_value_bytes

    @classmethod
    def unbounded(cls) -> "Tally":
        """A scratch tally (a compaction's delta, a window's counts): no
        bounds, no samples."""
        t = cls(0xFFFFFFFF, 0xFFFFFFFF)
        lib.shoal_tally_set_sampling(t.ptr, 0)
        return t

    @classmethod
    def load(cls, data: bytes, max_values: int, max_value_bytes: int) -> "Tally":
        err = ffi.new("int *")
        ptr = lib.shoal_tally_load(data, len(data), max_values, max_value_bytes, err)
        if ptr == ffi.NULL:
            if err[0] == lib.SHOAL_E_NOMEM:
                raise StorageError("cannot allocate the value tally")
            raise CorruptionError("tally checkpoint file is malformed")
        return cls(max_values, max_value_bytes, _ptr=ptr)

    def dump(self) -> bytes:
        n = lib.shoal_tally_dump_bytes(self.ptr)
        buf = ffi.new("char[]", n)
        check(lib.shoal_tally_dump(self.ptr, buf, n), "tally dump")
        return ffi.buffer(buf, n)[:]

    # ---- the writer (the store's writer lock) ----
    def reset(self, psf_id: int, since: int, *, tallied: bool = True) -> None:
        """Forget psf_id's values; count its key pointers from `since` on
        (or, tallied=False, not at all)."""
        check(lib.shoal_tally_reset(self.ptr, psf_id, since, 1 if tallied else 0), "tally reset")

    def add(self, psf_id: int, canon: bytes, address: int, delta: int = 1) -> None:
        h = lib.shoal_hash(psf_id, canon, len(canon))
        check(lib.shoal_tally_add(self.ptr, psf_id, h, canon, len(canon), address, delta), "tally add")

    def subtract(self, delta: "Tally") -> None:
        check(lib.shoal_tally_merge(self.ptr, delta.ptr, -1), "tally subtract")

    # ---- readers (any thread) ----
    def state(self, psf_id: int) -> PSFTally:
        s = ffi.new("shoal_tally_psf *")
        lib.shoal_tally_state(self.ptr, psf_id, s)
        return PSFTally(bool(s.used), s.since, s.values, bool(s.overflow))

    def count(self, psf_id: int, canon: bytes, since_at_most: int) -> int | None:
        """The count of (psf_id, canon) in [begin, tail) when the tally
        counts psf_id from since_at_most or earlier and can tell (a
        complete tally that lacks the value: 0); else None. One native call
        (the whole-log count's fast path)."""
        out = _LOCAL.__dict__.get("count")
        if out is None:
            out = _LOCAL.count = ffi.new("int64_t *")
        if lib.shoal_tally_count(self.ptr, psf_id, canon, len(canon), since_at_most, out):
            return out[0]
        return None

    def get(self, psf_id: int, canon: bytes) -> int | None:
        """The count of (psf_id, canon), or None when the tally does not
        hold the value (0 is never held: a value counted down is dropped)."""
        count = ffi.new("int64_t *")
        h = lib.shoal_hash(psf_id, canon, len(canon))
        return count[0] if lib.shoal_tally_get(self.ptr, psf_id, h, canon, len(canon), count) else None

    def values(self, psf_id: int, limit: int | None = None) -> list[tuple[bytes, int]]:
        """(canonical value, count) of psf_id, largest count first (ties by
        the values' bytes), at most `limit`."""
        need = ffi.new("uint64_t *")
        cap = 4096
        while True:
            buf = ffi.new("char[]", cap)
            n = lib.shoal_tally_list(self.ptr, psf_id, limit or 0, buf, cap, need)
            if n == lib.SHOAL_E_SPACE:
                cap = need[0] + 4096  # values may arrive meanwhile
                continue
            check(n, "tally list")
            break
        raw = ffi.buffer(buf, need[0])[:]
        out = []
        pos = 0
        unpack = _ITEM.unpack_from
        for _ in range(n):
            count, length = unpack(raw, pos)
            pos += 12
            out.append((raw[pos:pos + length], count))
            pos += length
        return out

    def top(self, psf_id: int, limit: int | None, since_at_most: int) -> list[tuple[Any, int]] | None:
        """(value as a JSON value, count), largest first, at most `limit`,
        when the tally holds every value psf_id has and counts it from
        since_at_most or earlier; else None. The values come from C as
        JSON text (one parse, no per-value decode in Python)."""
        need = ffi.new("uint64_t *")
        buf = _LOCAL.__dict__.get("top")
        while True:
            if buf is None:
                buf = _LOCAL.top = ffi.new("char[]", max(4096, need[0] + 4096))
            n = lib.shoal_tally_list_json(self.ptr, psf_id, limit or 0, since_at_most, buf, len(buf), need)
            if n == lib.SHOAL_E_SPACE:
                buf = None
                continue
            if n == -1:
                return None
            check(n, "tally list")
            return [tuple(pair) for pair in orjson.loads(memoryview(ffi.buffer(buf, need[0])))]

    def stats(self) -> dict:
        s = ffi.new("shoal_tally_stats *")
        lib.shoal_tally_get_stats(self.ptr, s)
        return {"values": s.values, "bytes": s.bytes}

    def free(self) -> None:
        if self.ptr is not None:
            ffi.release(self.ptr)
            self.ptr = None


def tally_range(log, into: Tally, lo: int, hi: int, *, psf_id: int = ALL_PSFS, only: Tally | None = None,
                gate=contextlib.nullcontext(), cancel=None) -> None:
    """Tally into `into` the key pointers (of psf_id, or every PSF's) of the
    records in [lo, hi) of the log, page by page; with `only`, just the
    values `only` holds. Each page is copied out of its frame first (a
    frame may be recycled under a reader, and a tally cannot be taken back).
    Once `cancel` is set it stops and raises Cancelled."""
    lo = max(lo, log.begin_address, FIRST_ADDRESS)
    hi = min(hi, log.tail_address)
    if lo >= hi:
        return
    bits = log.page_bits
    pos = ffi.new("uint64_t *")
    only_ptr = only.ptr if only is not None else ffi.NULL
    for page in range((lo >> bits), ((hi - 1) >> bits) + 1):
        if cancel is not None and cancel.is_set():
            raise Cancelled("the count was cancelled")
        base = page << bits
        with gate:
            data, valid = log.page_bytes(page)
        if not valid:
            continue
        # A record boundary: the page start, or where the log begins in it.
        pos[0] = max(base, FIRST_ADDRESS, log.begin_address if page == log.begin_address >> bits else base)
        buf = data if isinstance(data, ffi.CData) else ffi.from_buffer(data)
        rc = lib.shoal_tally_page(buf, base, valid, pos, lo, hi, psf_id, into.ptr, only_ptr)
        if rc not in (lib.SHOAL_OK, lib.SHOAL_END):
            check(rc, f"tally at address {pos[0]}")


class Cancelled(Exception):
    """tally_range saw its cancel event set."""
