"""Framing: cut a stream of input chunks into batches of record spans.

Formats:
  ndjson  one JSON value per line; blank lines are skipped; errors name lines
  array   one top-level JSON array whose elements are the records; errors name
          element numbers
  json    the whole input is one JSON document, stored as one record
  document  one JSON document: a top-level array's elements are the records,
          any other value is one record (HTTP's application/json)
  auto    ndjson, unless the first line is not a complete JSON value: then
          an input starting with '[' is an array (pretty-printed or
          multi-line), and an input that as a whole is one valid JSON
          document (a pretty-printed object) is that one record. A one-line
          array is ambiguous; pass format="array" for it.

A batch is about `batch_bytes` of input plus the spans C found in it; the
partial record at a batch's end is carried into the next. A line longer than
the record limit is reported and skipped without buffering it.

NDJSON batches are *lazy* when the framer is built with lazy=True (no PSF
needs the spans before the native call): the batch names a range of its
buffer, and the native ingest call frames each line just before it parses
it, so the input is read from memory once. The consumer then reports where
framing stopped in `consumed_to`, `line_after` and `more`.
"""
from __future__ import annotations

import enum
from collections.abc import Iterator
from dataclasses import dataclass

from .._native import ffi, lib
from ..errors import InvalidArgument

_SPAN_CAP = 1 << 16
_JSON_WS = b" \t\r\n"
_WS = b" \t\r\n"  # JSON whitespace


class InputFormat(str, enum.Enum):
    AUTO = "auto"
    NDJSON = "ndjson"
    ARRAY = "array"
    JSON = "json"
    DOCUMENT = "document"

    @classmethod
    def parse(cls, value: "str | InputFormat") -> "InputFormat":
        try:
            return cls(value)
        except ValueError:
            raise InvalidArgument(f"unknown format {value!r}; use one of "
                                  f"{', '.join(f.value for f in cls)}") from None


@dataclass
class Batch:
    buf: object         # bytes-like the spans point into
    spans: object       # cdata shoal_span[]
    n_spans: int
    keep: object = None  # owner of buf's memory
    consumed_to: int = 0  # offset in the chunk framed so far
    line_after: int = 0   # line number at consumed_to
    # Lazy NDJSON batches (n_spans == 0 until the consumer frames them):
    lazy: bool = False
    start: int = 0        # offset in buf where framing starts
    final: bool = False   # buf's last line needs no '\n'
    more: bool = False    # set by the consumer: framing stopped before buf's end
    # A batch that only reports damage in the input's structure: where, in
    # bytes from the start of the (decompressed) input.
    error_offset: int | None = None
    # A batch that only reports a record too large to frame: its size, when
    # counted (the span's len is 0: the record was never held).
    record_bytes: int | None = None


