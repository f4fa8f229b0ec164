"""Keyed stores: point reads, updates and deletes, FASTER-style.

A store opened with `key=<JMESPath>` computes every record's key at ingest
(in C when the expression compiles natively) and links the record into the
key's chain, like a PSF with the reserved id SHOAL_KEY_PSF_ID. The newest
record on a key's chain is the key's current version; a tombstone (a record
flagged SHOAL_RF_TOMBSTONE whose only key pointer is the key's) ends it.

  - get: walk the key's chain newest first, take the first record whose key
    equals it; a tombstone there means "deleted".
  - liveness of a record (for PSF queries, which return live versions by
    default): one native call per batch checks, for each record, that it is
    the newest version of its own key and not a tombstone (shoal_live).

Nothing here takes the writer lock; Store.delete_key does, around append.
"""
from __future__ import annotations

import threading
from typing import Any

from .._native import check, ffi, lib
from ..errors import InvalidArgument
from ..psf import canonical, value_hash

KEY_PSF_ID = lib.SHOAL_KEY_PSF_ID


def key_canon(key: Any) -> bytes:
    """Canonical bytes of a key given by a caller: a string or a number."""
    if isinstance(key, bool) or not isinstance(key, (str, int, float)):
        raise InvalidArgument(f"a key is a string or a number, not {type(key).__name__}")
    canon = canonical(key)
    if canon is None:
        raise InvalidArgument(f"not a usable key: {key!r}")
    return canon


class KeyIndex:
    """Native helpers over a keyed store's log and index (any thread)."""

    def __init__(self, log, index) -> None:
        self._log = log
        self._index = index
        self._local = threading.local()

    def newest(self, canon: bytes) -> int | None:
        """Address of the newest record (or tombstone) with this key."""
        job = ffi.new("shoal_walk_job *")
        out = ffi.new("uint64_t[1]")
        keep = ffi.new("char[]", canon)
        job.next_kp = 0
        job.lo = self._log.begin_address
        job.hi = self._log.tail_address
        job.hash = value_hash(KEY_PSF_ID, canon)
        job.canon = keep
        job.canon_len = len(canon)
        job.psf_id = KEY_PSF_ID
        job.out = out
        job.cap = 1
        rc = lib.shoal_walk(job, self._log.c, self._index.ptr)
        if job.err:
            check(job.err, f"key chain walk at address {job.err_address}")
        check(rc, "key chain walk")
        return int(out[0]) if job.n_out else None

    def live_mask(self, addresses: list[int]) -> list[bool]:
        """For each address: is the record there the live version of its key?"""
        n = len(addresses)
        if not n:
            return []
        local = self._local
        if getattr(local, "cap", 0) < n:
            local.cap = max(n, 1024)
            local.addrs = ffi.new("uint64_t[]", local.cap)
            local.live = ffi.new("uint8_t[]", local.cap)
            local.job = ffi.new("shoal_live_job *")
        job = local.job
        local.addrs[0:n] = addresses
        job.addrs = local.addrs
        job.n = n
        job.live = local.live
        rc = lib.shoal_live(job, self._log.c, self._index.ptr)
        check(rc, f"key liveness check at address {job.err_address}")
        return list(map(bool, ffi.unpack(local.live, n)))

    def filter_live(self, addresses: list[int]) -> list[int]:
        mask = self.live_mask(addresses)
        return [a for a, ok in zip(addresses, mask) if ok]
