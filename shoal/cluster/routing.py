"""Routing: an ingest's input cut into pieces, each for one shard.

The front frames the input as a store would (ingest/framing.py: NDJSON,
arrays, one document, gzip of any) and sends each shard its records as
pieces of at least `piece_bytes` (the last piece of a call may be smaller),
never record by record:

  key       a keyed cluster: the record's key (the store's key expression)
  route_by  else a routing expression, if the cluster has one
            Either way the record goes to virtual shard
            crc32(canonical value bytes) % virtual_shards (zlib's CRC-32;
            canonical bytes as the store indexes the value, psf/values.py),
            so a key's versions, or a routing value's records, share a shard.
            A record without the value (or that does not parse: its shard
            rejects it with the exact reason) is spread as below.
  spread    else batches of ~piece_bytes of input go to virtual shards in
            turn, cut at record boundaries: NDJSON is sent as the input's
            own bytes, no record touched.

Must stay true:
  - The hash and the canonical bytes never change: a key's records must
    land on the shard that holds its earlier versions.
  - Each piece knows the input line (NDJSON) or element (arrays) of its
    records, so a shard's error, which names a line of its piece, is
    reported with the input's numbering.
  - Records a framer rejects (too large, a damaged array) never reach a
    shard: they are counted and reported here, as a store would.
"""
from __future__ import annotations

import time
import zlib
from array import array
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson

from .._native import lib, reason
from ..config import StoreConfig
from ..ingest.batch import key_canonical
from ..ingest.framing import Framer, InputFormat
from ..ingest.sources import Source
from ..psf.expr import parse_definition
from ..results import IngestError, IngestResult
from .shardmap import ShardMap

PIECE_BYTES = 4 << 20


def _newlines(buf: bytes, start: int, end: int) -> int:
    """b"\\n" bytes in buf[start:end] (numpy: 3x bytes.count here)."""
    return int(np.count_nonzero(np.frombuffer(buf, dtype=np.uint8, count=end - start, offset=start) == 10))


@dataclass
class Piece:
    shard: int
    data: bytes | list  # one buffer, or consecutive parts of the input (memoryviews)
    fmt: str                 # "ndjson" or "array": how the shard frames it
    first_line: int = 0      # a slice of NDJSON input: the input line of its first line
    lines: array | None = None  # else the input line (element) of each record, in order
    seq: int = 0             # the cluster order of its records (addresses.py)
    records: int = 0
    next_line: int = 0       # a slice of NDJSON input: the input line after its last (0: not known)
    size: int = 0            # bytes of data

    def __post_init__(self) -> None:
        if not self.size:
            self.size = sum(len(d) for d in _parts_of(self.data))

    def takes(self, other: "Piece") -> bool:
        """Append `other`, the piece cut right after this one for the same
        shard, so the shard stores both with one Store.ingest (ingest.py
        says why); False, nothing changed, where they cannot be one piece:
        not both NDJSON, or not consecutive lines of the input."""
        if self.fmt != "ndjson" or other.fmt != "ndjson" or (self.lines is None) != (other.lines is None):
            return False
        if self.lines is None and not (self.next_line and self.next_line == other.first_line):
            return False
        self.data = _parts_of(self.data) + _parts_of(other.data)
        if self.lines is not None:
            self.lines = self.lines + other.lines
        self.next_line = other.next_line
        self.records += other.records
        self.size += other.size
        return True

    def input_line(self, line: int) -> int:
        """The input's line (element) number of the piece's line `line`."""
        if self.lines is None:
            return self.first_line + line - 1
        return int(self.lines[line - 1]) if 0 < line <= len(self.lines) else line


def routing_value(expression, raw, virtual_shards: int) -> tuple[int, Any] | None:
    """A record's virtual shard and routing value (its key, on a keyed
    cluster); None when it has none (or is not JSON)."""
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    c = key_canonical(expression, obj)
    return None if c is None else (zlib.crc32(c) % virtual_shards, expression.search(obj))