class Framer:
    def __init__(self, fmt: InputFormat, batch_bytes: int, max_record_bytes: int, *,
                 lazy: bool = False):
        self.fmt = fmt
        self.lazy = lazy
        self.batch_bytes = batch_bytes
        self.max_record_bytes = max_record_bytes
        self._spans = ffi.new("shoal_span[]", _SPAN_CAP)
        # A parallel pass (parallel.py) hands each batch a spans array of its
        # own (`spans_source()`, _SPAN_CAP entries) and frames NDJSON at most
        # `window` bytes per batch, so batches are prepared at once.
        self.spans_source = None
        self.window: int | None = None
        # The format batches() framed (NDJSON, ARRAY or JSON), once it began:
        # what "auto" and "document" turned out to be.
        self.resolved: InputFormat | None = None
        self._n_out = ffi.new("size_t *")
        self._consumed = ffi.new("size_t *")
        self._err = ffi.new("size_t *")

    def batches(self, chunks: Iterator[bytes]) -> Iterator[Batch]:
        fmt = self.fmt
        chunks = iter(chunks)
        if fmt in (InputFormat.AUTO, InputFormat.JSON, InputFormat.DOCUMENT):
            first, chunks = _peek_first_line(chunks, self.max_record_bytes + 2)
            if fmt is InputFormat.DOCUMENT:
                head = first.lstrip(_JSON_WS)
                if not head:
                    return  # no document, so no records (not a bad one, as for format="json")
                fmt = InputFormat.ARRAY if head.startswith(b"[") else InputFormat.JSON
            elif fmt is InputFormat.AUTO:
                fmt = _detect(first)
                if fmt is InputFormat.NDJSON and not _is_json(_first_line(first)):
                    # Not NDJSON from its first line: a pretty-printed document?
                    first, exhausted = _peek_more(first, chunks, self.max_record_bytes + 2)
                    if exhausted and _is_json(first.strip(_JSON_WS)):
                        fmt = InputFormat.JSON
            chunks = _prepend(first, chunks)
        self.resolved = fmt
        if fmt is InputFormat.NDJSON:
            yield from self._ndjson(chunks)
        elif fmt is InputFormat.ARRAY:
            yield from self._array(chunks)
        else:
            yield from self._document(chunks)

    # -- ndjson --
    def _ndjson(self, chunks: Iterator[bytes]) -> Iterator[Batch]:
        # Chunks are framed in place; only a line cut by a chunk boundary is
        # copied (its start carried over and joined with the next chunk's head).
        line = 1
        carry = b""        # start of a line cut by the previous chunk's end
        skipping = False   # discarding an over-long line up to its '\n'
        # Its size, reported with its line once its end is found: bytes
        # from its first non-blank one, and the blanks at the end so far.
        skipped = trailing = 0
        limit = self.max_record_bytes  # of a record's text: surrounding whitespace is not part of it

        def skip(piece: bytes) -> None:
            nonlocal skipped, trailing
            skipped += len(piece)
            kept = len(piece.rstrip(_WS))
            trailing = trailing + len(piece) if kept == 0 else len(piece) - kept

        for chunk, final in _with_last(chunks):
            start = 0
            if skipping:
                nl = chunk.find(b"\n")
                skip(chunk if nl < 0 else chunk[:nl])
                if nl < 0:
                    if final:  # the input ends inside it
                        yield self._too_large(line, skipped - trailing)
                    continue
                yield self._too_large(line, skipped - trailing)
                start = nl + 1
                line += 1
                skipping = False
            if carry:
                nl = chunk.find(b"\n", start)
                if nl < 0 and not final:
                    carry = (carry + chunk[start:]).lstrip(_WS)
                    if len(carry.rstrip(_WS)) > limit:
                        skipped = trailing = 0
                        skip(carry)
                        carry, skipping = b"", True
                    continue
                cut = len(chunk) if nl < 0 else nl + 1
                head = carry + chunk[start:cut]
                carry = b""
                start = cut
                if len(head.strip(_WS)) > limit:
                    yield self._too_large(line, len(head.strip(_WS)))
                    line += 1
                else:
                    for batch in self._frame_ndjson(head, 0, True, line):
                        if batch.n_spans or batch.lazy:
                            yield batch
                        line = batch.line_after
            pos = start
            for batch in self._frame_ndjson(chunk, start, final, line):
                if batch.n_spans or batch.lazy:
                    yield batch
                pos = batch.consumed_to
                line = batch.line_after
            if len(chunk) - pos > limit and len(chunk[pos:].strip(_WS)) > limit:
                skipped = trailing = 0
                skip(chunk[pos:].lstrip(_WS))
                skipping = True
                if final:
                    yield self._too_large(line, skipped - trailing)
            elif len(chunk) > pos:
                carry = chunk[pos:]

    def _frame_ndjson(self, buf: bytes, pos: int, final: bool, line: int) -> Iterator[Batch]:
        """Frame buf[pos:]. Each batch's `consumed_to` is the offset in `buf`
        framed so far and `line_after` the line number there; a lazy batch
        gets both from its consumer, before the generator resumes."""
        if self.lazy:
            while True:
                batch = Batch(buf, self._spans, 0, buf, consumed_to=pos, line_after=line,
                              lazy=True, start=pos, final=final)
                yield batch
                if not batch.more:
                    return
                pos, line = batch.consumed_to, batch.line_after
        yield from self.frame_eagerly(buf, pos, final, line)

    def frame_eagerly(self, buf: bytes, pos: int, final: bool, line: int) -> Iterator[Batch]:
        """Frame buf[pos:] into batches of spans (what a framer that is not
        lazy yields), whatever this framer's mode: an ingest that finds a
        Python PSF registered mid-stream frames its lazy batches with this."""
        cbuf = ffi.from_buffer(buf)
        view = memoryview(buf)
        window = self.window
        while True:
            spans = self.spans_source() if self.spans_source is not None else self._spans
            size = len(buf) - pos
            cut = window is not None and size > window
            if cut:  # frame the whole lines of the window; grow it past a longer line
                size = window
                while size < len(buf) - pos and buf.rfind(b"\n", pos, pos + size) < 0:
                    size *= 2
                size = min(size, len(buf) - pos)
                cut = size < len(buf) - pos
            rc = lib.shoal_frame_ndjson(cbuf + pos, size, 1 if final and not cut else 0, line,
                                        spans, _SPAN_CAP, self._n_out, self._consumed)
            n = self._n_out[0]
            consumed = self._consumed[0]
            if n:
                last = spans[n - 1]
                # the last span's line plus the newlines from its start on
                line = last.line + buf.count(b"\n", pos + last.start, pos + consumed)
            else:
                line += buf.count(b"\n", pos, pos + consumed)
            batch = Batch(view[pos:], spans, n, buf)
            pos += consumed
            batch.consumed_to = pos
            batch.line_after = line
            yield batch
            if rc != lib.SHOAL_OUT_FULL and not (cut and consumed):
                return

    def _too_large(self, line: int, size_bytes: int | None = None) -> Batch:
        """The report of a record over the limit, skipped unread: its line
        and, when counted, its size."""
        spans = ffi.new("shoal_span[1]")
        spans[0].start = 0
        spans[0].len = 0
        spans[0].line = line
        spans[0].status = lib.SHOAL_E_TOO_LARGE
        return Batch(b"", spans, 1, record_bytes=size_bytes)

    # -- array --
    def _array(self, chunks: Iterator[bytes]) -> Iterator[Batch]:
        """The elements of one top-level array. Damage at the array level
        (a missing or extra bracket or comma, anything after the closing
        bracket, a second array) is reported once, as an error whose offset
        is the byte in the whole input where the array went wrong; elements
        framed before it are stored (on_error="skip") and checked one by one
        as usual."""
        st = ffi.new("shoal_array_state *")
        st.line = 1
        pending = b""
        base = 0  # offset in the input of buf[0]
        exhausted = False
        while not exhausted:
            parts = [pending] if pending else []
            size = len(pending)
            while size < self.batch_bytes or len(parts) <= (1 if pending else 0):
                try:
                    c = next(chunks)
                except StopIteration:
                    exhausted = True
                    break
                parts.append(bytes(c))
                size += len(c)
            buf = b"".join(parts) if len(parts) != 1 else parts[0]
            pos = 0
            while True:
                view = memoryview(buf)[pos:]
                spans = self.spans_source() if self.spans_source is not None else self._spans
                rc = lib.shoal_frame_array(st, ffi.from_buffer(view), len(view), 1 if exhausted else 0,
                                           spans, _SPAN_CAP, self._n_out, self._consumed, self._err)
                n = self._n_out[0]
                # An array cut short after an element ('[1,2') ends on that
                # element, which C marks as a framing error (it may be cut
                # too: '[1,23' of '[1,234]'): it is not a record but the
                # place of the array's one error, reported at the end.
                cut_short = rc == lib.SHOAL_E_FRAMING and n and spans[n - 1].status == lib.SHOAL_E_FRAMING
                if cut_short:
                    n -= 1
                err_at = base + pos + self._err[0]
                if n:
                    yield Batch(view, spans, n, buf)
                pos += self._consumed[0]
                if rc == lib.SHOAL_E_FRAMING:
                    yield self._framing_error(st.elements + (0 if cut_short else 1), err_at)
                    return
                if rc != lib.SHOAL_OUT_FULL:
                    break
            pending = buf[pos:]
            base += pos
            if len(pending) > self.max_record_bytes + 2:
                yield self._framing_error(st.elements + 1, base, lib.SHOAL_E_TOO_LARGE)
                return

    def _framing_error(self, element: int, offset: int | None, status: int = lib.SHOAL_E_FRAMING) -> Batch:
        spans = ffi.new("shoal_span[1]")
        spans[0].start = 0
        spans[0].len = 0
        spans[0].line = element
        spans[0].status = status
        return Batch(b"", spans, 1, error_offset=offset)

    # -- one document --
    def _document(self, chunks: Iterator[bytes]) -> Iterator[Batch]:
        parts, size = [], 0
        for c in chunks:
            size += len(c)
            if size > self.max_record_bytes + 2:
                yield self._too_large(1)
                return
            parts.append(bytes(c))
        buf = b"".join(parts)
        text = buf.strip(_JSON_WS)
        if not text:
            # The input must be one JSON document; none is not one.
            yield self._framing_error(1, 0, lib.SHOAL_E_EMPTY)
            return
        # Stored like NDJSON and array records: the value, without the
        # whitespace around it.
        spans = ffi.new("shoal_span[1]")
        spans[0].start = len(buf) - len(buf.lstrip(_JSON_WS))
        spans[0].len = len(text)
        spans[0].line = 1
        spans[0].status = lib.SHOAL_OK
        yield Batch(buf, spans, 1, buf)


