"""Store: the one object users hold, a thin facade. Each call delegates to
the part that owns it:

  opening and recovery   engine/opening.py
  reads and queries      engine/planner.py (chains and scans: store/)
  ingest                 ingest/ (through the IngestCore built here)
  PSFs                   psf/ (the registry; compiled sets swapped in here)
  durability             store/commit.py (group commit), store/checkpoint.py
  compaction, retention  engine/compaction.py, engine/retention.py
  counts, top values     engine/counts.py (the value tally: store/tally.py)
  ranges, time windows   engine/ranges.py, engine/windows.py
  the live tail          engine/tail.py

Why this file is long: it is the whole public API in one class. Each method
is its contract (the docstring users read) and one delegation to the room
above; splitting it would scatter the API, not the work.

Concurrency (what protects what):
  - the writer lock (IngestCore.lock, also `_write_lock` here) serializes
    every writer: ingest, PSF registration, checkpoint, close. Ingest holds
    it while it appends; a durable ingest then waits for its fsync without
    it (group commit: concurrent durable ingests share fsyncs).
  - Readers (query, scan, get, stats) take no lock. They run C code that
    releases the GIL, read log addresses atomically, and validate in-memory
    reads against page eviction. The compiled PSF set is replaced, never
    mutated, so a reader keeps a consistent snapshot.
  - the reader gate counts readers inside native calls so close() can wait
    for them before freeing the index and closing files; after close every
    call raises StoreClosed.
"""
from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import orjson

from ..config import StoreConfig
from ..errors import InvalidArgument
from ..files import tree_bytes
from ..ingest import ingest as _ingest
from ..ingest.core import IngestCore
from ..ingest.framing import InputFormat
from ..psf import PSF
from ..psf.compiled import Compiled, compile_active
from ..results import CheckpointInfo, CompactionResult, IngestResult, Record, RecordBatch
from ..store.checkpoint import list_checkpoints, write_checkpoint
from ..store.commit import GroupCommit
from ..store.cooling import Cooling
from ..store.gate import Gate
from ..store.keys import KeyIndex, key_canon
from ..store.recovery import LOST_AND_FOUND
from ..store.segments import segment_bytes
from .compaction import Compactor
from .counts import Counts
from .ranges import Ranges
from .tail import Tail
from .windows import TIME_PSF, Windows
from .opening import open_directory
from .planner import ORDERS, Planner  # noqa: F401 - ORDERS: the orders a query takes, for callers


def open(path: str | os.PathLike, config: StoreConfig | None = None, **overrides: Any) -> "Store":
    """Open the store in directory `path`, creating it if needed and
    recovering it if it exists. Settings: a StoreConfig and/or keyword
    overrides of its fields (e.g. memory_budget_bytes=1 << 30)."""
    return Store(path, config, **overrides)


