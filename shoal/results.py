"""What shoal hands back: the public result types, in one module, so every
face (the library, the HTTP client, the CLI) returns the same objects and a
caller imports them from one place (also re-exported as shoal.Record, ...).

A leaf above the C core: it imports only _native (Record is a C type) and
the wire helpers, never store, ingest or engine.
"""
from __future__ import annotations

import dataclasses
from array import array
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from ._native import _records, ffi, lib
from .wire import address_lines

# Record(address, raw): one stored record, its log address and its raw JSON
# bytes, with .json() (orjson). A C type (_native/records.c) that the cyclic
# garbage collector does not track; make_records builds a batch's Records in
# one call, each with its own bytes or (share=True) pointing into the batch's
# buffer until .raw is taken (see records.c, "Shared batches").
Record = _records.Record
make_records = _records.records


class RecordBatch:
    """Records in one buffer, as bulk reads return them (Store.query_batches,
    Store.scan_batches): `data`, a read-only memoryview, holds each record's
    JSON text followed by b"\\n", so record i is
    data[offsets[i]:offsets[i] + lengths[i]], stored at addresses[i]. No
    Python object exists per record until one is asked for, and a full
    batch's buffer is the one the native read filled (no copy), which is
    what makes bulk answers cheap: pass `ndjson()` to a file or a socket,
    or iterate for Records (which share the batch's buffer, as a large
    query answer's Records do). `bytes(batch.data)` makes a copy."""

    __slots__ = ("data", "addresses", "offsets", "lengths", "_buf", "_breaks")

    def __init__(self, data: Any, addresses: array, offsets: array, lengths: array):
        self._buf = data            # bytes, or a cffi buffer this batch owns: slices are bytes
        self.data = memoryview(data).toreadonly()
        self.addresses = addresses  # array('Q')
        self.offsets = offsets      # array('Q')
        self.lengths = lengths      # array('I')
        self._breaks = -1           # line_breaks, once asked for

    @property
    def line_breaks(self) -> int:
        """How many b"\n" and b"\r" bytes the records hold (0 for records
        that arrived as NDJSON lines). Counted in C on first use: one
        pass over `data`, which only ndjson() needs."""
        if self._breaks < 0:
            self._breaks = (lib.shoal_count_line_breaks(ffi.from_buffer(self._buf), len(self._buf))
                            - len(self.addresses))
        return self._breaks

    def __len__(self) -> int:
        return len(self.addresses)

    def __iter__(self) -> Iterator[Record]:
        # The Records share this batch's buffer (it never changes).
        return iter(make_records(self._buf, self.addresses, self.lengths, self.offsets, share=True))

    def __getitem__(self, i: int) -> Record:
        o = self.offsets[i]
        return Record(self.addresses[i], self._buf[o:o + self.lengths[i]])

    def raws(self) -> list[bytes]:
        """Every record's JSON text, exactly as stored."""
        data = self._buf
        return [data[o:o + n] for o, n in zip(self.offsets.tolist(), self.lengths.tolist())]

    def ndjson_with_addresses(self) -> bytes:
        """The records as lines `{"address":a,"record":<text>}` (what the
        HTTP API streams with with_address=true), made in one native call;
        line breaks inside a record become spaces, as in ndjson()."""
        return address_lines(self._buf, self.addresses, self.offsets, self.lengths)

    def ndjson(self) -> bytes | memoryview:
        """The records as NDJSON, one per line. A record holding line breaks
        (a pretty-printed array element) has them turned into spaces, which
        JSON treats alike (a new bytes); otherwise this is `data` itself, no
        copy."""
        if not self.line_breaks:
            return self.data
        return b"".join(r.replace(b"\r", b" ").replace(b"\n", b" ") + b"\n" for r in self.raws())

    def head(self, k: int) -> "RecordBatch":
        """The batch of the first k records (a page's last batch)."""
        if k >= len(self.addresses):
            return self
        offsets, lengths = self.offsets[:k], self.lengths[:k]
        if k and offsets[0] == 0:  # the records lie in order, each followed by its newline
            end = offsets[-1] + lengths[-1] + 1
            return RecordBatch(self._buf[:end], self.addresses[:k], offsets, lengths)
        raws = self.raws()[:k]
        out_offsets, pos = array("Q"), 0
        for r in raws:
            out_offsets.append(pos)
            pos += len(r) + 1
        return RecordBatch(b"".join(r + b"\n" for r in raws), self.addresses[:k], out_offsets,
                           array("I", (len(r) for r in raws)))

    def __repr__(self) -> str:
        return f"RecordBatch({len(self)} records, {len(self.data)} bytes)"


@dataclass(frozen=True, slots=True)
class IngestError:
    """One rejected record: its 1-based line (NDJSON) or element number
    (array), the reason, and the byte offset of the problem in the record."""

    line: int
    reason: str
    offset: int | None = None

    def to_dict(self) -> dict:
        return {"line": self.line, "error": self.reason, "offset": self.offset}


@dataclass
class IngestResult:
    ingested: int = 0
    rejected: int = 0
    errors: list[IngestError] = field(default_factory=list)
    first_address: int | None = None
    last_address: int | None = None
    input_bytes: int = 0
    stored_bytes: int = 0
    durable: bool = False
    # ingest(addresses=True): each input record's address, in input order
    # (0: rejected); None otherwise
    addresses: array | None = None

    @property
    def errors_truncated(self) -> bool:
        return self.rejected > len(self.errors)

    def to_dict(self) -> dict:
        return {
            "ingested": self.ingested,
            "rejected": self.rejected,
            "first_address": self.first_address,
            "last_address": self.last_address,
            "errors": [e.to_dict() for e in self.errors],
            "errors_total": self.rejected,
        }


@dataclass(frozen=True)
class CheckpointInfo:
    checkpoint_id: int
    tail_address: int
    begin_address: int
    records: int
    created_at: float
    duration_ms: float = 0.0

    def to_dict(self) -> dict:
        return {"checkpoint_id": self.checkpoint_id, "tail_address": self.tail_address,
                "begin_address": self.begin_address, "records": self.records,
                "created_at": self.created_at, "duration_ms": self.duration_ms}


@dataclass(frozen=True)
class CompactionResult:
    """What one compaction did. bytes_reclaimed counts the disk freed: the
    blocks of segment files deleted whole, and of the hole punched below
    the new begin in the file holding it; records_dropped are records below
    the cut that were not copied; records_copied were live and now sit at
    the tail. disk_bytes_before/after: what the segment files took on disk
    (allocated blocks) when it started and when it returned (copies
    included)."""
    begin_before: int
    begin_after: int
    bytes_reclaimed: int
    records_dropped: int
    records_copied: int
    segments_deleted: int
    duration_ms: float
    disk_bytes_before: int = 0
    disk_bytes_after: int = 0

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)
