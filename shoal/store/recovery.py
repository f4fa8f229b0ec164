"""Recovery: rebuild the index and find the log tail after a restart.

The recovered log is always a prefix of what was written: [begin, tail),
every record in it verified. In order:

  1. Take the newest checkpoint whose metadata and index verify and whose
     tail the valid log reaches. With `verify` (the default;
     StoreConfig.verify_log_on_open) the log below its tail is read back
     and every record checked in C (header, CRC32C, key-pointer hashes; no
     index work): the valid log ends at the first torn or corrupt record or
     the first hole (a missing or short segment file), so bit flips and
     truncation anywhere are found at open and nothing below the recovered
     tail can return garbage later. Without it, only that the segment files
     below its tail are all there and long enough is checked.
     Checkpoints not taken are moved to lost+found/: one that fails
     verification would be reported at every open, and one past the valid
     end indexes records that are gone (and could match a log that grows
     past its tail again). The next older one, or a full replay from begin,
     is used.
  2. Replay the records after its tail into the index, verifying each, to
     the end of the valid log.
  3. Whole pages that exist past the end (later pages of its segment, later
     segment files) are unreachable: records after a damaged one are dropped
     even when intact, because the log must stay a contiguous prefix. The
     Store moves them to lost+found/ (report.quarantine), never deletes them.

Everything dropped is reported in `RecoveryReport.dropped` (one line per
finding) and logged as a warning. A torn last record, what a crash during
a write leaves, is reported too but not kept.
"""
from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from .._native import ffi, lib
from ..errors import CorruptionError
from .address import FIRST_ADDRESS
from .checkpoint import SUFFIXES, list_checkpoints, load_checkpoint, remove_leftovers
from .index import HashIndex
from .segments import SegmentFiles
from .tally import Tally

log = logging.getLogger("shoal.recovery")

LOST_AND_FOUND = "lost+found"


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
    verified_bytes: int = 0
    dropped: list[str] = field(default_factory=list)
    quarantine: Path | None = None  # where the dropped log goes (set when whole pages are dropped)


