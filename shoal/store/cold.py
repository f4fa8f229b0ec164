"""Cold segment files: a segment's sealed log bytes as compressed frames.

    segment-<s>.z:  frame | frame | ... | table | footer

Each frame (store/frames.py) holds `frame_bytes` raw log bytes and names the
address of its first one. The table is the file offset of every frame (u64
each, little-endian); the footer (FOOTER, 40 bytes) says where the table
starts, how many frames and raw bytes the file holds, from which address,
and carries a CRC32C of the table and itself. A point read finds its frame
by arithmetic (frames hold equal raw lengths, the last may be shorter) and
decompresses that one frame.

Must stay true:
  - The file is written whole under a temporary name, fsynced and renamed:
    a cold file that exists is complete, or its footer does not check.
  - A file whose footer does not check (a crash between write and rename
    cannot leave one, a damaged disk can) is read by walking its frames from
    the start (each verified); reads past the last good frame fail as
    CorruptionError, never as other bytes.
"""
from __future__ import annotations

import os
import struct
from array import array
from pathlib import Path

from .._native import ffi, lib
from ..errors import CorruptionError
from ..files import write_atomic
from .frames import Codec, frame_size

FOOTER = struct.Struct("<QQQIIII")  # first address, raw bytes, table offset, frames, frame bytes, magic, crc
MAGIC = 0x434C4853  # "SHLC"


def _crc(data) -> int:
    return lib.shoal_crc32c(0, ffi.from_buffer(data), len(data))


def write(path: Path, codec: Codec, address: int, raw) -> int:
    """Write log bytes [address, address + len(raw)) as the cold file `path`
    (files.write_atomic: temporary name, fsync, rename, directory fsync).
    Returns its size."""
    frames, offsets = codec.compress(address, raw)
    table = offsets.tobytes()
    head = FOOTER.pack(address, len(raw), len(frames), len(offsets), codec.frame_bytes, MAGIC, 0)[:-4]
    footer = head + struct.pack("<I", _crc(table + head))
    write_atomic(path, frames + table + footer)
    return len(frames) + len(table) + len(footer)


class ColdSegment:
    """A cold file opened for reads: its frame table in memory, its bytes
    read with pread (the page cache keeps the compressed bytes)."""

    def __init__(self, path: Path, codec: Codec):
        self.path = path
        self.codec = codec
        self.fd = os.open(path, os.O_RDONLY)
        try:
            self._load()
        except BaseException:
            os.close(self.fd)
            raise

    def _load(self) -> None:
        size = os.fstat(self.fd).st_size
        self.repaired = False
        if size >= FOOTER.size:
            tail = os.pread(self.fd, FOOTER.size, size - FOOTER.size)
            address, raw, table_at, n, frame_bytes, magic, crc = FOOTER.unpack(tail)
            if magic == MAGIC and table_at + 8 * n + FOOTER.size == size:
                table = os.pread(self.fd, 8 * n, table_at)
                if _crc(table + tail[:-4]) == crc and frame_bytes:
                    self.address, self.raw_bytes, self.frame_bytes = address, raw, frame_bytes
                    self.offsets = array("Q")
                    self.offsets.frombytes(table)
                    self.frames_end = table_at
                    return
        self._walk(size)

    def _walk(self, size: int) -> None:
        """No good footer: the frames from the start, each verified, up to the
        first that does not check (what lies after it is not read)."""
        self.repaired = True
        self.frame_bytes = 0  # the first frame's raw length: every frame but the last holds as many
        self.offsets = array("Q")
        self.address = self.raw_bytes = 0
        pos = 0
        data = os.pread(self.fd, size, 0)
        while pos < size:
            try:
                n = frame_size(memoryview(data)[pos:])
                address = int.from_bytes(data[pos + 8:pos + 16], "little")
                raw = self.codec.decompress(memoryview(data)[pos:pos + n], address)
            except CorruptionError:
                break
            if not self.offsets:
                self.address, self.frame_bytes = address, len(raw)
            elif (address != self.address + self.raw_bytes or self.raw_bytes % self.frame_bytes
                  or len(raw) > self.frame_bytes):
                break  # not the next frame, or one after a short (last) frame
            self.offsets.append(pos)
            self.raw_bytes += len(raw)
            pos += n
        self.frames_end = pos

    def close(self) -> None:
        os.close(self.fd)

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
