"""The recorded begin address: `begin.json`, where the log begins after the
last compaction, and how many records lie below it.

Compaction (engine/compaction.py) writes it durably (atomic replace) before it
moves the log's begin and deletes segment files below it; opening reads it to
know where replay starts, finishes what a killed compaction left (segment
files wholly below begin), and counts the records exactly when it recovers
from a checkpoint older than a compaction: the file keeps
`records_before_begin` and that count at the begin address of every
checkpoint on disk.
"""
from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import StorageError
from ..files import write_atomic
from .address import FIRST_ADDRESS
from .checkpoint import crc32c, list_checkpoints
from .segments import unmap

if TYPE_CHECKING:  # pragma: no cover
    from .recovery import RecoveryReport
    from .segments import SegmentFiles

log = logging.getLogger("shoal.compaction")

BEGIN_FILE = "begin.json"
_FORMAT = 1


@dataclass
class BeginState:
    """begin.json: the begin address and how many records lie below it, plus
    that count at the begin address of each checkpoint on disk."""
    begin_address: int = FIRST_ADDRESS
    records_before_begin: int = 0
    at_checkpoint_begins: dict[int, int] = field(default_factory=dict)
    note: str | None = None  # why the file was not usable, for the recovery report


def load_begin(directory: Path) -> BeginState:
    path = directory / BEGIN_FILE
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return BeginState()
    try:
        meta = json.loads(raw)
        stored = meta.pop("crc32c")
        if crc32c(json.dumps(meta, sort_keys=True).encode()) != stored:
            raise ValueError("checksum mismatch")
        return BeginState(int(meta["begin_address"]), int(meta["records_before_begin"]),
                          {int(k): int(v) for k, v in meta["at_checkpoint_begins"].items()})
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        return BeginState(note=f"{BEGIN_FILE} failed verification ({exc}); begin taken from the oldest "
                               f"segment file")


def save_begin(directory: Path, state: BeginState) -> None:
    meta = {"format": _FORMAT, "begin_address": state.begin_address,
            "records_before_begin": state.records_before_begin,
            "at_checkpoint_begins": {str(k): v for k, v in sorted(state.at_checkpoint_begins.items())}}
    meta["crc32c"] = crc32c(json.dumps(meta, sort_keys=True).encode())
    write_atomic(directory / BEGIN_FILE, json.dumps(meta, sort_keys=True).encode())


def checkpoint_begins(ckpt_dir: Path) -> set[int]:
    """Begin addresses named by the checkpoints on disk (unverified: only
    used to keep bookkeeping that a recovery from them may need)."""
    out = set()
    for cid in list_checkpoints(ckpt_dir):
        try:
            out.add(int(json.loads((ckpt_dir / f"ckpt-{cid:06d}.json").read_bytes())["begin_address"]))
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return out


def recovery_begin(state: BeginState, segments: SegmentFiles) -> tuple[int, str | None]:
    """Where replay may start: the recorded begin, never below the oldest
    segment file (whose start is a page start, hence a record boundary).
    Compaction records its begin before it deletes the files below it and
    keeps the file holding it, so an oldest file that starts past the
    recorded begin means files were lost: the second value says so (None
    otherwise, and when begin.json was unusable: its own note covers it)."""
    recorded = max(FIRST_ADDRESS, state.begin_address)
    begin = recorded
    existing = segments.existing()
    if existing:
        begin = max(begin, existing[0] << (segments.page_bits + segments.segment_page_bits))
    if begin == recorded or state.note is not None:
        return begin, None
    return begin, (f"segment files below address {begin} are missing (the log began at {recorded}, "
                   f"and no compaction dropped them): {begin - recorded} bytes of records are lost")


def finish_interrupted(segments: SegmentFiles, begin: int) -> int:
    """At open (no readers yet): delete segment files a compaction left
    entirely below begin, and punch the hole below begin in the one holding
    it (a no-op where it is punched already). Returns how many files went."""
    gone = segments.detach_below(begin)
    for _, _, fd, m in gone:
        os.close(fd)
        unmap(m)
    try:
        segments.punch_below(begin)
    except StorageError as exc:  # what lies below begin is unreachable: a hole not made costs only space
        log.warning("could not free the log below begin %d: %s", begin, exc)
    return len(gone)


def records_after_recovery(report: RecoveryReport, state: BeginState) -> int:
    """Records in [begin, tail) after recovery: the checkpoint's count minus
    what compactions after it dropped, plus the replayed records."""
    if report.checkpoint_id is None or not report.records_at_checkpoint:
        return report.replayed_records  # replay started at begin: it counted them all
    ckpt_begin = report.checkpoint_begin
    if ckpt_begin >= state.begin_address:
        return report.records_at_checkpoint + report.replayed_records
    before = 0 if ckpt_begin <= FIRST_ADDRESS else state.at_checkpoint_begins.get(ckpt_begin)
    if before is None:
        log.warning("record count after recovery is approximate: no compaction record for begin %d", ckpt_begin)
        before = state.records_before_begin
    return report.records_at_checkpoint - (state.records_before_begin - before) + report.replayed_records
