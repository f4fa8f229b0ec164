"""`shoal ingest` on a terminal: one stderr line rewritten with \\r showing
input read, MB/s and records/s, fed by wrapping the input in an iterable of
chunks (the library and the client both take one)."""
from __future__ import annotations

import contextlib
import os
import sys
import time
import zlib
from collections.abc import Iterator
from typing import Any

from .output import label

READ_BYTES = 1 << 20
DRAW_INTERVAL_S = 0.1


def stderr_is_tty() -> bool:
    return sys.stderr.isatty()


def read_chunks(f: Any, on_read: Any = None, size: int = READ_BYTES) -> Iterator[bytes]:
    read = getattr(f, "read1", f.read)
    while chunk := read(size):
        if on_read is not None:
            on_read(len(chunk))
        yield chunk


class _Progress:
    """One stderr line rewritten with \\r: input read, MB/s and records/s.
    Records are counted as newlines, so only for NDJSON input."""

    def __init__(self, label: str, total_bytes: int | None, count_records: bool):
        self.label, self.total, self.count_records = label, total_bytes, count_records
        self.read = self.data = self.records = 0
        self.start = self.drawn = time.monotonic()
        self.width = 0

    def on_read(self, n: int) -> None:
        self.read += n

    def on_data(self, chunk: bytes) -> None:
        if not self.data and self.count_records and chunk.lstrip()[:1] == b"[":
            self.count_records = False  # perhaps a JSON array: lines are not records
        self.data += len(chunk)
        if self.count_records:
            self.records += chunk.count(b"\n")
        now = time.monotonic()
        if now - self.drawn >= DRAW_INTERVAL_S:
            self.drawn = now
            self._draw(now)

    def _draw(self, now: float) -> None:
        secs = max(now - self.start, 1e-6)
        parts = [self.label]
        if self.total:
            parts.append(f"{min(100, 100 * self.read // self.total):3d}%")
        parts.append(f"{self.data / 1e6:,.1f} MB  {self.data / 1e6 / secs:,.1f} MB/s")
        if self.count_records:
            parts.append(f"{self.records:,} records  {self.records / secs:,.0f} records/s")
        line = "  ".join(parts)
        sys.stderr.write("\r" + line.ljust(self.width))
        sys.stderr.flush()
        self.width = len(line)

    def clear(self) -> None:
        if self.width:
            sys.stderr.write("\r" + " " * self.width + "\r")
            sys.stderr.flush()


def ingest_with_progress(target: Any, name: str, kw: dict, fmt: str, remote: bool) -> Any:
    """Ingest `name` as an iterable of chunks, counting them on the way. To
    the library go chunks its own reader has gunzipped (so nothing is
    decompressed twice); to a server go the bytes as read, so gzip travels
    compressed, and a copy is decompressed here only to count records."""
    from ..ingest.sources import Source
    total = None if name == "-" else os.path.getsize(name)
    progress = _Progress(os.path.basename(label(name)), total, count_records=fmt in ("auto", "ndjson"))

    def chunks(f: Any) -> Iterator[bytes]:
        # Small reads keep the percentage (of the input as read) smooth.
        raw = read_chunks(f, progress.on_read, 128 << 10)
        if not remote:
            for chunk in Source(raw).chunks():
                progress.on_data(chunk)
                yield chunk
            return
        inflate = _Inflater()
        for chunk in raw:
            yield chunk
            progress.on_data(inflate.feed(chunk))

    try:
        with contextlib.ExitStack() as stack:
            f = sys.stdin.buffer if name == "-" else stack.enter_context(open(name, "rb"))
            return target.ingest(chunks(f), **kw)
    finally:
        progress.clear()


class _Inflater:
    """Decompresses a copy of gzip input (concatenated members too) for
    counting; plain input passes through. Gives up quietly on corrupt input:
    the server reports that."""

    def __init__(self) -> None:
        self.d: Any = None
        self.plain = self.broken = False

    def feed(self, chunk: bytes) -> bytes:
        if self.d is None and not self.plain:
            if chunk[:2] != b"\x1f\x8b":
                self.plain = True
            else:
                self.d = zlib.decompressobj(wbits=31)
        if self.plain or self.broken:
            return chunk if self.plain else b""
        out = []
        try:
            while chunk:
                out.append(self.d.decompress(chunk))
                chunk = self.d.unused_data if self.d.eof else b""
                if self.d.eof:
                    self.d = zlib.decompressobj(wbits=31)
        except zlib.error:
            self.broken = True
        return b"".join(out)