class Store:
    def __init__(self, path: str | os.PathLike, config: StoreConfig | None = None, **overrides: Any):
        self.path = Path(path)
        o = open_directory(self.path, config, overrides)
        self._lock_file = o.lock_file
        self.config = o.config
        self.key: str | None = o.config.key
        self._key_expr = o.key_expr
        self.tmp_dir = o.tmp_dir
        self._ckpt_dir = o.ckpt_dir
        self._registry = o.registry
        self._index = o.index
        self.recovery = o.recovery
        self._log = o.log
        self._gate = Gate()
        # compression="zstd": written pages compressed in the background (store/cooling.py)
        self._cooling = Cooling(o.log, self._gate) if o.config.compression == "zstd" else None
        # psf_id -> records a slow-path PSF failed on (and, of those, went over
        # its evaluation budget) since this open; kept across recompiles.
        self._eval_errors: dict[int, int] = {}
        self._over_budget: dict[int, int] = {}
        self._tally = o.tally
        self._core = IngestCore(o.config, o.log, o.index, o.tally, self._gate, o.tmp_dir, self._compile(),
                                o.records)
        self._write_lock = self._core.lock
        self._commit = GroupCommit(o.log, self._write_lock, o.recovery.tail_address)
        self._keys = KeyIndex(o.log, o.index) if self.key is not None else None
        self._planner = Planner(o.config, o.log, o.index, o.registry, self._keys, self._gate, o.tally)
        self._counts = Counts(self._planner, o.tally)
        self._ranges = Ranges(self._planner, o.tally)
        self._windows = Windows(self._planner, self._ranges)
        self._tail = Tail(self._planner, self._core.appended)
        self._counts.windows = self._windows
        if o.config.time_field is not None:
            self._keep_time_field(o.config.time_field, o.config.time_bucket_seconds)
        self._compactor = Compactor(self._core, self.path, o.ckpt_dir, o.timestamp, keyed=self._keys is not None,
                                    live_mask=self._planner.live_mask, sync=self._commit.sync_locked)
        self._compactor.start(o.begin_state)

    # ---- lifecycle ----
    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def closed(self) -> bool:
        return self._gate.closed

    def close(self) -> None:
        """Flush the log, wait for readers, release everything. Idempotent."""
        if self._gate.closed:
            return
        self._compactor.stop()
        with self._write_lock:
            if self._gate.closed:
                return
            try:
                if self._log.writable:  # else the failed fsync was reported already
                    self._commit.sync_locked()
            finally:
                self._commit.close()
                self._gate.close()
                if self._cooling is not None:
                    self._cooling.close()
                self._compactor.close_retired()  # no reader left: deleted segments' fds
                self._log.close()
                self._index.free()
                self._tally.free()
                self._lock_file.close()

    # ---- addresses ----
    @property
    def begin_address(self) -> int:
        return self._log.begin_address

    @property
    def head_address(self) -> int:
        return self._log.head_address

    @property
    def read_only_address(self) -> int:
        return self._log.read_only_address

    @property
    def tail_address(self) -> int:
        return self._log.tail_address

    # ---- PSFs ----
    def _compile(self) -> Compiled:
        return compile_active(self._registry.active(), self._key_expr, self.config.expression_limits,
                              errors=self._eval_errors, over_budget=self._over_budget)

    def register_psf(self, name: str, definition: str | Callable[..., Any], *,
                     fields: Sequence[str] | None = None, exist_ok: bool = False, replace: bool = False,
                     bucket: float | None = None, time: bool = False) -> PSF:
        """Register a PSF: a JMESPath expression, or a callable receiving the
        values of `fields` (or the parsed record when fields is None). Every
        record ingested from now on is indexed by it; queries over older
        records scan them, so answers are complete either way.

        A name that is active raises PSFExists (its message shows the
        current definition), except: with `exist_ok=True` and the same
        definition, the active PSF is returned as it is (no new range), so
        setup code may run twice; with `replace=True` a different definition
        takes the name over: the old PSF is deregistered and the new one
        registered at the same tail address, under the writer lock (no
        record lands between), in one save of the registry.

        bucket=W makes a bucketed PSF: a numeric value x is indexed as the
        bucket floor(x / W), so `query_range` and `count_range` answer
        ranges of values by walking the buckets' chains (the expression
        must be one the C core evaluates: a path). With time=True the
        value is a time (epoch seconds, milliseconds from 1e11 on, or an
        ISO-8601 string) and W is in seconds. group_count of a bucketed
        PSF is a histogram: each bucket's smallest value and its count."""
        # Batches prepared outside the writer lock by the PSF set before this
        # one are committed first (ingest/core.py PsfHold).
        with self._core.psf_hold.exclusive(), self._write_lock:
            self._gate.check_open()
            tail = self._log.tail_address
            try:
                psf = self._registry.register(name, definition, fields=fields, address=tail,
                                              begin=self._log.begin_address, exist_ok=exist_ok, replace=replace,
                                              bucket=bucket, time=time)
                # A PSF that starts here (a new one, or one whose id an earlier
                # PSF held) is tallied from here; one resumed keeps its counts.
                if psf.ranges and psf.ranges[0][0] == tail and self._tally.state(psf.id).since != tail:
                    self._tally.reset(psf.id, tail)
                return psf
            finally:  # also after a failed save: ingest indexes what the registry says
                self._core.compiled = self._compile()

    def _keep_time_field(self, expression: str, bucket: float) -> None:
        """The time PSF of a store opened with time_field: registered, or
        replaced when the field or bucket changed (records before are then
        scanned for windows). A store opened without it keeps what it has."""
        try:
            self.register_psf(TIME_PSF, expression, bucket=bucket, time=True, exist_ok=True, replace=True)
        except BaseException:
            self.close()
            raise

    def deregister_psf(self, name: str) -> PSF:
        """Stop indexing by a PSF; returns it with its closed active range."""
        with self._core.psf_hold.exclusive(), self._write_lock:
            self._gate.check_open()
            try:
                return self._registry.deregister(name, address=self._log.tail_address,
                                                 begin=self._log.begin_address)
            finally:
                self._core.compiled = self._compile()

    def psf(self, name: str) -> PSF:
        self._gate.check_open()
        return self._registry.get(name)

    def psfs(self, *, include_inactive: bool = True) -> list[PSF]:
        self._gate.check_open()
        return self._registry.all() if include_inactive else self._registry.active()

    # ---- ingest ----
    def ingest(self, data: Any, *, on_error: str = "skip", durable: bool = False,
               format: str | InputFormat = "auto", max_input_bytes: int | None = None,
               addresses: bool = False, threads: int = 1) -> IngestResult:
        """Store JSON records from bytes, a path, a binary file or an
        iterable of byte chunks (NDJSON, a JSON array, or gzip of either).
        on_error="skip" stores the valid records and reports the bad ones;
        "reject" stores nothing if any record is bad (raises IngestRejected).
        durable=True returns only once the records are on disk.

        A file object or iterable is read with the writer lock released
        while each chunk is pulled (with on_error="skip"; "reject" spools it
        first), so a slow producer holds up no other writer, and other
        writers' records may land between this call's: first_address ..
        last_address spans this call's records, not only them.

        An ingest that fails partway (a truncated gzip input, a source that
        raises, InputTooLarge past `max_input_bytes` of decompressed input)
        keeps the records before the failure, a prefix of the input's, and
        counts them; the error's `ingest_result` says how many and where.
        With on_error="reject" nothing is stored.

        addresses=True fills result.addresses: the address of each input
        record, in input order, 0 for one rejected (Store.get reads it).

        Calls on several threads run at once: each prepares its batches
        (parse, validate, evaluate) with no lock held and only appends them
        under the writer lock, so their records may interleave by batch,
        each call's in its input order. threads=N does that within one call
        (on_error="skip", input over two batches): its batches are prepared
        on N threads and appended in input order."""
        self._gate.check_open()
        result, end = _ingest.run(self._core, data, on_error=on_error, format=format, max_input_bytes=max_input_bytes,
                                  addresses=addresses, threads=threads)
        if durable:
            self._commit.wait_durable(end)
            result.durable = True
        return result

    def check(self, data: Any, *, format: str | InputFormat = "auto",
              max_input_bytes: int | None = None) -> IngestResult:
        """What ingest(data, on_error="reject") would find, storing nothing:
        result.ingested counts the records it would store, result.rejected
        and result.errors the bad ones (as ingest reports them)."""
        self._gate.check_open()
        return _ingest.check(self._core, data, format=format, max_input_bytes=max_input_bytes)

    # ---- reads (engine/planner.py) ----
    def get(self, address: int) -> Record | None:
        """The record at `address`, or None if no record starts there."""
        return self._planner.get(address)

    def query(self, psf: str, value: Any = True, *, limit: int | None = None, order: str = "newest",
              from_address: int | None = None, to_address: int | None = None,
              include_superseded: bool = False, fields: Sequence[str] | None = None,
              since: Any = None, until: Any = None) -> Iterator[Record]:
        """Records whose PSF `psf` has value `value` (JSON semantics: 1 == 1.0,
        escapes do not matter), lazily, newest first by default. In a keyed
        store only live versions are returned unless include_superseded.
        Newest-first answers are read in batches of up to 1,024 records, the
        first at the call: an answer that fits in it is a snapshot taken then.

        fields=["type", "repo.name"] (every query and scan takes it) gives
        each record as an object of just those fields, as Elasticsearch's
        `_source` filtering does: plain paths keep their nesting and are cut
        out in C, any other expression is evaluated and put under its text
        (store/projection.py). A Record's address stays the record's.

        Pages: an answer resumes where it stopped from the last address it
        gave: to_address=last.address newest first, from_address=last.address
        + 1 oldest first. Addresses never change, so pages never repeat or
        skip a record while ingest runs."""
        if since is not None or until is not None:
            return self._windows.query([(psf, value)], "all", since, until, limit=limit, order=order,
                                       from_address=from_address, to_address=to_address,
                                       include_superseded=include_superseded, fields=fields, cancel=None,
                                       batches=False)
        return self._planner.query(psf, value, limit=limit, order=order, from_address=from_address,
                                   to_address=to_address, include_superseded=include_superseded, fields=fields)

    def query_all(self, conditions: Iterable[tuple[str, Any]], *, limit: int | None = None,
                  order: str = "newest", from_address: int | None = None,
                  to_address: int | None = None, include_superseded: bool = False,
                  fields: Sequence[str] | None = None, since: Any = None,
                  until: Any = None) -> Iterator[Record]:
        """Records matching every (psf, value) condition."""
        if since is not None or until is not None:
            return self._windows.query(list(conditions), "all", since, until, limit=limit, order=order,
                                       from_address=from_address, to_address=to_address,
                                       include_superseded=include_superseded, fields=fields, cancel=None,
                                       batches=False)
        return self._planner.query_all(conditions, limit=limit, order=order, from_address=from_address,
                                       to_address=to_address, include_superseded=include_superseded, fields=fields)

    def query_any(self, conditions: Iterable[tuple[str, Any]], *, limit: int | None = None,
                  order: str = "newest", from_address: int | None = None,
                  to_address: int | None = None, include_superseded: bool = False,
                  fields: Sequence[str] | None = None, since: Any = None,
                  until: Any = None) -> Iterator[Record]:
        """Records matching at least one (psf, value) condition."""
        if since is not None or until is not None:
            return self._windows.query(list(conditions), "any", since, until, limit=limit, order=order,
                                       from_address=from_address, to_address=to_address,
                                       include_superseded=include_superseded, fields=fields, cancel=None,
                                       batches=False)
        return self._planner.query_any(conditions, limit=limit, order=order, from_address=from_address,
                                       to_address=to_address, include_superseded=include_superseded, fields=fields)

    def query_addresses(self, conditions: Iterable[tuple[str, Any]], *, mode: str = "all",
                        order: str = "newest", from_address: int | None = None,
                        to_address: int | None = None, include_superseded: bool = False,
                        cancel: threading.Event | None = None) -> Iterator[int]:
        """Like query_all/query_any, yielding addresses only. `cancel` as
        in query_batches."""
        return self._planner.query_addresses(conditions, mode=mode, order=order, from_address=from_address,
                                             to_address=to_address, include_superseded=include_superseded,
                                             cancel=cancel)

    def query_batches(self, conditions: Iterable[tuple[str, Any]], *, mode: str = "all",
                      limit: int | None = None, order: str = "newest", from_address: int | None = None,
                      to_address: int | None = None, include_superseded: bool = False,
                      cancel: threading.Event | None = None,
                      fields: Sequence[str] | None = None, since: Any = None,
                      until: Any = None) -> Iterator[RecordBatch]:
        """The records of query_all (mode "all") or query_any (mode "any") as
        RecordBatches: the records' text in one buffer per batch, with no
        Python object per record. The bulk path: `batch.ndjson()` goes to a
        file or socket as is, and iterating a batch gives Records.

        Once `cancel` (a threading.Event) is set, a scan of a range where a
        PSF was not active stops before its next page (or record, for a
        Python PSF) and the answer ends early, incomplete: the caller that
        set it must not take it for the whole answer. A walk of a chain
        reads one batch per next() and needs no such check."""
        if since is not None or until is not None:
            conditions = list(conditions)
            if not conditions or mode not in ("all", "any"):
                raise InvalidArgument("at least one condition, and mode 'all' or 'any'")
            return self._windows.query(conditions, mode, since, until, limit=limit, order=order,
                                       from_address=from_address, to_address=to_address,
                                       include_superseded=include_superseded, fields=fields, cancel=cancel,
                                       batches=True)
        return self._planner.query_batches(conditions, mode=mode, limit=limit, order=order,
                                           from_address=from_address, to_address=to_address,
                                           include_superseded=include_superseded, cancel=cancel, fields=fields)

    def scan(self, expression: str, *, limit: int | None = None, order: str = "newest",
             from_address: int | None = None, to_address: int | None = None,
             include_superseded: bool = False, cancel: threading.Event | None = None,
             fields: Sequence[str] | None = None, since: Any = None,
             until: Any = None) -> Iterator[Record]:
        """Records for which a JMESPath expression is truthy, by scanning the
        log (no index needed). Keyed stores: live versions only unless
        include_superseded. The expression is checked against the store's
        expression limits (ExpressionTooLong, ExpressionTooDeep at the call);
        on a record where it goes over its evaluation budget the scan stops
        with EvaluationBudgetExceeded (an answer silently missing records
        would look complete). Once `cancel` is set, the scan stops before its
        next record and the iterator ends."""
        if since is not None or until is not None:
            return self._windows.scan(expression, since, until, limit=limit, order=order, from_address=from_address,
                                      to_address=to_address, include_superseded=include_superseded, fields=fields,
                                      cancel=cancel, batches=False)
        return self._planner.scan(expression, limit=limit, order=order, from_address=from_address,
                                  to_address=to_address, include_superseded=include_superseded, cancel=cancel,
                                  fields=fields)

    def scan_batches(self, expression: str, *, limit: int | None = None, order: str = "newest",
                     from_address: int | None = None, to_address: int | None = None,
                     include_superseded: bool = False, cancel: threading.Event | None = None,
                     fields: Sequence[str] | None = None, since: Any = None,
                     until: Any = None) -> Iterator[RecordBatch]:
        """scan's records as RecordBatches (see query_batches)."""
        if since is not None or until is not None:
            return self._windows.scan(expression, since, until, limit=limit, order=order, from_address=from_address,
                                      to_address=to_address, include_superseded=include_superseded, fields=fields,
                                      cancel=cancel, batches=True)
        return self._planner.scan_batches(expression, limit=limit, order=order, from_address=from_address,
                                          to_address=to_address, include_superseded=include_superseded,
                                          cancel=cancel, fields=fields)

    # ---- the live tail (engine/tail.py) ----
    def follow(self, conditions: Iterable[tuple[str, Any]] | None = None, *, mode: str = "all",
               since_address: int | None = None, on_gap: str = "error", fields: Sequence[str] | None = None,
               cancel: threading.Event | None = None, timeout: float | None = None) -> Iterator[Record]:
        """Records matching every (mode="any": some) (psf, value) condition,
        or every record with none, as they are ingested, oldest first: a
        blocking iterator that ends once `cancel` is set, after `timeout`
        seconds without a record, or when the store closes (StoreClosed).
        It starts at the tail (records ingested from now on) or at
        `since_address`. No record is missed or given twice, whatever
        ingest does meanwhile. A follower so slow that compaction dropped
        the log below it raises TailGap (on_gap="skip": yields the TailGap,
        with its `.missed` address range, and goes on)."""
        return self._tail.follow(conditions, mode=mode, since_address=since_address, on_gap=on_gap, fields=fields,
                                 cancel=cancel, timeout=timeout)

    def follow_rounds(self, conditions: Iterable[tuple[str, Any]] | None = None, *, mode: str = "all",
                      since_address: int | None = None, on_gap: str = "error",
                      fields: Sequence[str] | None = None, cancel: threading.Event | None = None,
                      timeout: float | None = None) -> Iterator:
        """follow a round at a time: lists of the Records found at once (an
        empty list after a second without any: a heartbeat), or a TailGap.
        What GET /tail streams."""
        return self._tail.rounds(conditions, mode=mode, since_address=since_address, on_gap=on_gap, fields=fields,
                                 cancel=cancel, timeout=timeout)

    # ---- ranges of a bucketed PSF (engine/ranges.py) ----
    def query_range(self, psf: str, lo: Any, hi: Any, *, limit: int | None = None, order: str = "newest",
                    from_address: int | None = None, to_address: int | None = None,
                    include_superseded: bool = False, fields: Sequence[str] | None = None) -> Iterator[Record]:
        """Records whose bucketed PSF `psf` has a value in [lo, hi) (lo
        inclusive, hi exclusive; numbers, or times for a time PSF): the
        chains of the buckets the range spans, the records of its two end
        buckets read and compared exactly. As query otherwise."""
        return self._ranges.query(psf, lo, hi, limit=limit, order=order, from_address=from_address,
                                  to_address=to_address, include_superseded=include_superseded, fields=fields,
                                  cancel=None, batches=False)

    def query_range_batches(self, psf: str, lo: Any, hi: Any, *, limit: int | None = None,
                            order: str = "newest", from_address: int | None = None,
                            to_address: int | None = None, include_superseded: bool = False,
                            fields: Sequence[str] | None = None,
                            cancel: threading.Event | None = None) -> Iterator[RecordBatch]:
        """query_range's records as RecordBatches (see query_batches)."""
        return self._ranges.query(psf, lo, hi, limit=limit, order=order, from_address=from_address,
                                  to_address=to_address, include_superseded=include_superseded, fields=fields,
                                  cancel=cancel, batches=True)

    def count_range(self, psf: str, lo: Any, hi: Any, *, from_address: int | None = None,
                    to_address: int | None = None, include_superseded: bool = False,
                    cancel: threading.Event | None = None) -> int:
        """How many records query_range would return: the buckets inside
        the range counted without reading a record (the value tally), its
        two end buckets read."""
        self._gate.check_open()
        entry = self._ranges.entry(psf)
        lo_addr, hi_addr, _ = self._planner._range("newest", from_address, to_address, None)
        return self._ranges.count(entry, lo, hi, lo_addr, hi_addr, include_superseded=include_superseded,
                                  cancel=cancel)

    # ---- counts and top values (engine/counts.py) ----
    def count(self, psf: str, value: Any = True, *, from_address: int | None = None,
              to_address: int | None = None, include_superseded: bool = False,
              cancel: threading.Event | None = None, since: Any = None, until: Any = None) -> int:
        """How many records `query(psf, value)` would return over the same
        range, exactly. Over the whole log it is O(1): each PSF keeps a
        count per value (the value tally, bounded by tally_max_values),
        plus a scan of the ranges where the PSF was not active. A window
        (from_address/to_address) walks the value's chain, reading no
        record. Keyed stores count live versions unless include_superseded."""
        if since is not None or until is not None:
            return self._windows.count([(psf, value)], "all", since, until, from_address=from_address,
                                       to_address=to_address, include_superseded=include_superseded, cancel=cancel)
        return self._counts.count(psf, value, from_address=from_address, to_address=to_address,
                                  include_superseded=include_superseded, cancel=cancel)

    def count_all(self, conditions: Iterable[tuple[str, Any]], *, from_address: int | None = None,
                  to_address: int | None = None, include_superseded: bool = False,
                  cancel: threading.Event | None = None, since: Any = None, until: Any = None) -> int:
        """How many records match every (psf, value) condition (query_all's)."""
        if since is not None or until is not None:
            return self._windows.count(list(conditions), "all", since, until, from_address=from_address,
                                       to_address=to_address, include_superseded=include_superseded, cancel=cancel)
        return self._counts.count_all(conditions, from_address=from_address, to_address=to_address,
                                      include_superseded=include_superseded, cancel=cancel)

    def count_any(self, conditions: Iterable[tuple[str, Any]], *, from_address: int | None = None,
                  to_address: int | None = None, include_superseded: bool = False,
                  cancel: threading.Event | None = None, since: Any = None, until: Any = None) -> int:
        """How many records match at least one condition (query_any's)."""
        if since is not None or until is not None:
            return self._windows.count(list(conditions), "any", since, until, from_address=from_address,
                                       to_address=to_address, include_superseded=include_superseded, cancel=cancel)
        return self._counts.count_any(conditions, from_address=from_address, to_address=to_address,
                                      include_superseded=include_superseded, cancel=cancel)

    def group_count(self, psf: str, *, limit: int | None = None, from_address: int | None = None,
                    to_address: int | None = None, include_superseded: bool = False,
                    cancel: threading.Event | None = None, since: Any = None,
                    until: Any = None) -> list[tuple[Any, int]]:
        """The values of a PSF and how many records have each, as (value,
        count) pairs, largest count first (ties in the order of the values'
        canonical bytes), at most `limit`. Values come back as JSON values
        (str, int, float, True). Over the whole log it reads no record: the
        value tally holds each PSF's values and counts. Past
        tally_max_values distinct values (or a value longer than
        tally_max_value_bytes) a PSF's tally overflows, and group_count,
        still exact, tallies the log's key pointers in C instead (about a
        scan's speed, no JSON parsed); a window does the same over its
        range. Ranges where the PSF was not active are evaluated record by
        record, and keyed stores count live versions (each evaluated)
        unless include_superseded."""
        return self._counts.group_count(psf, limit=limit, from_address=from_address, to_address=to_address,
                                        include_superseded=include_superseded, cancel=cancel, since=since,
                                        until=until)

    # ---- keyed stores ----
    def get_key(self, key: Any) -> Record | None:
        """The newest version of `key`, or None if it was never stored or was deleted."""
        return self._planner.get_key(key)

    def delete_key(self, key: Any, *, durable: bool = False) -> bool:
        """Delete `key`: append a tombstone, so get_key returns None and PSF
        queries stop returning its versions. Returns False (writing nothing)
        when the key has no live version."""
        return self.delete_keys([key], durable=durable) == 1

    def delete_keys(self, keys: Iterable[Any], *, durable: bool = False) -> int:
        """Delete each of `keys` (as delete_key, one tombstone each, appended
        together under one lock); returns how many had a live version."""
        index = self._planner.require_keys()
        wanted: dict[bytes, bytes] = {}  # canonical key -> its JSON text (a key named twice: one tombstone)
        for key in keys:
            text = orjson.dumps(key) if not isinstance(key, int) or abs(key) < 1 << 63 else str(key).encode()
            wanted.setdefault(key_canon(key), text)
        with self._write_lock:
            self._gate.check_open()
            live = []
            for canon, text in wanted.items():
                address = index.newest(canon)
                if address is not None and self._log.read_records([address], payload_only=True)[0] is not None:
                    live.append((text, canon))
            if not live:
                return 0
            self._log.check_writable()
            _ingest.append_tombstones(self._core, live)
            if durable:
                self._commit.sync_locked()
            return len(live)

    # ---- durability ----
    def flush(self, durable: bool = True) -> int:
        """Write all records to segment files (fsync when durable); returns the tail."""
        with self._write_lock:
            self._gate.check_open()
            return self._commit.sync_locked() if durable else self._log.flush()

    def wait_compressed(self, timeout: float = 60.0) -> bool:
        """On a store created with compression="zstd": wait until every page
        written whole is compressed, at most `timeout` seconds; True when
        none waits. Compression runs in the background
        on its own; this is for a caller that wants to see its result now
        (disk use, say). Always True on a store without compression."""
        self._gate.check_open()
        return True if self._cooling is None else self._cooling.wait_idle(timeout)

    def checkpoint(self) -> CheckpointInfo:
        """Make the store restartable from this point: flush and fsync the log,
        write the index and the PSF registry atomically, then the metadata."""
        with self._write_lock:
            self._gate.check_open()
            t0 = time.monotonic()
            tail = self._commit.sync_locked()
            self._registry.save()
            info = write_checkpoint(self._ckpt_dir, self._index.dump(), tail, self._log.begin_address,
                                    self._core.records, self._tally.dump())
            return CheckpointInfo(info.checkpoint_id, info.tail_address, info.begin_address, info.records,
                                  info.created_at, (time.monotonic() - t0) * 1000)

    def checkpoints(self) -> list[int]:
        return list_checkpoints(self._ckpt_dir)

    # ---- compaction ----
    def compact(self, until_address: int | None = None, *,
                retain_bytes: int | None = None) -> CompactionResult:
        """Reclaim the log below a cut: `until_address`, or the newest
        `retain_bytes` of log kept (exactly one). The cut is rounded down to
        a page start and stays below the tail page; live records of a keyed
        store below it are copied to the tail first; whole segment files
        below it are deleted. Ingest and queries go on meanwhile."""
        return self._compactor.compact(until_address, retain_bytes)

    # ---- stats ----
    def stats(self) -> dict:
        self._gate.check_open()
        log = self._log
        idx = self._index.stats()
        disk = segment_bytes(self.path / "log")
        return {
            "records": self._core.records,
            "key": self.key,
            "addresses": {"begin": log.begin_address, "head": log.head_address,
                          "read_only": log.read_only_address, "tail": log.tail_address,
                          "flushed_until": log.flushed_until_address,
                          "synced_until": self._commit.synced_until_address},
            "log_bytes": log.tail_address - log.begin_address,
            "memory_bytes": log.frames_in_use() * log.page_size,
            "memory_budget_bytes": self.config.memory_budget_bytes,
            "disk_bytes": disk,
            "index": {"buckets": idx.buckets, "overflow_buckets": idx.overflow_buckets,
                      "entries": idx.entries, "bytes": idx.bytes},
            "tally": self._tally.stats(),
            "psfs": [{"name": p.name, "id": p.id, "kind": p.kind.value, "active": p.active,
                      "native": p.native, "ranges": [list(r) for r in p.ranges],
                      "failure": p.failure, "eval_errors": self._eval_errors.get(p.id, 0),
                      "over_budget": self._over_budget.get(p.id, 0)}
                     for p in self._registry.all()],
            "ingest": self._core.counters.to_dict(),
            "syncs": self._commit.syncs,
            "recovery": {"checkpoint_id": self.recovery.checkpoint_id,
                         "replayed_records": self.recovery.replayed_records,
                         "dropped": list(self.recovery.dropped),
                         "lost_and_found_bytes": tree_bytes(self.path / LOST_AND_FOUND)},
            "compaction": self._compactor.stats(),
            "compression": self._compression_stats(),
        }

    def _compression_stats(self) -> dict:
        cold = self._log.segments.cold_segments()
        out = {"kind": self.config.compression, "cold_segments": len(cold),
               "cold_disk_bytes": sum(b for _, b in cold)}
        out.update(self._log.frame_cache_counts())
        if self._cooling is not None:
            out["converted"] = self._cooling.converted
            out["last_error"] = None if self._cooling.last_error is None else str(self._cooling.last_error)
        return out