def recover(ckpt_dir: Path, segments: SegmentFiles, page_bits: int, bucket_bits: int,
            begin: int = FIRST_ADDRESS, *, verify: bool = True,
            without_checkpoints: str | None = None, tally_bounds: tuple[int, int] = (100_000, 256),
            psf_starts: dict[int, int] | None = None) -> tuple[HashIndex, Tally, RecoveryReport]:
    """without_checkpoints: why no checkpoint may be used (the log lost its
    oldest part, which they count and index); they are moved to lost+found
    and the whole log is replayed.

    The tally (store/tally.py) comes back counting [begin, tail) for every
    PSF of psf_starts (psf_id -> the start of its first range): from the
    checkpoint's tally plus the replay; or, when the checkpoint has none
    (written before tallies) or the log's begin moved since it was taken
    (a compaction no checkpoint followed), rebuilt by reading the log from
    begin to the checkpoint's tail. A PSF the checkpoint's tally lacks and
    that began before the replay is tallied from the replay's start: its
    counts there are partial, and the planner, seeing `since` differ from
    the PSF's first range, does not use them."""
    psf_starts = psf_starts or {}
    report = RecoveryReport()
    lost = ckpt_dir.parent / LOST_AND_FOUND / time.strftime("%Y%m%d-%H%M%S")
    remove_leftovers(ckpt_dir)
    if without_checkpoints:
        for cid in list_checkpoints(ckpt_dir):
            _quarantine_checkpoint(ckpt_dir, cid, lost)
            report.dropped.append(f"checkpoint {cid} {without_checkpoints}; moved to {lost}")
    # 1. the newest usable checkpoint; the log below its tail verified
    verified_to, valid_end = begin, None  # valid_end: where verification found the log ends
    index = None
    tally_data = None
    start = begin
    for cid in reversed(list_checkpoints(ckpt_dir)):
        loaded = load_checkpoint(ckpt_dir, cid)
        if loaded is None:
            _quarantine_checkpoint(ckpt_dir, cid, lost)
            report.dropped.append(f"checkpoint {cid} failed verification; moved to {lost}")
            continue
        meta, data, tally_data = loaded
        tail = meta["tail_address"]
        if not verify:
            reach = _present_until(segments, page_bits, begin, tail)
        else:
            if valid_end is None and tail > verified_to:
                verified_to, _, _ = _walk(segments, page_bits, verified_to, None, stop=tail)
                report.verified_bytes = verified_to - begin
                if verified_to < tail:
                    valid_end = verified_to
            reach = tail if valid_end is None else valid_end
        if tail > reach:
            _quarantine_checkpoint(ckpt_dir, cid, lost)
            report.dropped.append(f"checkpoint {cid} ends at address {tail}, past the end of the valid log "
                                  f"({reach}); moved to {lost}")
            continue
        try:
            index = HashIndex.load(data)
        except CorruptionError:
            _quarantine_checkpoint(ckpt_dir, cid, lost)
            report.dropped.append(f"checkpoint {cid} index is malformed; moved to {lost}")
            continue
        # Compaction records its begin before checkpoints see it, but a
        # checkpoint's own begin is a floor as well. Index entries below
        # begin are dead: walks stop there.
        report.checkpoint_id = cid
        report.checkpoint_begin = meta.get("begin_address", FIRST_ADDRESS)
        begin = max(begin, report.checkpoint_begin)
        report.checkpoint_tail = start = max(tail, begin)
        # A checkpoint taken before the log's begin moved past its tail counts
        # nothing that is left; replay from begin counts every record.
        report.records_at_checkpoint = meta.get("records", 0) if tail > begin else 0
        if tail <= begin:
            index = None  # every entry points below begin: replay from begin builds a smaller index
        break
    if index is None:
        index = HashIndex(bucket_bits)
        start = begin
    tally = _start_tally(segments, page_bits, begin, start, report.checkpoint_begin,
                         tally_data if report.checkpoint_id is not None and start > begin else None,
                         tally_bounds, psf_starts)

    # 2. replay after the checkpoint (it stops where verification did, if that was before)
    end, records, damage = _walk(segments, page_bits, start, index, tally=tally)
    if damage:
        report.dropped.append(damage)

    # 3. what exists past the end
    after = _pages_after(segments, page_bits, end)
    if after:
        report.quarantine = lost
        report.dropped.append(f"log: {after} bytes of whole pages after address {end} (the log is a prefix: "
                              f"records after a damaged or missing part are dropped even if intact); "
                              f"moved to {lost}")
    report.begin_address = begin
    report.tail_address = end
    report.replayed_records = records
    report.replayed_bytes = end - start
    for msg in report.dropped:
        log.warning(msg)
    return index, tally, report


def _start_tally(segments: SegmentFiles, page_bits: int, begin: int, start: int, checkpoint_begin: int,
                 data: bytes | None, bounds: tuple[int, int], psf_starts: dict[int, int]) -> Tally:
    """The tally as it stood at `start`, where the replay begins (see recover)."""
    tally = None
    if data is not None and checkpoint_begin >= begin:
        try:
            tally = Tally.load(data, *bounds)
        except CorruptionError:
            log.warning("recovery: the checkpoint's tally is malformed; counting the log again")
    if tally is None:
        tally = Tally(*bounds)
        for psf_id, first in psf_starts.items():
            tally.reset(psf_id, first)
        if start > begin:  # counted from the log itself: what the checkpoint covers
            _walk(segments, page_bits, begin, None, stop=start, tally=tally)
        return tally
    for psf_id, first in psf_starts.items():
        if not tally.state(psf_id).tallied:  # registered after the checkpoint (or before tallies)
            tally.reset(psf_id, max(first, start))
    return tally


