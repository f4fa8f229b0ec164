"""Input sources: bytes, paths, binary file objects and iterables of chunks,
turned into a stream of raw byte chunks, gunzipped when they start with the
gzip magic (several concatenated gzip members are fine).

Nothing here holds more than a chunk or two in memory, so inputs of any size
stream through in bounded memory.

A file object or an iterable may block for as long as its producer takes (a
socket, an HTTP upload); an ingest pulls its chunks holding no lock (the
writer lock is taken only to commit a prepared batch), so a slow producer
holds up no other writer.
"""
from __future__ import annotations

import io
import os
import tempfile
import zlib
from collections.abc import Iterable, Iterator
from typing import Any

from ..errors import InputTooLarge, InvalidArgument, ParseError

CHUNK_BYTES = 1 << 20
_GZIP_MAGIC = b"\x1f\x8b"


class Source:
    """A replayable description of an ingest input (reject mode reads twice)."""

    def __init__(self, data: Any, max_bytes: int | None = None):
        self._data = data
        # Bound on the input after gunzip: a small gzip body may expand to
        # gigabytes (a "gzip bomb"); past this many bytes chunks() raises.
        self._max_bytes = max_bytes
        self._spooled: Any = None
        if isinstance(data, (bytes, bytearray, memoryview)):
            self.kind = "bytes"
        elif isinstance(data, (str, os.PathLike)):
            self.kind = "path"
            if not os.path.exists(data):
                raise InvalidArgument(f"no such file: {os.fspath(data)}")
        elif hasattr(data, "read"):
            self.kind = "file"
        elif isinstance(data, Iterable):
            self.kind = "iterable"
        else:
            raise InvalidArgument(
                f"cannot ingest {type(data).__name__}: pass bytes, a path, a binary file or an iterable of bytes")

    def make_replayable(self, tmp_dir: str | None = None) -> None:
        """Make `chunks()` callable twice: seek files, spool one-shot streams."""
        if self.kind in ("bytes", "path"):
            return
        if self.kind == "file" and _seekable(self._data):
            self._start = self._data.tell()
            self.kind = "seekable-file"
            return
        spool = tempfile.SpooledTemporaryFile(max_size=64 << 20, dir=tmp_dir)
        limit = self._max_bytes
        held = 0
        for chunk in self._raw_chunks():
            # Raw (maybe gzipped) bytes: fewer than they expand to, so past
            # the limit here is past it after gunzip too.
            held += len(chunk)
            if limit is not None and held > limit:
                spool.close()
                raise InputTooLarge(f"the input is larger than the limit of {limit:,} bytes; on_error=reject "
                                    f"holds the whole input before storing it: send it in smaller parts, use "
                                    f"on_error=skip, or raise the limit (shoal serve --max-body)", limit)
            spool.write(chunk)
        spool.seek(0)
        self._spooled = spool
        self.kind = "spooled"

    def close(self) -> None:
        if self._spooled is not None:
            self._spooled.close()

    def _raw_chunks(self) -> Iterator[bytes]:
        k = self.kind
        if k == "bytes":
            # Framed in place: bytes and bytearray support find/count.
            data = self._data
            yield data if isinstance(data, (bytes, bytearray)) else bytes(data)
        elif k == "path":
            with open(self._data, "rb") as f:
                yield from _read_file(f)
        elif k == "file":
            yield from _read_file(self._data)
        elif k == "seekable-file":
            self._data.seek(self._start)
            yield from _read_file(self._data)
        elif k == "spooled":
            self._spooled.seek(0)
            yield from _read_file(self._spooled)
        else:
            for chunk in self._data:
                if isinstance(chunk, str):
                    chunk = chunk.encode("utf-8")
                if not isinstance(chunk, (bytes, bytearray, memoryview)):
                    raise InvalidArgument(f"iterable yielded {type(chunk).__name__}, expected bytes")
                if len(chunk):
                    yield chunk if isinstance(chunk, (bytes, bytearray)) else bytes(chunk)

    def chunks(self) -> Iterator[bytes]:
        """Decompressed input chunks (at most max_bytes of them, else
        InputTooLarge once the limit is passed)."""
        raw = self._raw_chunks()
        first = b""
        for c in raw:
            # gzip is known by its first two bytes, which a trickled upload
            # may send one at a time
            first = c if not first else bytes(first) + bytes(c)
            if len(first) >= 2:
                break
        if not len(first):
            return
        if bytes(first[:2]) == _GZIP_MAGIC:
            out = _gunzip(_chain(first, raw))
        else:
            out = _chain(first, raw)
        limit = self._max_bytes
        if limit is None:
            yield from out
            return
        seen = 0
        for chunk in out:
            seen += len(chunk)
            if seen > limit:
                raise InputTooLarge(f"the input is larger than the limit of {limit:,} bytes (after gunzip); "
                                    f"send it in smaller parts or raise the limit (shoal serve --max-body)",
                                    limit)
            yield chunk


def _seekable(f: Any) -> bool:
    try:
        return bool(f.seekable())
    except (AttributeError, ValueError, OSError):
        return False


def _read_file(f: Any) -> Iterator[bytes]:
    read = getattr(f, "read1", None) if isinstance(f, io.BufferedIOBase) else None
    read = read or f.read
    while True:
        chunk = read(CHUNK_BYTES)
        if not chunk:
            return
        if isinstance(chunk, str):
            raise InvalidArgument("file object is in text mode; open it in binary mode ('rb')")
        yield chunk


def _chain(first: bytes, rest: Iterator[bytes]) -> Iterator[bytes]:
    yield first
    yield from rest


def _gunzip(raw: Iterator[bytes]) -> Iterator[bytes]:
    """Decompress one or more concatenated gzip members, CHUNK_BYTES at a time."""
    d = zlib.decompressobj(wbits=31)
    fed = False  # has the current member received any input?
    for chunk in raw:
        data = bytes(chunk)
        while data:
            fed = True
            try:
                out = d.decompress(data, CHUNK_BYTES)
            except zlib.error as exc:
                raise ParseError(f"corrupt gzip input: {exc}") from None
            if out:
                yield out
            if d.eof:
                data = d.unused_data
                d = zlib.decompressobj(wbits=31)
                fed = False
                if data and data[:2] != _GZIP_MAGIC:
                    if data.strip(b"\x00"):
                        raise ParseError("trailing garbage after gzip data")
                    data = b""
            else:
                data = d.unconsumed_tail
                while not data and not d.eof and fed:
                    # zlib may hold output it could not return under max_length
                    out = d.decompress(b"", CHUNK_BYTES)
                    if not out:
                        break
                    yield out
    if fed and not d.eof:
        raise ParseError("truncated gzip input")
