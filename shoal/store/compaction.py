"""Compaction and retention: reclaim the log below a cut.

A compaction picks a cut, a page start (records never straddle pages, so a
page start is a record boundary that scans and replay can start from) at or
below the read-only address, and then, in the WiscKey order that makes a
crash at any instant lose nothing live:

  1. copy: reads the pages in [begin, cut) one at a time (the memory cost is
     one page; there is no second store) and, in a keyed store, re-ingests
     the payloads of records that are still live (the newest version of a
     key, not deleted) at the tail, so they are relinked into every active
     PSF chain. Each batch checks liveness and appends under the writer
     lock, so a newer version ingested meanwhile cannot be overtaken. In an
     unkeyed store nothing below a retention cut is live: nothing is copied.
  2. the copies are made durable (flush + fsync);
  3. the new begin address is recorded durably (`begin.json`, written
     atomically), under the writer lock so checkpoints interleave cleanly;
  4. the log's begin address moves: chain walks stop below it, reads of
     addresses below it find nothing, index entries pointing below it are
     empty;
  5. segment files entirely below begin are deleted. Their descriptors leave
     the C table at once, but are closed only once no reader is inside a
     native call (the store's gate), since one may still pread them;
  6. once the index entries pointing below begin (values none of whose
     records survive) are a quarter of the table, the table is rebuilt
     without them, so a store under retention holds an index of the values
     it keeps, not of every value it ever saw.

A crash before 3 leaves the old begin (copies are newer versions: harmless);
after 3, reopening starts at the recorded begin and deletes the segment
files below it that 5 did not reach.

`begin.json` also carries `records_before_begin` (records ever dropped) and
the same figure at the begin address of every checkpoint on disk, so that
reopening from a checkpoint older than a compaction counts the records
exactly.

Retention: StoreConfig.retain_bytes keeps the newest N bytes of log;
retain_seconds (with timestamp_expression) drops pages whose every record is
older than that. A daemon thread checks every compaction_interval_seconds
and compacts when the policy moves the cut by at least a page.

Who calls what: Compactor.compact from any thread (one compaction at a
time); the retention thread; Store.close stops both before closing.
"""
from __future__ import annotations

import contextlib
import dataclasses
import datetime
import json
import logging
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from ..errors import CorruptionError, InvalidArgument, PSFError, StorageError, StoreClosed
from .address import FIRST_ADDRESS
from ..files import write_atomic
from .checkpoint import crc32c, list_checkpoints
from .record import payload_of, record_addresses
from .scan import _AllRecords
from .segments import unmap

if TYPE_CHECKING:  # pragma: no cover
    from .recovery import RecoveryReport
    from .segments import SegmentFiles
    from .store import Store

log = logging.getLogger("shoal.compaction")

BEGIN_FILE = "begin.json"
_FORMAT = 1
# Epoch timestamps at or above this are milliseconds (1e11 s is the year 5138).
_MS_THRESHOLD = 1e11
# How long a compaction waits for readers to leave before it closes the fds
# of the segment files it deleted (the rest wait for the next chance).
_RETIRE_WAIT_S = 0.1


@dataclass(frozen=True)
class CompactionResult:
    """What one compaction did. bytes_reclaimed counts segment file bytes
    deleted (whole segments only); records_dropped are records below the cut
    that were not copied; records_copied were live and now sit at the tail."""
    begin_before: int
    begin_after: int
    bytes_reclaimed: int
    records_dropped: int
    records_copied: int
    segments_deleted: int
    duration_ms: float

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


# ---- the recorded begin address ----

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


def _checkpoint_begins(ckpt_dir: Path) -> set[int]:
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
    entirely below begin. Returns how many."""
    gone = segments.detach_below(begin)
    for _, _, fd, m in gone:
        os.close(fd)
        unmap(m)
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


# ---- timestamps ----

def timestamp_seconds(value: Any) -> float | None:
    """Epoch seconds from a timestamp value: a number of seconds or
    milliseconds, or an ISO-8601 string (UTC when it names no zone)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        v = float(value)
        if v != v or v in (float("inf"), float("-inf")):
            return None
        return v / 1000.0 if abs(v) >= _MS_THRESHOLD else v
    if isinstance(value, str):
        try:
            dt = datetime.datetime.fromisoformat(value.strip())
        except ValueError:
            return None
        if dt.tzinfo is None:
            dt = dt.replace(tzinfo=datetime.timezone.utc)
        return dt.timestamp()
    return None


# ---- the compactor ----

class _Stopped(Exception):
    """The store is closing: a compaction gives up before recording its cut."""


