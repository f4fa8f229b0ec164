"""Runs a NativePSFSet over one record the way ingest does: fill the trie slots
(with shoal_parse when json.c provides it, else with the test's span finder),
then shoal_eval and shoal_val_canon per program."""
from __future__ import annotations

import functools

from .psf_oracles import locate, parse_tree

from shoal._native import ffi, lib
from shoal.psf import NativePSFSet


@functools.cache
def native_parse_available() -> bool:
    err = ffi.new("size_t *")
    try:
        return lib.shoal_parse(b"{}", 2, ffi.NULL, ffi.NULL, err) == lib.SHOAL_OK
    except Exception:  # pragma: no cover
        return False


@functools.cache
def native_canon_available() -> bool:
    buf = ffi.new("char[]", 8)
    return lib.shoal_canon(b"1.0", 3, lib.SHOAL_T_NUMBER, buf, 8) == 4


class Runner:
    """Evaluates every program of `psfset` over records."""

    def __init__(self, psfset: NativePSFSet, *, use_parse: bool | None = None):
        self.set = psfset
        self.use_parse = native_parse_available() if use_parse is None else use_parse
        self.slots = ffi.new("shoal_slot[]", max(1, psfset.n_slots))
        self.val = ffi.new("shoal_val *")
        self.cap = 1 << 16
        self.dst = ffi.new("char[]", self.cap)
        self.err = ffi.new("size_t *")

    def fill(self, rec: bytes) -> None:
        if self.use_parse:
            rc = lib.shoal_parse(rec, len(rec), self.set.trie, self.slots, self.err)
            assert rc == lib.SHOAL_OK, (rc, self.err[0], rec[:200])
            return
        tree = parse_tree(rec)
        for i, path in enumerate(self.set.slot_paths):
            s = self.slots[i]
            s.start, s.len, s.type, s.flags = locate(tree, path)

    def canon(self, rec: bytes, prog: int) -> bytes | None:
        """Canonical value of program `prog` over the filled record, or None."""
        rc = lib.shoal_eval(self.set.ptr, prog, rec, self.slots, self.val)
        assert rc == lib.SHOAL_OK, rc
        cap = max(self.cap, len(rec) + 64)
        if cap > self.cap:
            self.cap, self.dst = cap, ffi.new("char[]", cap)
        n = lib.shoal_val_canon(self.set.ptr, rec, self.val, self.dst, self.cap)
        assert n >= 0, n
        return ffi.buffer(self.dst, n)[:] if n else None

    def values(self, rec: bytes) -> list[bytes | None]:
        self.fill(rec)
        return [self.canon(rec, i) for i in range(self.set.n_progs)]
