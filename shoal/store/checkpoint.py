"""Checkpoints: a consistent (log tail, index) pair on disk.

Order of writes (each file: temp name, fsync, rename, fsync directory):
  1. the log is flushed and fsynced up to the tail;
  2. the index dump `ckpt-<n>.index` and the value tally `ckpt-<n>.tally`
     (store/tally.py), both taken under the writer lock at the same tail;
  3. the metadata `ckpt-<n>.json` naming the index and tally files, their
     CRC32Cs, the tail and begin addresses. The metadata is written last, so a checkpoint
     exists only once everything it names is durable.
Recovery takes the newest checkpoint whose metadata and index verify and
whose tail the log reaches, then replays the log after its tail. The two
newest checkpoints are kept, so a damaged newest one falls back to the other.

A write that fails (disk full, I/O error) removes its temp file and, when the
metadata failed, the index file of the same id: no half-written checkpoint is
ever named by a metadata file, and the older checkpoints stay as they were.
Leftovers of a killed checkpoint are removed on open (`remove_leftovers`).

Writer only (the store's writer lock).
"""
from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path

from .._native import lib
from ..results import CheckpointInfo
from ..files import TEMP_SUFFIX, write_atomic

_META = re.compile(r"^ckpt-(\d{6,})\.json$")
KEEP = 2
_INDEX = re.compile(r"^ckpt-(\d{6,})\.(index|tally)$")
SUFFIXES = (".json", ".index", ".tally")


def crc32c(data: bytes) -> int:
    return lib.shoal_crc32c(0, data, len(data))


def remove_leftovers(directory: Path) -> None:
    """Remove what a killed checkpoint left: temp files, and index files
    whose metadata was never written (neither is ever loaded)."""
    if not directory.exists():
        return
    names = set(os.listdir(directory))
    for name in names:
        m = _INDEX.match(name)
        if name.endswith(TEMP_SUFFIX) or (m and f"ckpt-{m.group(1)}.json" not in names):
            _unlink(directory / name)


def _unlink(path: Path) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def list_checkpoints(directory: Path) -> list[int]:
    if not directory.exists():
        return []
    ids = [int(m.group(1)) for n in os.listdir(directory) if (m := _META.match(n))]
    return sorted(ids)


def write_checkpoint(directory: Path, index_bytes: bytes, tail: int, begin: int, records: int,
                     tally_bytes: bytes | None = None) -> CheckpointInfo:
    directory.mkdir(parents=True, exist_ok=True)
    existing = list_checkpoints(directory)
    cid = (existing[-1] + 1) if existing else 1
    t0 = time.monotonic()
    index_name = f"ckpt-{cid:06d}.index"
    tally_name = f"ckpt-{cid:06d}.tally"
    write_atomic(directory / index_name, index_bytes)  # an index without metadata is never loaded
    info = CheckpointInfo(cid, tail, begin, records, time.time())
    meta = dict(info.to_dict(), index_file=index_name, index_bytes=len(index_bytes),
                index_crc32c=crc32c(index_bytes), format=1)
    if tally_bytes is not None:
        try:
            write_atomic(directory / tally_name, tally_bytes)
        except BaseException:
            _unlink(directory / index_name)
            raise
        meta.update(tally_file=tally_name, tally_bytes=len(tally_bytes), tally_crc32c=crc32c(tally_bytes))
    body = json.dumps(meta, sort_keys=True).encode()
    meta["meta_crc32c"] = crc32c(body)
    try:
        write_atomic(directory / f"ckpt-{cid:06d}.json", json.dumps(meta, sort_keys=True).encode())
    except BaseException:  # the metadata may have been renamed into place: remove them all
        for suffix in SUFFIXES:
            _unlink(directory / f"ckpt-{cid:06d}{suffix}")
        raise
    for old in existing[:-(KEEP - 1)] if KEEP > 1 else existing:
        for suffix in SUFFIXES:
            _unlink(directory / f"ckpt-{old:06d}{suffix}")
    duration = (time.monotonic() - t0) * 1000
    return CheckpointInfo(cid, tail, begin, records, info.created_at, duration)


def load_checkpoint(directory: Path, cid: int) -> tuple[dict, bytes, bytes | None] | None:
    """The checkpoint's metadata, index bytes and tally bytes (None: a
    checkpoint written before tallies), or None if anything fails to verify."""
    try:
        meta = json.loads((directory / f"ckpt-{cid:06d}.json").read_bytes())
        stored = meta.pop("meta_crc32c")
        if crc32c(json.dumps(meta, sort_keys=True).encode()) != stored:
            return None
        data = (directory / meta["index_file"]).read_bytes()
        if len(data) != meta["index_bytes"] or crc32c(data) != meta["index_crc32c"]:
            return None
        tally = None
        if "tally_file" in meta:
            tally = (directory / meta["tally_file"]).read_bytes()
            if len(tally) != meta["tally_bytes"] or crc32c(tally) != meta["tally_crc32c"]:
                return None
        return meta, data, tally
    except (OSError, ValueError, KeyError, TypeError):
        return None
