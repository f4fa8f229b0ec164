"""Opening a store directory: take its lock, settle its settings, and bring
its log, index and PSF registry back to a consistent state (recovery).

The order matters and is what must stay true:
  1. `LOCK` (flock): one process per store directory;
  2. settings: `store.json` fixes the layout (page size, segment size, key)
     when the store is created; later opens may change only the others;
  3. the retention policy's timestamp expression is checked before anything
     on disk is touched;
  4. `begin.json` says where the log begins (store/begin.py); recovery
     (store/recovery.py) loads the newest usable checkpoint and replays the
     log after it; segment files a killed compaction left below begin are
     deleted, and bytes past the recovered tail are cut (kept aside when
     they hold damaged records);
  5. the registry drops PSF ranges past the tail, and the log opens at the
     recovered begin and tail.
A failure in any step releases the lock and leaves the directory as it was
found (or as recovery repaired it).
"""
from __future__ import annotations

import builtins
import fcntl
import json
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from .._native import ffi
from ..config import StoreConfig
from ..errors import InvalidArgument, PSFError, StoreLocked
from ..files import write_atomic
from ..psf import Expression, Registry, parse_definition
from ..store.begin import BeginState, finish_interrupted, load_begin, records_after_recovery, recovery_begin, save_begin
from ..store.frames import store_codec
from ..store.hlog import HybridLog
from ..store.index import HashIndex
from ..store.recovery import RecoveryReport, recover
from ..store.segments import SegmentFiles
from ..store.tally import Tally
from .retention import parse_timestamp

_FORMAT = 1
# Layout settings fixed when a store is created; the others may change per open.
_LAYOUT = ("page_size_bytes", "segment_size_bytes", "key", "compression")
_MAX_SEGMENTS = 1 << 20  # the C table of segment descriptors


@dataclass
class Opened:
    """What opening hands the Store facade."""
    lock_file: IO[Any]
    config: StoreConfig
    key_expr: Expression | None
    timestamp: Expression | None
    tmp_dir: Path
    ckpt_dir: Path
    registry: Registry
    index: HashIndex
    tally: Tally
    recovery: RecoveryReport
    log: HybridLog
    begin_state: BeginState
    records: int  # in [begin, tail)


def open_directory(path: Path, config: StoreConfig | None, overrides: dict) -> Opened:
    path.mkdir(parents=True, exist_ok=True)
    lock_file = _lock(path)
    try:
        return _open_locked(path, lock_file, config, overrides)
    except BaseException:
        lock_file.close()
        raise


def _open_locked(path: Path, lock_file: IO[Any], config: StoreConfig | None, overrides: dict) -> Opened:
    config = _resolve_config(path, config, overrides)
    limits = config.expression_limits
    key_expr = None
    if config.key is not None:
        try:
            key_expr = parse_definition(config.key, limits)
        except PSFError as exc:
            raise InvalidArgument(f"key: {exc}") from None
    tmp_dir = path / "tmp"
    tmp_dir.mkdir(exist_ok=True)
    ckpt_dir = path / "checkpoints"
    registry = Registry(path / "psfs.json", limits, max_active=config.max_active_psfs,
                        max_inactive=config.max_inactive_psfs)
    timestamp = parse_timestamp(config)  # the retention policy, checked before recovery touches anything
    begin_state = load_begin(path)
    page_bits = config.page_bits
    seg_bits = (config.segment_size_bytes // config.page_size_bytes).bit_length() - 1
    fds = ffi.new("int32_t[]", _MAX_SEGMENTS)
    segs = SegmentFiles(path / "log", page_bits, seg_bits, fds, _MAX_SEGMENTS, codec=store_codec(path / "log", config))
    try:
        begin, missing = recovery_begin(begin_state, segs)
        index, tally, report = recover(
            ckpt_dir, segs, page_bits, config.index_bucket_bits, begin,
            verify=config.verify_log_on_open,
            without_checkpoints="counts and indexes the missing oldest segment files" if missing else None,
            tally_bounds=(config.tally_max_values, config.tally_max_value_bytes),
            psf_starts={p.id: p.ranges[0][0] for p in registry.all() + registry.retired() if p.ranges})
        for note in (begin_state.note, missing):
            if note:
                report.dropped.append(note)
        if missing:  # reported once: the log begins where its files do now
            begin_state = BeginState(report.begin_address)
            save_begin(path, begin_state)
        # A checkpoint older than the last compaction holds entries of chains
        # now below begin (compaction's step 6, done here).
        if index.count_below(report.begin_address):
            index.prune(report.begin_address, config.index_bucket_bits)
        finish_interrupted(segs, report.begin_address)
        segs.truncate_after(report.tail_address, keep_in=report.quarantine)
        segs.sync_all()  # what a killed process left in the page cache, before anything new
    finally:
        segs.close()
    tail = report.tail_address
    registry.truncate(tail)
    registry.close_open_callables(tail)
    log = HybridLog(path / "log", config, report.begin_address, tail)
    return Opened(lock_file, config, key_expr, timestamp, tmp_dir, ckpt_dir, registry, index, tally, report, log,
                  begin_state, records_after_recovery(report, begin_state))


def _lock(path: Path) -> IO[Any]:
    f = builtins.open(path / "LOCK", "a+")
    try:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        f.close()
        raise StoreLocked(f"{path} is in use by another process") from None
    return f


def _resolve_config(path: Path, config: StoreConfig | None, overrides: dict) -> StoreConfig:
    meta_path = path / "store.json"
    base = config or StoreConfig()
    if overrides:
        try:
            base = base.replace(**overrides)
        except TypeError as exc:
            raise InvalidArgument(str(exc)) from None
    if meta_path.exists():
        meta = json.loads(meta_path.read_text())
        stored = StoreConfig.from_dict(meta["config"])
        explicit = set(overrides) | ({f for f in _LAYOUT if getattr(config, f) != getattr(StoreConfig(), f)}
                                     if config else set())
        for f in _LAYOUT:
            if f in explicit and getattr(base, f) != getattr(stored, f):
                raise InvalidArgument(f"{f} is fixed when a store is created "
                                      f"(this store has {getattr(stored, f)})")
        layout = {f: getattr(stored, f) for f in _LAYOUT}
        memory_given = "memory_budget_bytes" in overrides or (
            config is not None and config.memory_budget_bytes != StoreConfig().memory_budget_bytes)
        if not memory_given and base.memory_budget_bytes < 2 * stored.page_size_bytes:
            # The default budget holds two pages of up to 128 MiB; a store
            # created with larger pages opens with room for two of them.
            layout["memory_budget_bytes"] = 2 * stored.page_size_bytes
        base = base.replace(**layout)
    else:
        write_atomic(meta_path, json.dumps({"format": _FORMAT, "config": base.to_dict()}, indent=1).encode())
    return base