def _with_last(items: Iterator[bytes]) -> Iterator[tuple[bytes, bool]]:
    """Each item with a flag telling whether it is the last one."""
    it = iter(items)
    try:
        prev = next(it)
    except StopIteration:
        return
    for item in it:
        yield prev, False
        prev = item
    yield prev, True


def _prepend(first: bytes, rest: Iterator[bytes]) -> Iterator[bytes]:
    if first:
        yield first
    yield from rest


def _peek_first_line(chunks: Iterator[bytes], limit: int) -> tuple[bytes, Iterator[bytes]]:
    """Read until the first newline after some content (or `limit` bytes)."""
    buf = b""
    for c in chunks:
        buf += bytes(c)
        stripped = buf.lstrip(_JSON_WS)
        if (stripped and b"\n" in stripped) or len(buf) > limit:
            break
    return buf, chunks


def _peek_more(buf: bytes, chunks: Iterator[bytes], limit: int) -> tuple[bytes, bool]:
    """Read on until the input ends (True) or passes `limit` bytes (False)."""
    parts = [buf]
    size = len(buf)
    for c in chunks:
        parts.append(bytes(c))
        size += len(c)
        if size > limit:
            return b"".join(parts), False
    return b"".join(parts), True


def _is_json(text: bytes) -> bool:
    """Is `text` one complete, valid JSON value?"""
    if not text:
        return False
    err = ffi.new("size_t *")
    return lib.shoal_parse(text, len(text), ffi.NULL, ffi.NULL, err) == lib.SHOAL_OK


def _first_line(buf: bytes) -> bytes:
    """The first line with content, without the whitespace around it."""
    stripped = buf.lstrip(_JSON_WS)
    nl = stripped.find(b"\n")
    return (stripped if nl < 0 else stripped[:nl]).rstrip(_JSON_WS)


def _detect(first: bytes) -> InputFormat:
    if not first.lstrip(_JSON_WS).startswith(b"["):
        return InputFormat.NDJSON
    if _is_json(_first_line(first)):
        return InputFormat.NDJSON
    return InputFormat.ARRAY
