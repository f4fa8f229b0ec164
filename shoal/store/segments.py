"""Segment files: the on-disk part of the hybrid log.

Segment s holds pages [s * pages_per_segment, (s + 1) * pages_per_segment) at
offset (page % pages_per_segment) * page_size. Files are named
`segment-<s>.log` in the store's `log/` directory. File descriptors are
published into the C log view (`segment_fds`) so native readers can pread.

Writes go through a second descriptor opened with O_DIRECT where the file
system allows it: pages move from their (page-aligned) frames to the device
without a copy into the page cache, which on buffered writes costs more CPU
than parsing the records did. Callers write whole 4 KiB blocks from aligned
memory (see HybridLog.flush). Reads use the ordinary descriptor; the kernel
keeps the two coherent.

Who calls what: the flusher thread and the writer (under the store's writer
lock) write and fsync; readers only pread through C or `read`.
"""
from __future__ import annotations

import os
import re
import threading
from pathlib import Path

from ..errors import NativeIOError

_NAME = re.compile(r"^segment-(\d{6,})\.log$")
BLOCK_BYTES = 4096  # O_DIRECT alignment for offsets, lengths and memory
_O_DIRECT = getattr(os, "O_DIRECT", 0)


class SegmentFiles:
    def __init__(self, directory: Path, page_bits: int, segment_page_bits: int, c_fds, n_slots: int):
        self.directory = directory
        self.page_bits = page_bits
        self.segment_page_bits = segment_page_bits
        self._c_fds = c_fds
        self.n_slots = n_slots
        self._fds: dict[int, int] = {}
        self._write_fds: dict[int, int] = {}
        self.direct = bool(_O_DIRECT) and os.environ.get("SHOAL_NO_DIRECT_IO") is None
        self._dirty: set[int] = set()
        self._lock = threading.Lock()  # protects _fds and _dirty
        directory.mkdir(parents=True, exist_ok=True)
        for name in os.listdir(directory):
            m = _NAME.match(name)
            if m:
                self._open(int(m.group(1)))

    def path(self, seg: int) -> Path:
        return self.directory / f"segment-{seg:06d}.log"

    def existing(self) -> list[int]:
        with self._lock:
            return sorted(self._fds)

    def _open(self, seg: int) -> int:
        if seg >= self.n_slots:
            raise NativeIOError(f"log is full: segment {seg} exceeds the address space")
        fd = self._fds.get(seg)
        if fd is None:
            try:
                fd = os.open(self.path(seg), os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as exc:
                raise NativeIOError(f"cannot open {self.path(seg)}: {exc}") from exc
            self._fds[seg] = fd
            self._c_fds[seg] = fd
        return fd

    def _open_write(self, seg: int) -> int:
        wfd = self._write_fds.get(seg)
        if wfd is None:
            fd = self._open(seg)
            wfd = fd
            if self.direct:
                try:
                    wfd = os.open(self.path(seg), os.O_RDWR | _O_DIRECT)
                except OSError:  # e.g. tmpfs: no O_DIRECT; buffered writes it is
                    self.direct = False
            self._write_fds[seg] = wfd
        return wfd

    def _locate(self, address: int) -> tuple[int, int]:
        page = address >> self.page_bits
        seg = page >> self.segment_page_bits
        in_seg = ((page & ((1 << self.segment_page_bits) - 1)) << self.page_bits) | (
            address & ((1 << self.page_bits) - 1))
        return seg, in_seg

    def write(self, address: int, data) -> None:
        """Write bytes of one page at log address `address` (GIL released in pwrite)."""
        seg, off = self._locate(address)
        with self._lock:
            fd = self._open_write(seg)
            self._dirty.add(seg)
        view = memoryview(data)
        try:
            while view:
                n = os.pwrite(fd, view, off)
                view = view[n:]
                off += n
        except OSError as exc:
            raise NativeIOError(f"write to {self.path(seg)} failed: {exc}") from exc

    def read(self, address: int, n: int) -> bytes:
        """Up to n bytes at `address` (short at the end of a segment file)."""
        seg, off = self._locate(address)
        with self._lock:
            fd = self._fds.get(seg)
        if fd is None:
            return b""
        try:
            return os.pread(fd, n, off)
        except OSError as exc:
            raise NativeIOError(f"read of {self.path(seg)} failed: {exc}") from exc

    def sync(self) -> None:
        """fsync every segment written since the last sync."""
        with self._lock:
            dirty = [(s, self._write_fds.get(s, self._fds[s])) for s in sorted(self._dirty)]
            self._dirty.clear()
        for seg, fd in dirty:
            try:
                os.fsync(fd)
            except OSError as exc:
                raise NativeIOError(f"fsync of {self.path(seg)} failed: {exc}") from exc
        if dirty:
            dfd = os.open(self.directory, os.O_RDONLY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)

    def truncate_after(self, address: int) -> None:
        """Drop bytes at and after `address` in its segment and delete later
        segments (recovery: remove a torn tail so it is never read back)."""
        seg, off = self._locate(address)
        with self._lock:
            for s in sorted(self._fds):
                if s > seg:
                    fd = self._fds.pop(s)
                    self._c_fds[s] = -1
                    os.close(fd)
                    wfd = self._write_fds.pop(s, fd)
                    if wfd != fd:
                        os.close(wfd)
                    os.unlink(self.path(s))
            if seg in self._fds:
                os.ftruncate(self._fds[seg], off)
                self._dirty.add(seg)

    def close(self) -> None:
        with self._lock:
            for seg, fd in self._fds.items():
                self._c_fds[seg] = -1
                os.close(fd)
                wfd = self._write_fds.get(seg, fd)
                if wfd != fd:
                    os.close(wfd)
            self._fds.clear()
            self._write_fds.clear()

    def detach_below(self, address: int) -> list[tuple[int, int, int]]:
        """Delete the segment files entirely below `address` (compaction,
        once begin is past them): their C slots become -1 and the files are
        unlinked now; returns (segment, bytes, read fd) for each. The read
        fd is the caller's to close once no reader can be inside a pread
        on it."""
        first_kept = address >> (self.page_bits + self.segment_page_bits)
        gone = []
        with self._lock:
            for seg in sorted(s for s in self._fds if s < first_kept):
                fd = self._fds.pop(seg)
                self._c_fds[seg] = -1
                wfd = self._write_fds.pop(seg, fd)
                if wfd != fd:
                    os.close(wfd)
                self._dirty.discard(seg)
                size = os.fstat(fd).st_size
                try:
                    os.unlink(self.path(seg))
                except FileNotFoundError:
                    pass
                gone.append((seg, size, fd))
        return gone