def _walk(segments: SegmentFiles, page_bits: int, start: int, index: HashIndex | None,
          stop: int | None = None, tally: Tally | None = None) -> tuple[int, int, str | None]:
    """Replay into `index` and `tally` (None: not) the records from `start`,
    a record boundary, to the end of the valid log or to `stop`, verifying
    each. Returns (end address, records, what is wrong at the end or None
    for a clean end)."""
    page_size = 1 << page_bits
    pos = ffi.new("uint64_t *", start)
    records = ffi.new("uint64_t *", 0)
    ptr = index.ptr if index is not None else ffi.NULL
    tally_ptr = tally.ptr if tally is not None else ffi.NULL
    while stop is None or pos[0] < stop:
        if index is None and tally is None and stop is not None:
            # Only verifying: the records in cold frames were checked before
            # they were compressed (SegmentFiles.make_cold), and the frames
            # are checked here without decompressing them. Skipped to a page
            # start (where a record starts; a damaged frame or one cut at a
            # crash may end inside a page) or to the checkpoint's tail (a
            # record boundary too); what follows is verified as before.
            cold_end = segments.checked_cold_end(pos[0])
            cold_end = stop if cold_end >= stop else cold_end >> page_bits << page_bits
            if cold_end > pos[0]:
                pos[0] = cold_end
                continue
        base = pos[0] >> page_bits << page_bits
        want = page_size if stop is None else min(page_size, stop - base)
        data = segments.read(base, want)
        if len(data) <= pos[0] - base:
            break  # nothing written at pos (a clean end, or a missing file: see _pages_after)
        rc = lib.shoal_replay(data, base, len(data), pos, page_bits, ptr, tally_ptr, records)
        if index is not None:
            index.maybe_grow()
        if rc == lib.SHOAL_OK and len(data) < want:
            # Short page: the end of what was written. Replay stops short of
            # a header cut by the end of the file; that is a torn record.
            if data[pos[0] - base:].strip(b"\x00"):
                return pos[0], records[0], (f"log: torn record at address {pos[0]} "
                                            f"({base + len(data) - pos[0]} bytes); dropped the log from there")
            break
        if rc == lib.SHOAL_OK and base + len(data) < base + page_size:
            break  # reached stop inside the page
        if rc == lib.SHOAL_OK or rc == lib.SHOAL_END:
            next_base = base + page_size
            # A zero header ends a page; the log goes on only if the next page exists.
            if not segments.read(next_base, lib.SHOAL_HEADER_BYTES).strip(b"\x00"):
                break
            pos[0] = next_base
            continue
        if rc == lib.SHOAL_E_CORRUPT:
            return pos[0], records[0], (f"log: torn or corrupt record at address {pos[0]}; "
                                        f"dropped the log from there")
        raise CorruptionError(f"replay failed with code {rc} at address {pos[0]}")
    return pos[0], records[0], None


def _present_until(segments: SegmentFiles, page_bits: int, begin: int, address: int) -> int:
    """How far from begin toward `address` the segment files hold bytes
    (without verify: a missing or short file below a checkpoint's tail)."""
    span = page_bits + segments.segment_page_bits
    existing = set(segments.existing())
    for seg in range(begin >> span, ((address - 1) >> span) + 1 if address > begin else 0):
        lo = max(begin, seg << span)
        hi = min(address, (seg + 1) << span)
        size = segments.size(seg) if seg in existing else 0
        if (seg << span) + size < hi:
            return max(lo, (seg << span) + size)
    return address


def _pages_after(segments: SegmentFiles, page_bits: int, end: int) -> int:
    """Bytes the segment files hold in pages after the one `end` is in (from
    `end` on when it is a page start): log that the recovered tail cuts off.
    Normally 0: the tail page is the last page written."""
    span = page_bits + segments.segment_page_bits
    first = -(-end >> page_bits) << page_bits  # the next page start at or after end
    total = 0
    for seg in segments.existing():
        seg_start = seg << span
        size = segments.size(seg)
        lo = max(first, seg_start)
        if seg_start + size > lo:
            total += seg_start + size - lo
    return total


def _quarantine_checkpoint(ckpt_dir: Path, cid: int, lost: Path) -> None:
    """Move a checkpoint that must not be loaded out of the way: it would be
    reported at every open, and a checkpoint past the end could match a log
    that grows past its tail again."""
    lost.mkdir(parents=True, exist_ok=True)
    for name in (f"ckpt-{cid:06d}{suffix}" for suffix in SUFFIXES):
        try:
            os.replace(ckpt_dir / name, lost / name)
        except FileNotFoundError:
            pass