class Compactor:
    """Compaction of one store and its retention thread (see the module
    docstring). Holds `_lock` for a whole compaction, the store's writer lock
    only per copy batch and while the begin address moves."""

    def __init__(self, store: Store):
        self.store = store
        cfg = store.config
        from ..psf import EvaluationBudget, parse_definition
        self._timestamp = None
        if cfg.timestamp_expression is not None:
            try:
                self._timestamp = parse_definition(cfg.timestamp_expression, cfg.expression_limits)
            except PSFError as exc:
                raise InvalidArgument(f"timestamp_expression: {exc}") from None
        self._budget = lambda: EvaluationBudget(cfg.expression_limits)
        self._state = BeginState()
        self._lock = threading.Lock()  # one compaction at a time
        self._turnstile = threading.Lock()  # see _writer
        self._all = _AllRecords()  # native record enumeration (one compaction at a time)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._running = False
        self._runs = 0
        self._last: CompactionResult | None = None
        self._last_trigger: str | None = None
        self._bytes_reclaimed = 0
        self._records_dropped = 0
        self._errors = 0
        self._last_error: str | None = None
        self._retired: list[tuple[int, int, tuple | None]] = []  # (gate token, fd, map) of deleted segments
        self._retired_lock = threading.Lock()

    # ---- lifecycle ----
    def start(self, state: BeginState) -> None:
        """Begin state from recovery; start the retention thread if a policy is set."""
        self._state = state
        cfg = self.store.config
        if cfg.retain_bytes is not None or cfg.retain_seconds is not None:
            self._thread = threading.Thread(target=self._retention_loop, name="shoal-retention", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Stop the retention thread and wait for a compaction in progress
        to finish or give up (store close; idempotent)."""
        self._stop.set()
        t = self._thread
        if t is not None and t is not threading.current_thread():
            t.join()
        with self._lock:
            pass

    # ---- the writer lock ----
    @contextlib.contextmanager
    def _writer(self):
        """The store's writer lock, taken through a turnstile that ingest
        passes before it takes the lock: back-to-back ingest calls would
        otherwise win every hand-over (threading.Lock is not fair) and
        starve background compaction."""
        with self._turnstile:
            self.store._write_lock.acquire()
        try:
            yield
        finally:
            self.store._write_lock.release()

    def let_through(self) -> None:
        """Ingest, before taking the writer lock: wait while a compaction
        is queued for it (an uncontended acquire otherwise)."""
        with self._turnstile:
            pass

    # ---- compaction ----
    def compact(self, until_address: int | None = None, retain_bytes: int | None = None, *,
                trigger: str = "manual") -> CompactionResult:
        if (until_address is None) == (retain_bytes is None):
            raise InvalidArgument("give exactly one of until_address or retain_bytes")
        for name, v in (("until_address", until_address), ("retain_bytes", retain_bytes)):
            if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < 0):
                raise InvalidArgument(f"{name} must be a non-negative int")
        store = self.store
        if self.store.key is not None and not hasattr(store, "_live_mask"):
            raise NotImplementedError("compaction of a keyed store needs Store._live_mask")
        with self._lock:
            if self._stop.is_set():
                raise StoreClosed("the store is closing")
            store._check_open()
            self._running = True
            try:
                result = self._compact(until_address, retain_bytes)
            except _Stopped:
                raise StoreClosed("the store closed during compaction; nothing was reclaimed") from None
            finally:
                self._running = False
            if result.begin_after > result.begin_before:
                self._runs += 1
                self._last = result
                self._last_trigger = trigger
                self._bytes_reclaimed += result.bytes_reclaimed
                self._records_dropped += result.records_dropped
            return result

    def _cut(self, until_address: int | None, retain_bytes: int | None) -> int:
        hlog = self.store._log
        want = until_address if until_address is not None else hlog.tail_address - retain_bytes
        cut = min(want, hlog.read_only_address)  # never into the tail page
        return cut >> hlog.page_bits << hlog.page_bits

    def _compact(self, until_address: int | None, retain_bytes: int | None) -> CompactionResult:
        store = self.store
        hlog = store._log
        t0 = time.monotonic()
        begin = hlog.begin_address
        cut = self._cut(until_address, retain_bytes)
        if cut <= begin:
            return CompactionResult(begin, begin, 0, 0, 0, 0, (time.monotonic() - t0) * 1000)
        # Pages below the cut are sealed; wait until the flusher wrote them,
        # so it never writes into a segment file that step 5 deletes.
        hlog.wait_flushed(cut)

        keyed = store.key is not None
        below = copied = 0
        for page in range(begin >> hlog.page_bits, cut >> hlog.page_bits):
            if self._stop.is_set():
                raise _Stopped
            # Unkeyed: nothing to copy, only a count, known without reading
            # the page when this process wrote all of it.
            n = None if keyed or page << hlog.page_bits < begin else hlog.records_in_page(page)
            if n is not None:
                below += n
                continue
            addrs = self._page_records(page, begin)
            below += len(addrs)
            if keyed and addrs:
                copied += self._copy_live(addrs)

        with self._writer():
            if self._stop.is_set() or store.closed:
                raise _Stopped
            if copied:
                store._commit.sync_locked()  # 2. copies durable before the cut is recorded
            state = self._state
            total = state.records_before_begin + below
            keep = {b: (state.records_before_begin if b == begin else state.at_checkpoint_begins.get(b))
                    for b in _checkpoint_begins(store._ckpt_dir) if b > FIRST_ADDRESS}
            new_state = BeginState(cut, total, {b: d for b, d in keep.items() if d is not None})
            save_begin(store.path, new_state)  # 3. the cut recorded
            self._state = new_state
            hlog.shift_begin_address(cut)  # 4. readers stop below it
            hlog.forget_page_starts(cut >> hlog.page_bits)
            store._records -= below

        gone = hlog.segments.detach_below(cut)  # 5. whole segment files below begin
        self._retire([(fd, m) for _, _, fd, m in gone])
        self._prune_index(cut)
        reclaimed = sum(size for _, size, _, _ in gone)
        return CompactionResult(begin, cut, reclaimed, below - copied, copied, len(gone),
                                (time.monotonic() - t0) * 1000)

    def _prune_index(self, cut: int) -> None:
        """6. Drop the index entries of chains that now lie wholly below
        begin, once they are a quarter of the table: without this, a store
        under retention would keep an entry for every value it ever saw.
        The count is a reader's pass (no lock); the rebuild, like growth,
        runs under the writer lock."""
        index = self.store._index
        entries = index.stats().entries
        dead = index.count_below(cut)
        if not dead or 4 * dead < entries:
            return
        with self._writer():
            if self._stop.is_set() or self.store.closed:
                return
            dropped = index.prune(self.store._log.begin_address, self.store.config.index_bucket_bits)
        log.debug("index: %d dead entries dropped (%d before)", dropped, entries)

    def _retire(self, files: list[tuple[int, tuple | None]]) -> None:
        """Close deleted segments' fds and unmap their maps once every reader
        inside a native call now has left (it may still pread or copy from
        them; a later reader finds the C slots empty). The last close of an
        unlinked file frees its blocks, a few ms per file: it happens here,
        never on a reader's thread. Waits briefly; what is still pending is
        closed by the next compaction or retention check, or at store close."""
        if files:
            token = self.store._gate.mark()
            with self._retired_lock:
                self._retired.extend((token, fd, m) for fd, m in files)
        deadline = time.monotonic() + _RETIRE_WAIT_S
        while self._close_retired() and time.monotonic() < deadline:
            time.sleep(0.001)

    def _close_retired(self, *, force: bool = False) -> int:
        """Close the retired fds (and unmap their maps) no reader can be
        using; returns how many wait."""
        gate = self.store._gate
        with self._retired_lock:
            ready = [r for r in self._retired if force or gate.idle_since(r[0])]
            self._retired = [r for r in self._retired if r not in ready]
            left = len(self._retired)
        for _, fd, m in ready:
            os.close(fd)
            unmap(m)
        return left

    def close_retired(self) -> None:
        """Store close, after the gate closed (no reader is left): close them all."""
        self._close_retired(force=True)

    def _page_records(self, page: int, begin: int) -> list[int]:
        """Addresses of the records (tombstones too) of a sealed page at or
        after begin. Unkeyed stores (no tombstones) count them in C, on the
        frame or the segment file's copy; keyed stores walk a copy of the
        page in Python, tombstones included."""
        hlog = self.store._log
        base = page << hlog.page_bits
        start = max(base, FIRST_ADDRESS, begin)
        if self.store.key is None:
            def visit(buf, valid):
                return self._all.matches(buf, base, valid, start, start, base + hlog.page_size) if valid else []
            try:
                with self.store._gate:
                    return hlog.visit_page(page, visit)
            except CorruptionError:
                pass  # count what precedes the damage below
        with self.store._gate:
            data, valid = hlog.page_bytes(page)
        addrs, damaged = record_addresses(data, base, valid, start)
        if damaged is not None:
            if self.store.key is not None:  # live records may follow the damage: drop nothing
                raise CorruptionError(f"compaction: no valid record header at address {damaged}")
            log.warning("compaction: no valid record header at address %d; the rest of its page is "
                        "dropped uncounted", damaged)
        return addrs

    def _copy_live(self, addrs: list[int]) -> int:
        """Keyed stores: re-ingest the live records among addrs at the tail.
        Liveness and the append share one writer-lock hold."""
        from ..ingest import ingest as _ingest
        from ..ingest.framing import InputFormat
        store = self.store
        with self._writer():
            store._check_open()
            with store._gate:
                mask = store._live_mask(addrs)
                live = [a for a, ok in zip(addrs, mask) if ok]
                raws = store._log.read_records(live, payload_only=True) if live else []
            texts = [r for r in raws if r is not None]
            if not texts:
                return 0
            # A JSON array keeps each element's exact bytes (NDJSON would
            # need line breaks inside pretty-printed records replaced).
            totals = dict(store._ingest_totals)
            try:
                res = _ingest.run_locked(store, b"[" + b",".join(texts) + b"]", format=InputFormat.ARRAY)
            finally:
                store._ingest_totals.update(totals)  # copies are not ingest calls
            if res.rejected:
                raise StorageError(f"compaction could not copy {res.rejected} live records "
                                   f"(first: {res.errors[0].error if res.errors else '?'}); nothing was dropped")
            return res.ingested

    # ---- retention ----
    def _retention_loop(self) -> None:
        interval = self.store.config.compaction_interval_seconds
        while not self._stop.wait(interval):
            try:
                self._close_retired()
                cut, trigger = self.policy_cut()
                if cut is not None:
                    self.compact(until_address=cut, trigger=trigger)
            except StoreClosed:
                return
            except Exception as exc:  # noqa: BLE001 - a background thread: log, count, go on
                log.exception("background compaction failed")
                self._errors += 1
                self._last_error = f"{type(exc).__name__}: {exc}"

    def policy_cut(self, now: float | None = None) -> tuple[int | None, str | None]:
        """The cut the retention policy asks for, if it moves begin by at
        least a page, and which rule asked."""
        cfg = self.store.config
        hlog = self.store._log
        begin = hlog.begin_address
        best, trigger = None, None
        if cfg.retain_bytes is not None:
            cut = self._cut(None, cfg.retain_bytes)
            if cut > begin:
                best, trigger = cut, "retain_bytes"
        if cfg.retain_seconds is not None and self._timestamp is not None:
            now = time.time() if now is None else now
            cut = self.age_cut(now - cfg.retain_seconds)
            if cut > begin and (best is None or cut > best):
                best, trigger = cut, "retain_seconds"
        return best, trigger

    def age_cut(self, threshold: float) -> int:
        """The start of the first page holding a record whose timestamp is at
        or after `threshold` (or unreadable: such records count as new), at
        most the read-only address."""
        hlog = self.store._log
        begin = hlog.begin_address
        limit = hlog.read_only_address
        page = begin >> hlog.page_bits
        budget = self._budget()  # per call: a budget is not thread-safe
        while page << hlog.page_bits < limit:
            if self._stop.is_set():
                break
            base = page << hlog.page_bits
            with self.store._gate:
                data, valid = hlog.page_bytes(page)
            addrs, damaged = record_addresses(data, base, valid, max(base, FIRST_ADDRESS, begin),
                                              tombstones=False)
            if damaged is not None:
                return max(begin, base)  # unreadable: kept (retention by bytes can drop it)
            mv = memoryview(data)
            for a in reversed(addrs):  # the newest record of a page is the likeliest to be new
                if self._is_new(payload_of(mv, a - base), threshold, budget):
                    return max(begin, base)
            page += 1
        return limit

    def _is_new(self, text: bytes, threshold: float, budget) -> bool:
        try:
            ts = timestamp_seconds(budget.search(self._timestamp, orjson.loads(text)))
        except Exception:  # noqa: BLE001 - an unreadable timestamp (or over budget) counts as new
            return True
        return ts is None or ts >= threshold

    # ---- stats ----
    def stats(self) -> dict:
        cfg = self.store.config
        return {
            "runs": self._runs,
            "running": self._running,
            "last": None if self._last is None else dict(self._last.to_dict(), trigger=self._last_trigger),
            "bytes_reclaimed_total": self._bytes_reclaimed,
            "records_dropped_total": self._records_dropped,
            "records_before_begin": self._state.records_before_begin,
            "errors": self._errors,
            "fds_pending_close": len(self._retired),
            "last_error": self._last_error,
            "policy": {"retain_bytes": cfg.retain_bytes, "retain_seconds": cfg.retain_seconds,
                       "timestamp_expression": cfg.timestamp_expression,
                       "interval_seconds": cfg.compaction_interval_seconds,
                       "background": self._thread is not None},
        }
