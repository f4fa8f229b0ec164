"""Recovery: rebuild the index and find the log tail after a restart.

Start from the newest checkpoint that verifies (else an empty index at the
log's begin), then replay every record after its tail: C verifies each
record's checksum and re-links its key pointers into the index. Replay stops
at the first record that is torn or corrupt; what follows is dropped and
reported, never returned.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from .._native import ffi, lib
from ..errors import CorruptionError
from .address import FIRST_ADDRESS
from .checkpoint import list_checkpoints, load_checkpoint
from .index import HashIndex
from .segments import SegmentFiles

log = logging.getLogger("shoal.recovery")


@dataclass
class RecoveryReport:
    checkpoint_id: int | None = None
    checkpoint_begin: int = FIRST_ADDRESS
    checkpoint_tail: int = FIRST_ADDRESS
    begin_address: int = FIRST_ADDRESS
    tail_address: int = FIRST_ADDRESS
    replayed_records: int = 0
    replayed_bytes: int = 0
    records_at_checkpoint: int = 0
    dropped: list[str] = field(default_factory=list)


def recover(ckpt_dir: Path, segments: SegmentFiles, page_bits: int, bucket_bits: int,
            begin: int = FIRST_ADDRESS) -> tuple[HashIndex, RecoveryReport]:
    report = RecoveryReport()
    index = None
    start = begin
    for cid in reversed(list_checkpoints(ckpt_dir)):
        loaded = load_checkpoint(ckpt_dir, cid)
        if loaded is None:
            report.dropped.append(f"checkpoint {cid} failed verification; ignored")
            continue
        meta, data = loaded
        try:
            index = HashIndex.load(data)
        except CorruptionError:
            report.dropped.append(f"checkpoint {cid} index is malformed; ignored")
            continue
        # Compaction records its begin before checkpoints see it, but a
        # checkpoint's own begin is a floor as well. Index entries below
        # begin are dead: walks stop there.
        report.checkpoint_id = cid
        report.checkpoint_begin = meta.get("begin_address", FIRST_ADDRESS)
        begin = max(begin, report.checkpoint_begin)
        report.checkpoint_tail = start = max(meta["tail_address"], begin)
        # A checkpoint taken before the log's begin moved past its tail counts
        # nothing that is left; replay from begin counts every record.
        report.records_at_checkpoint = meta.get("records", 0) if meta["tail_address"] > begin else 0
        break
    if index is None:
        index = HashIndex(bucket_bits)

    page_size = 1 << page_bits
    pos = ffi.new("uint64_t *", start)
    records = ffi.new("uint64_t *", 0)
    while True:
        page = pos[0] >> page_bits
        base = page << page_bits
        data = segments.read(base, page_size)
        if len(data) <= pos[0] - base:
            break  # nothing written at pos
        rc = lib.shoal_replay(data, base, len(data), pos, page_bits, index.ptr, records)
        index.maybe_grow()
        if rc == lib.SHOAL_OK or rc == lib.SHOAL_END:
            if rc == lib.SHOAL_OK and len(data) < page_size:
                # Short page: the end of what was flushed. Replay stops short
                # of a header cut by the end of the file; that is a torn record.
                if data[pos[0] - base:].strip(b"\x00"):
                    report.dropped.append(f"log: torn record at address {pos[0]} "
                                          f"({base + len(data) - pos[0]} bytes); dropped the log from there")
                break
            next_base = base + page_size
            # A zero header ends a page; the log goes on only if the next page exists.
            if not segments.read(next_base, lib.SHOAL_HEADER_BYTES).strip(b"\x00"):
                break
            pos[0] = next_base
            continue
        if rc == lib.SHOAL_E_CORRUPT:
            report.dropped.append(f"log: torn or corrupt record at address {pos[0]}; "
                                  f"dropped the log from there")
            break
        raise CorruptionError(f"replay failed with code {rc} at address {pos[0]}")
    report.begin_address = begin
    report.tail_address = pos[0]
    report.replayed_records = records[0]
    report.replayed_bytes = pos[0] - start
    for msg in report.dropped:
        log.warning(msg)
    return index, report
