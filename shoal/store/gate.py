"""The reader gate (shoal_gate, lock-free in C, _native/gate.c).

Readers enter it around every native call that reads the log or the index;
close() refuses new ones and waits for those inside, so the index is freed
and files are closed only when no reader can touch them; compaction asks
whether every reader inside at some moment has left (mark, idle_since)
before it closes the descriptors of the segment files it deleted.
"""
from __future__ import annotations

import time

from .._native import ffi, lib
from ..errors import StoreClosed


class Gate:
    def __init__(self) -> None:
        self.c = ffi.new("shoal_gate *")

    @property
    def closed(self) -> bool:
        return bool(self.c.closed)

    def check_open(self) -> None:
        if self.c.closed:
            raise StoreClosed("the store is closed")

    def __enter__(self) -> None:
        if lib.shoal_gate_enter(self.c):
            raise StoreClosed("the store is closed")

    def __exit__(self, *exc: object) -> None:
        lib.shoal_gate_exit(self.c)

    def mark(self) -> int:
        """A token: idle_since(token) holds once every reader inside now has
        left. Compaction closes deleted segments' fds only then (a reader
        inside a native call may still pread them)."""
        return lib.shoal_gate_mark(self.c)

    def idle_since(self, token: int) -> bool:
        return bool(lib.shoal_gate_idle_since(self.c, token))

    def close(self) -> None:
        """Refuse new readers, then wait for those inside to leave."""
        self.c.closed = 1
        delay = 0.0001
        while lib.shoal_gate_inside(self.c):
            time.sleep(delay)
            delay = min(delay * 2, 0.01)