def virtual_shard(expression, raw, virtual_shards: int) -> int | None:
    """The virtual shard of a record (raw JSON text) by its routing value
    (None: it has none, and is spread)."""
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    c = key_canonical(expression, obj)
    return None if c is None else zlib.crc32(c) % virtual_shards


def _parts_of(data: bytes | list) -> list:
    return data if isinstance(data, list) else [data]


class Sequence:
    """Sequence numbers for pieces: nanoseconds since the epoch when cut,
    strictly increasing in this front (addresses.py: the cluster's order)."""

    def __init__(self) -> None:
        self._last = 0

    def next(self) -> int:
        self._last = max(time.time_ns(), self._last + 1)
        return self._last


@dataclass
class _Pending:
    parts: list[bytes] = field(default_factory=list)
    lines: array = field(default_factory=lambda: array("Q"))
    size: int = 0


class Router:
    def __init__(self, shard_map: ShardMap, config: StoreConfig, piece_bytes: int = PIECE_BYTES):
        self.map = shard_map
        self.config = config
        self.piece_bytes = piece_bytes
        text = shard_map.key if shard_map.key is not None else shard_map.route_by
        self.expression = parse_definition(text, config.expression_limits) if text is not None else None
        self._turn = 0  # spread: the next virtual shard

    def shard_of(self, value_canonical: bytes) -> int:
        return self.map.owners[zlib.crc32(value_canonical) % self.map.virtual_shards]

    def shard_of_value(self, value) -> int | None:
        """The shard that holds records whose routing value is `value`
        (None: a value that is not indexable, so no one shard)."""
        v = self.virtual_of_value(value)
        return None if v is None else self.map.owners[v]

    def virtual_of_value(self, value) -> int | None:
        """The virtual shard of records whose routing value is `value`."""
        from ..psf import canonical
        c = canonical(value)
        return None if c is None else zlib.crc32(c) % self.map.virtual_shards

    def _spread(self) -> int:
        v = self._turn
        self._turn = (v + 1) % self.map.virtual_shards
        return self.map.owners[v]

    def pieces(self, source: Source, fmt: InputFormat, result: IngestResult) -> Iterator[Piece]:
        """The input's records as pieces in input order (for spread; routed
        pieces in the order they fill), framing errors counted into
        `result`."""
        cfg = self.config
        spread = self.expression is None
        # Spread NDJSON is never framed here (lazy batches: the shard frames
        # it); anything else is framed record by record.
        framer = Framer(fmt, self.piece_bytes, cfg.effective_max_record_bytes, lazy=spread)
        framer.window = self.piece_bytes  # NDJSON batches of ~piece_bytes (eager framing takes all it can else)
        pending: dict[int, _Pending] = {}
        run = _Run()  # spread NDJSON: consecutive lines not yet sent
        for batch in framer.batches(source.chunks()):
            if batch.lazy:
                if not run.follows(batch.line_after):
                    yield from self._flush_run(run)
                self._cut(batch, run)
                if run.size >= self.piece_bytes:
                    yield from self._flush_run(run)
                continue
            yield from self._flush_run(run)
            as_array = framer.resolved is not InputFormat.NDJSON
            n = batch.n_spans
            spans = batch.spans
            buf = batch.buf
            good = [i for i in range(n) if spans[i].status == lib.SHOAL_OK]
            if len(good) != n:
                for i in range(n):
                    sp = spans[i]
                    if sp.status != lib.SHOAL_OK:
                        self._framing_error(batch, sp, result)
            if not good:
                continue
            if self.expression is None:  # spread: the batch goes to one shard
                shard = self._spread()
                if not as_array and len(good) == n:
                    # The input's own bytes, from the first record to the last.
                    first, last = spans[0], spans[n - 1]
                    data = bytes(buf[first.start:last.start + last.len])
                    yield Piece(shard, data, "ndjson", first_line=int(first.line), records=n)
                else:
                    p = _Pending()
                    for i in good:
                        self._add(p, buf, spans[i])
                    yield self._piece(shard, p, as_array)
                continue
            for i in good:
                sp = spans[i]
                raw = self._add(None, buf, sp)
                shard = self._route(raw)
                p = pending.get(shard)
                if p is None:
                    p = pending[shard] = _Pending()
                self._add(p, buf, sp, raw)
                if p.size >= self.piece_bytes:
                    yield self._piece(shard, pending.pop(shard), as_array)
        yield from self._flush_run(run)
        as_array = framer.resolved is not InputFormat.NDJSON
        for shard in list(pending):
            yield self._piece(shard, pending.pop(shard), as_array)

    def _cut(self, batch, run: "_Run") -> None:
        """Take the whole lines of a lazy NDJSON batch into `run`, up to
        about a piece (a longer line whole), and tell the framer where it
        stopped (the protocol of lazy batches, ingest/framing.py)."""
        buf, pos, size = batch.buf, batch.start, len(batch.buf)
        stop = pos + max(self.piece_bytes - run.size, 1)
        if stop >= size:
            end = size if batch.final else buf.rfind(b"\n", pos, size) + 1
        else:
            end = buf.rfind(b"\n", pos, stop) + 1
            if end <= pos:  # a line longer than the rest of the piece: all of it
                nl = buf.find(b"\n", stop)
                end = nl + 1 if nl >= 0 else (size if batch.final else pos)
        end = max(end, pos)
        line = batch.line_after
        batch.consumed_to = end
        batch.line_after = line + _newlines(buf, pos, end)
        # Stopped for the piece's size, not at the end or a partial last line.
        batch.more = end < size and (batch.final or buf.find(b"\n", end) >= 0)
        if end > pos:
            run.add(memoryview(buf)[pos:end], line, batch.line_after)

    def _flush_run(self, run: "_Run") -> Iterator[Piece]:
        if run.parts:
            # The input's own buffers, not joined here: the shard joins them
            # (a copy it makes anyway), so the front copies nothing.
            yield Piece(self._spread(), run.parts, "ndjson", first_line=run.first_line, records=0,
                        next_line=run.next_line)
            run.clear()


    @staticmethod
    def _add(p: "_Pending | None", buf, sp, raw: bytes | None = None) -> bytes:
        if raw is None:
            raw = bytes(buf[sp.start:sp.start + sp.len])
        if p is not None:
            p.parts.append(raw)
            p.lines.append(int(sp.line))
            p.size += len(raw) + 1
        return raw

    def _route(self, raw: bytes) -> int:
        v = virtual_shard(self.expression, raw, self.map.virtual_shards)
        return self._spread() if v is None else self.map.owners[v]

    def _piece(self, shard: int, p: _Pending, as_array: bool) -> Piece:
        if as_array:
            data = b"[" + b",".join(p.parts) + b"]"
            return Piece(shard, data, "array", lines=p.lines, records=len(p.parts))
        return Piece(shard, b"\n".join(p.parts) + b"\n", "ndjson", lines=p.lines, records=len(p.parts))

    def _framing_error(self, batch, sp, result: IngestResult) -> None:
        cfg = self.config
        result.rejected += 1
        if sp.status == lib.SHOAL_E_TOO_LARGE:
            why = cfg.record_too_large(batch.record_bytes or int(sp.len) or None).reason
        else:
            why = reason(sp.status)
        if len(result.errors) < cfg.max_reported_errors:
            off = batch.error_offset
            result.errors.append(IngestError(int(sp.line), why, off))


class _Run:
    """Consecutive NDJSON input (whole lines) gathered into one piece."""

    def __init__(self) -> None:
        self.clear()

    def clear(self) -> None:
        self.parts: list = []
        self.size = 0
        self.first_line = 0
        self.next_line = 0

    def follows(self, line: int) -> bool:
        """Whether input starting at `line` continues the run (or it is empty)."""
        return not self.parts or line == self.next_line

    def add(self, view, line: int, line_after: int) -> None:
        if not self.parts:
            self.first_line = line
        self.parts.append(view)
        self.size += len(view)
        self.next_line = line_after
