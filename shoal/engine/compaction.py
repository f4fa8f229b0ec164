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
     Each page's values are tallied into a delta of the value tally
     (store/tally.py), which step 4 subtracts;
  2. the copies are made durable (flush + fsync);
  3. the new begin address is recorded durably (`begin.json`, written
     atomically), outside the writer lock (its fsyncs would stall ingest);
     it also keeps the count of records below the old begin, so a
     checkpoint written before step 4 reopens exactly;
  4. the value tally drops the delta and the log's begin address moves:
     chain walks stop below it, reads of addresses below it find nothing,
     index entries pointing below it are empty;
  5. segment files entirely below begin are deleted, and the blocks below
     begin in the file that holds it are freed (a hole punched, whole
     file-system blocks, the file's size and map kept: reads never go below
     begin). Deleted files' descriptors leave the C table at once, but are
     closed, and the hole punched, only once no reader is inside a native
     call that began before (the store's gate), since one may still pread
     them;
  6. once the index entries pointing below begin (values none of whose
     records survive) are a quarter of the table, the table is rebuilt
     without them, so a store under retention holds an index of the values
     it keeps, not of every value it ever saw.

A crash before 3 leaves the old begin (copies are newer versions: harmless);
after 3, reopening starts at the recorded begin, deletes the segment
files below it that 5 did not reach and punches the hole (and, finding its checkpoint's begin
older than the recorded one, counts the tally again from the log).

`begin.json` (store/begin.py) also counts the records below begin, so that
reopening from a checkpoint older than a compaction counts them exactly.
Retention (engine/retention.py) says where to cut; the thread here asks it.

Who calls what: Compactor.compact from any thread (one compaction at a
time); the retention thread; Store.close stops both before closing. The
compactor writes through the store's IngestCore (its writer lock, log,
index and record count) and reads liveness through the planner.
"""
from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

from ..errors import CorruptionError, InvalidArgument, StorageError, StoreClosed
from ..ingest import ingest as _ingest
from ..ingest.core import IngestCore
from ..ingest.framing import InputFormat
from ..psf import Expression
from ..results import CompactionResult
from ..store.address import FIRST_ADDRESS
from ..store.begin import BeginState, checkpoint_begins, save_begin
from ..store.tally import Tally, tally_range
from ..store.record import record_addresses
from ..store.scan import _AllRecords
from ..store.segments import unmap
from .retention import RetentionPolicy, page_cut

log = logging.getLogger("shoal.compaction")

# How long a compaction waits for readers to leave before it closes the fds
# of the segment files it deleted (the rest wait for the next chance).
_RETIRE_WAIT_S = 0.1


class _Stopped(Exception):
    """The store is closing: a compaction gives up before recording its cut."""


class Compactor:
    """Compaction of one store and its retention thread (see the module
    docstring). Holds `_lock` for a whole compaction, the store's writer lock
    only per copy batch and while the begin address moves.

    `live_mask(addresses)` (keyed stores) says which records are their key's
    live version; `sync` makes the log durable under the writer lock."""

    def __init__(self, core: IngestCore, path: Path, ckpt_dir: Path, timestamp: Expression | None, *,
                 keyed: bool, live_mask: Callable[[list[int]], list[bool]], sync: Callable[[], int]):
        self.core = core
        self.path = path
        self.ckpt_dir = ckpt_dir
        self.keyed = keyed
        self._live_mask = live_mask
        self._sync = sync
        self._stop = threading.Event()
        self.retention = RetentionPolicy(core.config, timestamp, core.log, core.gate, self._stop)
        self._state = BeginState()
        self._lock = threading.Lock()  # one compaction at a time
        self._all = _AllRecords()  # native record enumeration (one compaction at a time)
        self._thread: threading.Thread | None = None
        self._running = False
        self._runs = 0
        self._last: CompactionResult | None = None
        self._last_trigger: str | None = None
        self._bytes_reclaimed = 0
        self._records_dropped = 0
        self._errors = 0
        self._last_error: str | None = None
        # (gate token, fd, map) of deleted segments; (gate token, None, address) of a hole to punch below begin
        self._retired: list[tuple[int, int | None, object]] = []
        self._punched = 0  # bytes holes freed since a compaction last reported them
        self._retired_lock = threading.Lock()

    # ---- lifecycle ----
    def start(self, state: BeginState) -> None:
        """Begin state from recovery; start the retention thread if a policy is set."""
        self._state = state
        if self.retention.active:
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

    # ---- compaction ----
    def compact(self, until_address: int | None = None, retain_bytes: int | None = None, *,
                trigger: str = "manual") -> CompactionResult:
        if (until_address is None) == (retain_bytes is None):
            raise InvalidArgument("give exactly one of until_address or retain_bytes")
        for name, v in (("until_address", until_address), ("retain_bytes", retain_bytes)):
            if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < 0):
                raise InvalidArgument(f"{name} must be a non-negative int")
        with self._lock:
            if self._stop.is_set():
                raise StoreClosed("the store is closing")
            self.core.check_open()
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
        hlog = self.core.log
        return page_cut(hlog, until_address if until_address is not None else hlog.tail_address - retain_bytes)

    def _compact(self, until_address: int | None, retain_bytes: int | None) -> CompactionResult:
        core = self.core
        hlog = core.log
        t0 = time.monotonic()
        begin = hlog.begin_address
        cut = self._cut(until_address, retain_bytes)
        disk_before = hlog.segments.allocated_bytes()
        if cut <= begin:
            return CompactionResult(begin, begin, 0, 0, 0, 0, (time.monotonic() - t0) * 1000, disk_before,
                                    disk_before)
        # Pages below the cut are sealed; wait until the flusher wrote them,
        # so it never writes into a segment file that step 5 deletes.
        hlog.wait_flushed(cut)

        keyed = self.keyed
        below = copied = 0
        # What the dropped pages add to the value tally, subtracted when begin
        # moves past them (only values the tally holds: a delta never grows
        # past it).
        dropped = Tally.unbounded()
        for page in range(begin >> hlog.page_bits, cut >> hlog.page_bits):
            if self._stop.is_set():
                raise _Stopped
            tally_range(hlog, dropped, page << hlog.page_bits, (page + 1) << hlog.page_bits, only=core.tally,
                        gate=core.gate)
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

        with core.writer_first():
            if self._stop.is_set() or core.gate.closed:
                raise _Stopped
            if copied:
                self._sync()  # 2. copies durable before the cut is recorded
        state = self._state
        total = state.records_before_begin + below
        keep = {b: (state.records_before_begin if b == begin else state.at_checkpoint_begins.get(b))
                for b in checkpoint_begins(self.ckpt_dir) if b > FIRST_ADDRESS}
        if begin > FIRST_ADDRESS:  # a checkpoint written before step 4 below has the old begin
            keep[begin] = state.records_before_begin
        new_state = BeginState(cut, total, {b: d for b, d in keep.items() if d is not None})
        # 3. the cut recorded: its fsyncs take tens of ms on a busy disk, so
        # not under the writer lock (ingest goes on). A checkpoint meanwhile
        # records the old begin, whose count `keep` holds, so reopening from
        # it under the new begin counts exactly.
        save_begin(self.path, new_state)
        with core.writer_first():
            if self._stop.is_set() or core.gate.closed:
                raise _Stopped  # reopening applies the recorded cut
            self._state = new_state
            core.tally.subtract(dropped)
            hlog.shift_begin_address(cut)  # 4. readers stop below it
            hlog.forget_page_starts(cut >> hlog.page_bits)
            core.records -= below

        gone = hlog.segments.detach_below(cut)  # 5. whole segment files below begin,
        self._retire([(fd, m) for _, _, fd, m in gone], punch=cut)  # and a hole below it in the one holding it
        self._prune_index(cut)
        reclaimed = sum(size for _, size, _, _ in gone) + self._take_punched()
        return CompactionResult(begin, cut, reclaimed, below - copied, copied, len({seg for seg, _, _, _ in gone}),
                                (time.monotonic() - t0) * 1000, disk_before, hlog.segments.allocated_bytes())

    def _prune_index(self, cut: int) -> None:
        """6. Drop the index entries of chains that now lie wholly below
        begin, once they are a quarter of the table: without this, a store
        under retention would keep an entry for every value it ever saw.
        The count is a reader's pass (no lock); the rebuild, like growth,
        runs under the writer lock."""
        index = self.core.index
        entries = index.stats().entries
        dead = index.count_below(cut)
        if not dead or 4 * dead < entries:
            return
        with self.core.writer_first():
            if self._stop.is_set() or self.core.gate.closed:
                return
            dropped = index.prune(self.core.log.begin_address, self.core.config.index_bucket_bits)
        log.debug("index: %d dead entries dropped (%d before)", dropped, entries)

    def _retire(self, files: list[tuple[int, tuple | None]], punch: int | None = None) -> None:
        """Close deleted segments' fds and unmap their maps, and punch the
        hole below `punch` (the new begin) in the segment file holding it,
        once every reader inside a native call now has left (it may still
        pread or copy from them: a reader past that finds the C slots empty,
        or stops at begin). The last close of an unlinked file frees its
        blocks, a few ms per file: it happens here, never on a reader's
        thread. Waits briefly; what is still pending is done by the next
        compaction or retention check, or at store close."""
        if files or punch is not None:
            token = self.core.gate.mark()
            with self._retired_lock:
                self._retired.extend((token, fd, m) for fd, m in files)
                if punch is not None:
                    self._retired.append((token, None, punch))
        deadline = time.monotonic() + _RETIRE_WAIT_S
        while self._close_retired() and time.monotonic() < deadline:
            time.sleep(0.001)

    def _close_retired(self, *, force: bool = False) -> int:
        """Do the retirements (closes, unmaps, holes) no reader can be in the
        way of; returns how many wait."""
        gate = self.core.gate
        with self._retired_lock:
            ready = [r for r in self._retired if force or gate.idle_since(r[0])]
            self._retired = [r for r in self._retired if r not in ready]
            left = len(self._retired)
        for _, fd, m in ready:
            if fd is None:  # a hole below begin m (an address)
                try:
                    freed = self.core.log.segments.punch_below(m)
                except StorageError as exc:  # the data below begin is unreachable anyway: say so, go on
                    log.warning("compaction could not free the log below %d: %s", m, exc)
                    freed = 0
                with self._retired_lock:
                    self._punched += freed
                continue
            os.close(fd)
            unmap(m)
        return left

    def _take_punched(self) -> int:
        with self._retired_lock:
            n, self._punched = self._punched, 0
            return n

    def close_retired(self) -> None:
        """Store close, after the gate closed (no reader is left): close them all."""
        self._close_retired(force=True)

    def _page_records(self, page: int, begin: int) -> list[int]:
        """Addresses of the records (tombstones too) of a sealed page at or
        after begin. Unkeyed stores (no tombstones) count them in C, on the
        frame or the segment file's copy; keyed stores walk a copy of the
        page in Python, tombstones included."""
        hlog = self.core.log
        gate = self.core.gate
        base = page << hlog.page_bits
        start = max(base, FIRST_ADDRESS, begin)
        if not self.keyed:
            def visit(buf, valid):
                return self._all.matches(buf, base, valid, start, start, base + hlog.page_size) if valid else []
            try:
                with gate:
                    return hlog.visit_page(page, visit)
            except CorruptionError:
                pass  # count what precedes the damage below
        with gate:
            data, valid = hlog.page_bytes(page)
        addrs, damaged = record_addresses(data, base, valid, start)
        if damaged is not None:
            if self.keyed:  # live records may follow the damage: drop nothing
                raise CorruptionError(f"compaction: no valid record header at address {damaged}")
            log.warning("compaction: no valid record header at address %d; the rest of its page is "
                        "dropped uncounted", damaged)
        return addrs

    def _copy_live(self, addrs: list[int]) -> int:
        """Keyed stores: re-ingest the live records among addrs at the tail.
        Liveness and the append share one writer-lock hold."""
        core = self.core
        with core.writer_first():
            core.check_open()
            mask = self._live_mask(addrs)  # gated itself
            live = [a for a, ok in zip(addrs, mask) if ok]
            with core.gate:
                raws = core.log.read_records(live, payload_only=True) if live else []
            texts = [r for r in raws if r is not None]
            if not texts:
                return 0
            # A JSON array keeps each element's exact bytes (NDJSON would
            # need line breaks inside pretty-printed records replaced).
            # Copies are appends, not ingest calls: run_locked does not count them.
            res = _ingest.run_locked(core, b"[" + b",".join(texts) + b"]", format=InputFormat.ARRAY)
            if res.rejected:
                raise StorageError(f"compaction could not copy {res.rejected} live records "
                                   f"(first: {res.errors[0].error if res.errors else '?'}); nothing was dropped")
            return res.ingested

    # ---- retention ----
    def _retention_loop(self) -> None:
        interval = self.core.config.compaction_interval_seconds
        while not self._stop.wait(interval):
            try:
                self._close_retired()
                cut, trigger = self.retention.policy_cut()
                if cut is not None:
                    self.compact(until_address=cut, trigger=trigger)
            except StoreClosed:
                return
            except Exception as exc:  # noqa: BLE001 - a background thread: log, count, go on
                log.exception("background compaction failed")
                self._errors += 1
                self._last_error = f"{type(exc).__name__}: {exc}"

    # ---- stats ----
    def stats(self) -> dict:
        return {
            "runs": self._runs,
            "running": self._running,
            "last": None if self._last is None else dict(self._last.to_dict(), trigger=self._last_trigger),
            "bytes_reclaimed_total": self._bytes_reclaimed,
            "records_dropped_total": self._records_dropped,
            "records_before_begin": self._state.records_before_begin,
            "errors": self._errors,
            "fds_pending_close": sum(1 for r in self._retired if r[1] is not None),
            "holes_pending": sum(1 for r in self._retired if r[1] is None),
            "last_error": self._last_error,
            "policy": self.retention.to_dict(background=self._thread is not None),
        }
