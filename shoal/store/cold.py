"""Cold segment files: a segment's written log bytes as compressed frames.

    segment-<s>.z:  frame | frame | ... [| table | footer]

Each frame (store/frames.py) holds `frame_bytes` raw log bytes and names the
address of its first one. A file grows by `append` (whole frames, fsynced)
while its segment is being written; once the segment is all cold it is
`finish`ed: the table (the file offset of every frame, u64 each, little-
endian) and the footer (FOOTER, 40 bytes: where the table starts, how many
frames and raw bytes, from which address, a CRC32C of the table and
itself). A point read finds its frame by arithmetic (frames hold equal raw
lengths, the last may be shorter) and decompresses that one frame.
`write` makes a finished file in one go (temporary name, rename).

Must stay true:
  - A finished file never changes. One that is not (growing, or its footer
    damaged) is read by walking its frames from the start, each verified, up
    to the first that does not check, and what follows is cut off: a crash
    in an append leaves a torn last frame, whose pages are still raw (they
    are punched from the raw file only after the append is fsynced).
  - Reads past the last good frame fail (ValueError, CorruptionError),
    never return other bytes.
"""
from __future__ import annotations

import os
import struct
from array import array
from pathlib import Path

from .._native import ffi, lib
from ..errors import CorruptionError, io_error
from ..files import TEMP_SUFFIX, fsync_dir
from .frames import Codec

FOOTER = struct.Struct("<QQQIIII")  # first address, raw bytes, table offset, frames, frame bytes, magic, crc
MAGIC = 0x434C4853  # "SHLC"
_HOLE: int = lib.SHOAL_HOLE_BLOCK  # holes are punched in whole blocks of this many bytes


def _crc(data) -> int:
    return lib.shoal_crc32c(0, ffi.from_buffer(data), len(data))


def write(path: Path, codec: Codec, address: int, raw) -> int:
    """A finished cold file of log bytes [address, address + len(raw)) in one
    go: made under a temporary name, then renamed. Returns its size."""
    tmp = path.with_name(path.name + TEMP_SUFFIX)
    tmp.unlink(missing_ok=True)
    cs = ColdSegment(tmp, codec, address, capacity_bytes=len(raw), create=True)
    try:
        if len(raw):
            cs.append(raw)
        cs.finish()
    finally:
        cs.close()
    os.replace(tmp, path)
    fsync_dir(path.parent)
    return path.stat().st_size


class Interrupted(Exception):
    """A conversion was stopped between chunks (the store is closing, or the
    segment went away): no cold file was made."""


def _write_all_at(fd: int, data, at: int) -> None:
    view = memoryview(data)
    while view:
        k = os.pwrite(fd, view, at)
        view, at = view[k:], at + k


