"""The ingest calls a shard has begun: each call's token and its store's
tail when it began, so that a front whose call failed with its shard (the
shard's process killed, Ray restarting it) can ask the restarted shard
how much of that call was stored, and send it again, skipping what was
(ingest.py). Without this a front could not tell a call that never ran
from one whose first records outlived the crash: sending it again whole
would store those twice.

A file of 16-byte entries (token, address) in the shard's directory,
written before the call's first record: it must outlive the process, as
the records it guards do, and for a durable call the machine too (fsynced
before that call's first record). Emptied once it passes MAX_BYTES: a front
asks only about the call it just sent.
"""
from __future__ import annotations

import os
import struct
from pathlib import Path

from ..errors import io_error

FILE = "begun"
_ENTRY = struct.Struct("<QQ")
MAX_BYTES = 1 << 20


class Begun:
    def __init__(self, directory: Path):
        self.path = directory / FILE
        try:
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            size = os.fstat(self._fd).st_size
        except OSError as exc:
            raise io_error("opening", self.path, exc) from exc
        self._end = size - size % _ENTRY.size  # a torn last entry is ignored

    def add(self, token: int, address: int) -> None:
        try:
            if self._end >= MAX_BYTES:
                os.ftruncate(self._fd, 0)
                self._end = 0
            os.pwrite(self._fd, _ENTRY.pack(token, address), self._end)
        except OSError as exc:
            raise io_error("write to", self.path, exc) from exc
        self._end += _ENTRY.size

    def address_of(self, token: int) -> int | None:
        """Where call `token` began (the store's tail then), or None when
        it never began here."""
        span = self.span_of(token)
        return None if span is None else span[0]

    def span_of(self, token: int) -> tuple[int, int | None] | None:
        """Where call `token` began, and where the call after it began (None:
        none did), or None when it never began here. Calls run one at a
        time, so what lies between the two is what the call stored."""
        data = os.pread(self._fd, self._end, 0)
        after = None
        for off in range(self._end - _ENTRY.size, -1, -_ENTRY.size):
            t, address = _ENTRY.unpack_from(data, off)
            if t == token:
                return address, after
            after = address
        return None

    def sync(self) -> None:
        try:
            os.fdatasync(self._fd)
        except OSError as exc:
            raise io_error("fsync of", self.path, exc) from exc

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