class ColdSegment:
    """A segment's cold file: its frame table in memory, its bytes read with
    pread (the page cache keeps the compressed bytes). One that is
    `finished` has its table and footer and never changes; one that is not
    grows by `append` (the converter compresses a segment's pages as they
    are written, not only whole segments) and is read, at open, by walking
    its frames (`_walk`)."""

    def __init__(self, path: Path, codec: Codec, address: int | None = None, *, capacity_bytes: int = 0,
                 create: bool = False):
        """Open the cold file `path` (create: a new empty one) of the segment
        starting at log address `address`; `capacity_bytes`: the most raw
        bytes it may come to hold (the segment's size), for C's view."""
        self.path = path
        self.codec = codec
        self.capacity_bytes = capacity_bytes
        flags = os.O_RDWR | (os.O_CREAT | os.O_EXCL if create else 0)
        self.fd = os.open(path, flags, 0o644)
        self.punched = 0  # file bytes this process freed (punch_below)
        try:
            self._load(address)
        except BaseException:
            os.close(self.fd)
            raise
        self._c = None

    def _load(self, address: int | None) -> None:
        size = os.fstat(self.fd).st_size
        self.finished = False
        if size >= FOOTER.size:
            tail = os.pread(self.fd, FOOTER.size, size - FOOTER.size)
            first, raw, table_at, n, frame_bytes, magic, crc = FOOTER.unpack(tail)
            if magic == MAGIC and table_at + 8 * n + FOOTER.size == size and address in (None, first):
                table = os.pread(self.fd, 8 * n, table_at)
                if _crc(table + tail[:-4]) == crc and frame_bytes:
                    self.address, self.raw_bytes, self.frame_bytes = first, raw, frame_bytes
                    self.offsets = array("Q")
                    self.offsets.frombytes(table)
                    self.frames_end = table_at
                    self.finished = True
                    self.checked_bytes = None  # the frames are checked when recovery asks (check)
                    self.lowest = self.address  # (check: above a hole compaction punched)
                    return
        self._walk(size, address)

    @property
    def repaired(self) -> bool:
        """Read by walking its frames: not finished (growing, or its footer
        did not check)."""
        return not self.finished

    def _walk(self, size: int, address: int | None) -> None:
        """No good footer: the frames from the start, each checked (header
        and compressed bytes; a read checks the raw bytes when it
        decompresses them), up to the first that does not check or follow
        (what lies after it is not read, and is cut off, so appends go on
        from there). One native pass: no frame is decompressed."""
        pos, offsets, first, raw, unit = self._frames(size, address)
        self.address = address if address is not None else first
        self.frame_bytes = unit or self.codec.frame_bytes
        self.lowest = first if offsets else self.address
        # frames a compaction freed (below `lowest`) stay in the table as
        # empty ones, which no read takes
        gone = (self.lowest - self.address) // self.frame_bytes
        self.offsets = array("Q", [offsets[0]] * gone) if gone else array("Q")
        self.offsets.extend(offsets)
        self.raw_bytes = self.checked_bytes = (self.lowest - self.address) + raw
        self.frames_end = pos
        if size > pos:
            os.ftruncate(self.fd, pos)  # a torn frame (or a damaged footer's table): appends go on from pos

    def _frames(self, size: int, address: int | None) -> tuple[int, array, int, int, int]:
        """The frames in the file's first `size` bytes that check and follow
        each other (shoal_frames_walk; after the hole a compaction punched
        at its start, if any): (bytes up to their end, their offsets, first
        address, their raw bytes, raw bytes per frame)."""
        data = os.pread(self.fd, size, 0)
        cap = size // 40 + 1  # a frame takes at least a header and a few bytes
        offs = ffi.new("uint64_t[]", cap)
        n, first, raw = ffi.new("uint64_t *"), ffi.new("uint64_t *"), ffi.new("uint64_t *")
        unit = ffi.new("uint32_t *")
        pos = lib.shoal_frames_walk(data, len(data), 0xFFFFFFFFFFFFFFFF if address is None else address, offs, cap,
                                    n, first, raw, unit)
        offsets = array("Q")
        offsets.frombytes(ffi.buffer(offs, 8 * n[0]))
        if offsets and offsets[0] and address is not None and unit[0] and (first[0] - address) % unit[0]:
            unit[0] = self.codec.frame_bytes  # after a hole, a short last frame only: its length is not the unit
        return pos, offsets, first[0], raw[0], unit[0]

    def check(self) -> int:
        """How many of its raw bytes lie in frames whose headers and
        compressed bytes check, counted from its first address (no frame is
        decompressed; a read checks the raw bytes when it does): all of them
        unless a frame was damaged. Frames a compaction freed count as
        checked: no read goes below begin. Recovery verifies the cold log
        by this; it is worked out once."""
        if self.checked_bytes is None:
            _, offsets, first, raw, _ = self._frames(self.frames_end, self.address)
            self.lowest = first if offsets else self.address
            self.checked_bytes = (self.lowest - self.address) + raw
        return self.checked_bytes

    def punch_below(self, address: int) -> int:
        """Free the file system blocks of the frames wholly below `address`
        (compaction: begin is there and no reader is below it), keeping the
        file's size, table and footer. Returns the bytes freed (0: nothing
        to free, or the file system cannot punch holes: OSError)."""
        # the last frame stays: a growing file is read back from the first
        # frame after the hole, and must have one
        i = min((address - self.address) // self.frame_bytes, len(self.offsets) - 1)
        if i <= 0:
            return 0
        upto = self.offsets[i] // _HOLE * _HOLE
        if upto <= self.punched:
            return 0
        before = os.fstat(self.fd).st_blocks
        rc = lib.shoal_punch_hole(self.fd, 0, upto)
        if rc < 0:
            raise OSError(-rc, os.strerror(-rc))
        self.punched = upto
        self.check()  # (a finished file's `lowest` is known once checked)
        self.lowest = max(self.lowest, self.address + i * self.frame_bytes)
        keep = self.offsets[i]
        for j in range(i):
            self.offsets[j] = keep  # empty: a read there fails, as below begin it must
        self.publish()
        return max(0, before - os.fstat(self.fd).st_blocks) * 512

    def append(self, raw) -> None:
        """Compress log bytes [address + raw_bytes, + len(raw)) and write them
        after the frames, fsynced; readers see them after `publish`."""
        if self.finished:
            raise ValueError(f"{self.path.name} is finished")
        if self.raw_bytes % self.frame_bytes:
            raise ValueError("a cold file grows only after whole frames")
        frames, offs = self.codec.compress(self.address + self.raw_bytes, raw)
        try:
            view = memoryview(frames)
            at = self.frames_end
            while view:
                k = os.pwrite(self.fd, view, at)
                view, at = view[k:], at + k
            os.fsync(self.fd)
        except OSError as exc:
            os.ftruncate(self.fd, self.frames_end)
            raise io_error("write of", self.path, exc) from exc
        self.offsets.extend(self.frames_end + o for o in offs)
        self.frames_end += len(frames)
        if self.checked_bytes == self.raw_bytes:  # frames this process wrote check
            self.checked_bytes += len(raw)
        self.raw_bytes += len(raw)

    def finish(self) -> None:
        """Write the frame table and the footer (the segment is whole)."""
        table = self.offsets.tobytes()
        head = FOOTER.pack(self.address, self.raw_bytes, self.frames_end, len(self.offsets), self.frame_bytes,
                           MAGIC, 0)[:-4]
        try:
            _write_all_at(self.fd, table + head + struct.pack("<I", _crc(table + head)), self.frames_end)
            os.fsync(self.fd)
        except OSError as exc:
            raise io_error("write of", self.path, exc) from exc
        self.finished = True

    def c_view(self):
        """The shoal_cold readers in C use (kept alive by this object), with
        room for capacity_bytes of frames; `publish` updates it."""
        if self._c is None:
            cap = max(len(self.offsets), -(-self.capacity_bytes // self.frame_bytes)) + 1
            offs = ffi.new("uint64_t[]", cap)
            c = ffi.new("shoal_cold *")
            c.fd = self.fd
            c.frame_bytes = self.frame_bytes
            c.address = self.address
            c.offsets = offs
            self._c = (c, offs, cap)
            self.publish()
        return self._c[0]

    def publish(self) -> None:
        """Show readers in C the frames appended so far: the table first,
        then (an aligned 8-byte store: C loads it with acquire) how many raw
        bytes they hold."""
        if self._c is None:
            return
        c, offs, cap = self._c
        n = len(self.offsets)
        if n + 1 > cap:
            raise ValueError(f"{self.path.name}: more frames than its segment holds")
        offs[0:n] = self.offsets.tolist()
        offs[n] = self.frames_end
        c.n_frames = n
        c.raw_bytes = self.raw_bytes

    def allocated_bytes(self) -> int:
        return os.fstat(self.fd).st_blocks * 512

    def close(self) -> None:
        os.close(self.fd)

    def read_checked(self, address: int, n: int) -> bytes:
        """Up to n log bytes at `address` (in this file): short before the
        first frame that does not check, as a segment file is short where
        its written bytes end (recovery then ends the log there)."""
        out = bytearray()
        end = address + max(0, n)
        while address < end:
            first = self.address + (address - self.address) // self.frame_bytes * self.frame_bytes
            try:
                piece = self.read(address, min(end, first + self.frame_bytes) - address)
            except CorruptionError:
                break
            out += piece
            address += len(piece)
        return bytes(out)

    def read(self, address: int, n: int) -> bytes:
        """Log bytes [address, address + n), which must lie in this file;
        CorruptionError if a frame they are in does not check."""
        if address < self.address or address + n > self.address + self.raw_bytes:
            raise ValueError(f"[{address}, {address + n}) is not in cold file {self.path.name} "
                             f"([{self.address}, {self.address + self.raw_bytes}))")
        out = bytearray()
        while n > 0:
            i = (address - self.address) // self.frame_bytes
            start = self.offsets[i]
            end = self.offsets[i + 1] if i + 1 < len(self.offsets) else self.frames_end
            first = self.address + i * self.frame_bytes
            raw = self.codec.decompress(os.pread(self.fd, end - start, start), first)
            piece = raw[address - first:address - first + n]
            out += piece
            address += len(piece)
            n -= len(piece)
        return bytes(out)
