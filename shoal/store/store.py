"""Store: the one object users hold. A thin facade: each operation delegates
to the module that owns it (hlog, index, query, scan, checkpoint, recovery,
ingest, psf).

Concurrency (what protects what):
  - `_write_lock` serializes every writer operation: ingest, PSF
    registration, checkpoint, close. Ingest holds it while it appends; a
    durable ingest then waits for its fsync without it (`_commit`, group
    commit: concurrent durable ingests share fsyncs).
  - Readers (query, scan, get, stats) take no lock. They run C code that
    releases the GIL, read log addresses atomically, and validate in-memory
    reads against page eviction. `_compiled` is replaced, never mutated, so a
    reader keeps a consistent snapshot.
  - `_gate` counts readers inside native calls so close() can wait for them
    before freeing the index and closing files; after close every call
    raises StoreClosed.
"""
from __future__ import annotations

import builtins
import fcntl
import json
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from .._native import ffi, lib
from ..config import StoreConfig
from ..errors import EvaluationBudgetExceeded, InvalidArgument, PSFError, StoreClosed, StoreLocked
from ..ingest import ingest as _ingest
from ..ingest.framing import InputFormat
from ..ingest.result import IngestResult
from ..psf import (PSF, EvaluationBudget, NativePSFSet, Registry, SlowEvaluator, canonical, evaluate,
                   parse_definition, value_hash)
from . import compaction as _compaction
from . import query as _query
from .address import MAX_ADDRESS
from .checkpoint import CheckpointInfo, list_checkpoints, write_checkpoint
from .commit import GroupCommit
from .hlog import HybridLog
from .keys import KeyIndex, key_canon
from .record import Record, RecordBatch
from .recovery import LOST_AND_FOUND, recover
from .scan import NativeMatcher, PythonMatcher, scan_range, truthy
from .segments import SegmentFiles

_FORMAT = 1
_READ_BATCH = 1024
ORDERS = ("newest", "oldest")
# Layout settings fixed when a store is created; the others may change per open.
_LAYOUT = ("page_size_bytes", "segment_size_bytes", "key")


@dataclass(frozen=True)
class _Compiled:
    """What ingest evaluates: native programs and slow-path PSFs (a snapshot)."""
    native: NativePSFSet
    slow: SlowEvaluator | None
    key_slow: Any = None  # a keyed store's key expression when C cannot evaluate it


class _Gate:
    """The reader gate (shoal_gate, lock-free in C): readers enter it around
    native calls; close() waits for them; compaction asks whether every
    reader inside at some moment has left (mark, idle_since)."""

    def __init__(self) -> None:
        self.c = ffi.new("shoal_gate *")

    @property
    def closed(self) -> bool:
        return bool(self.c.closed)

    def __enter__(self) -> None:
        if lib.shoal_gate_enter(self.c):
            raise StoreClosed("the store is closed")

    def __exit__(self, *exc: object) -> None:
        lib.shoal_gate_exit(self.c)

    def mark(self) -> int:
        """A token: idle_since(token) holds once every reader inside now has
        left. Compaction closes deleted segments' fds only then (a reader
        inside a native call may still pread them)."""
        return lib.shoal_gate_mark(self.c)

    def idle_since(self, token: int) -> bool:
        return bool(lib.shoal_gate_idle_since(self.c, token))

    def close(self) -> None:
        """Refuse new readers, then wait for those inside to leave."""
        self.c.closed = 1
        delay = 0.0001
        while lib.shoal_gate_inside(self.c):
            time.sleep(delay)
            delay = min(delay * 2, 0.01)


def open(path: str | os.PathLike, config: StoreConfig | None = None, **overrides: Any) -> "Store":
    """Open the store in directory `path`, creating it if needed and
    recovering it if it exists. Settings: a StoreConfig and/or keyword
    overrides of its fields (e.g. memory_budget_bytes=1 << 30)."""
    return Store(path, config, **overrides)


class Store:
    def __init__(self, path: str | os.PathLike, config: StoreConfig | None = None, **overrides: Any):
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        self._lock_file = _lock(self.path)
        try:
            self.config = _resolve_config(self.path, config, overrides)
            self.key: str | None = self.config.key
            self._key_expr = None
            limits = self.config.expression_limits
            if self.key is not None:
                try:
                    self._key_expr = parse_definition(self.key, limits)
                except PSFError as exc:
                    raise InvalidArgument(f"key: {exc}") from None
            self.tmp_dir = self.path / "tmp"
            self.tmp_dir.mkdir(exist_ok=True)
            self._ckpt_dir = self.path / "checkpoints"
            self._registry = Registry(self.path / "psfs.json", limits, max_active=self.config.max_active_psfs,
                                      max_inactive=self.config.max_inactive_psfs)
            self._compactor = _compaction.Compactor(self)  # checks the retention policy
            begin_state = _compaction.load_begin(self.path)
            page_bits = self.config.page_bits
            seg_bits = (self.config.segment_size_bytes // self.config.page_size_bytes).bit_length() - 1
            fds = ffi.new("int32_t[]", 1 << 20)
            segs = SegmentFiles(self.path / "log", page_bits, seg_bits, fds, 1 << 20)
            try:
                begin, missing = _compaction.recovery_begin(begin_state, segs)
                self._index, self.recovery = recover(
                    self._ckpt_dir, segs, page_bits, self.config.index_bucket_bits, begin,
                    verify=self.config.verify_log_on_open,
                    without_checkpoints="counts and indexes the missing oldest segment files" if missing else None)
                for note in (begin_state.note, missing):
                    if note:
                        self.recovery.dropped.append(note)
                if missing:  # reported once: the log begins where its files do now
                    begin_state = _compaction.BeginState(self.recovery.begin_address)
                    _compaction.save_begin(self.path, begin_state)
                # A checkpoint older than the last compaction holds entries of
                # chains now below begin (compaction's step 6, done here).
                if self._index.count_below(self.recovery.begin_address):
                    self._index.prune(self.recovery.begin_address, self.config.index_bucket_bits)
                _compaction.finish_interrupted(segs, self.recovery.begin_address)
                segs.truncate_after(self.recovery.tail_address, keep_in=self.recovery.quarantine)
                segs.sync_all()  # what a killed process left in the page cache, before anything new
            finally:
                segs.close()
            tail = self.recovery.tail_address
            self._registry.truncate(tail)
            self._registry.close_open_callables(tail)
            self._log = HybridLog(self.path / "log", self.config, self.recovery.begin_address, tail)
        except BaseException:
            self._lock_file.close()
            raise
        self._write_lock = threading.Lock()
        self._commit = GroupCommit(self._log, self._write_lock, tail)
        self._gate = _Gate()
        self._keys = KeyIndex(self._log, self._index) if self.key is not None else None
        # psf_id -> records a slow-path PSF failed on (and, of those, went over
        # its evaluation budget) since this open; kept across recompiles.
        self._eval_errors: dict[int, int] = {}
        self._over_budget: dict[int, int] = {}
        self._compiled_state = self._compile()
        self._records = _compaction.records_after_recovery(self.recovery, begin_state)
        self._ingest_totals = {"calls": 0, "records": 0, "rejected": 0, "bytes": 0}
        # Keyed by (psf_id, expression): a forgotten PSF's id may serve a later one.
        self._scan_sets: dict[tuple[int, str], NativePSFSet] = {}
        self._scratch = None
        self._compactor.start(begin_state)

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
                self._compactor.close_retired()  # no reader left: deleted segments' fds
                self._log.close()
                self._index.free()
                self._lock_file.close()

    def _check_open(self) -> None:
        if self._gate.closed:
            raise StoreClosed("the store is closed")

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
    def _compile(self) -> _Compiled:
        active = self._registry.active()
        key = self._key_expr
        key_native = key if key is not None and key.native else None
        key_slow = key if key is not None and not key.native else None
        native = NativePSFSet.build([(p.id, p.expression) for p in active if p.native], key=key_native)
        slow = [p for p in active if not p.native and p.failure is None]  # a failing PSF yields nothing
        evaluator = SlowEvaluator(slow, self.config.expression_limits, errors=self._eval_errors,
                                  over_budget=self._over_budget)
        return _Compiled(native, evaluator if slow or key_slow is not None else None, key_slow)

    def _compiled(self) -> _Compiled:
        return self._compiled_state

    def register_psf(self, name: str, definition: str | Callable[..., Any], *,
                     fields: Sequence[str] | None = None, exist_ok: bool = False, replace: bool = False) -> PSF:
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
        record lands between), in one save of the registry."""
        with self._write_lock:
            self._check_open()
            try:
                return self._registry.register(name, definition, fields=fields, address=self._log.tail_address,
                                               begin=self._log.begin_address, exist_ok=exist_ok, replace=replace)
            finally:  # also after a failed save: ingest indexes what the registry says
                self._compiled_state = self._compile()

    def deregister_psf(self, name: str) -> PSF:
        """Stop indexing by a PSF; returns it with its closed active range."""
        with self._write_lock:
            self._check_open()
            try:
                return self._registry.deregister(name, address=self._log.tail_address,
                                                 begin=self._log.begin_address)
            finally:
                self._compiled_state = self._compile()

    def psf(self, name: str) -> PSF:
        self._check_open()
        return self._registry.get(name)

    def psfs(self, *, include_inactive: bool = True) -> list[PSF]:
        self._check_open()
        return self._registry.all() if include_inactive else self._registry.active()

    # ---- ingest ----
    def ingest(self, data: Any, *, on_error: str = "skip", durable: bool = False,
               format: str | InputFormat = "auto", max_input_bytes: int | None = None) -> IngestResult:
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
        With on_error="reject" nothing is stored."""
        self._check_open()
        result, end = _ingest.run(self, data, on_error=on_error, format=format, max_input_bytes=max_input_bytes)
        if durable:
            self._commit.wait_durable(end)
            result.durable = True
        return result

    def _ingest_scratch(self, n_slots: int):
        """Native ingest buffers, reused across calls (writer only)."""
        from ..ingest.ingest import _Scratch
        s = self._scratch
        if s is None or len(s.slots) < max(1, n_slots):
            s = self._scratch = _Scratch(max(64, n_slots), self._log.page_size)
        return s

    def _note_ingest(self, result: IngestResult) -> None:
        self._records += result.ingested
        t = self._ingest_totals
        t["calls"] += 1
        t["records"] += result.ingested
        t["rejected"] += result.rejected
        t["bytes"] += result.input_bytes

    # ---- reads ----
    def get(self, address: int) -> Record | None:
        """The record at `address`, or None if no record starts there."""
        if not isinstance(address, int) or isinstance(address, bool):
            raise InvalidArgument("address must be an int")
        if address < 0:
            raise InvalidArgument("address must be a non-negative int")
        if address > MAX_ADDRESS:  # past any log (e.g. >= 2**64, which C cannot even take): no record
            return None
        with self._gate:  # a caller's address: it may point anywhere in a page
            raw = self._log.read_records([address], payload_only=True, verify_start=True)[0]
        return None if raw is None else Record(address, raw)

    def query(self, psf: str, value: Any = True, *, limit: int | None = None, order: str = "newest",
              from_address: int | None = None, to_address: int | None = None,
              include_superseded: bool = False) -> Iterator[Record]:
        """Records whose PSF `psf` has value `value` (JSON semantics: 1 == 1.0,
        escapes do not matter), lazily, newest first by default. In a keyed
        store only live versions are returned unless include_superseded.
        Newest-first answers are read in batches of up to 1,024 records, the
        first at the call: an answer that fits in it is a snapshot taken then."""
        if (limit is None and order == "newest" and from_address is None and to_address is None
                and (self._keys is None or include_superseded) and type(psf) is str):
            # The common call (a point query) without the general path's argument checks.
            self._check_open()
            log = self._log
            lo, hi = log.begin_address, log.tail_address
            fused = self._fetch(psf, value, lo, hi, None)
            if fused is not None:
                return fused
        return self._run([(psf, value)], "one", limit, order, from_address, to_address, include_superseded)

    def query_all(self, conditions: Iterable[tuple[str, Any]], *, limit: int | None = None,
                  order: str = "newest", from_address: int | None = None,
                  to_address: int | None = None, include_superseded: bool = False) -> Iterator[Record]:
        """Records matching every (psf, value) condition."""
        return self._run(list(conditions), "all", limit, order, from_address, to_address, include_superseded)

    def query_any(self, conditions: Iterable[tuple[str, Any]], *, limit: int | None = None,
                  order: str = "newest", from_address: int | None = None,
                  to_address: int | None = None, include_superseded: bool = False) -> Iterator[Record]:
        """Records matching at least one (psf, value) condition."""
        return self._run(list(conditions), "any", limit, order, from_address, to_address, include_superseded)

    def query_addresses(self, conditions: Iterable[tuple[str, Any]], *, mode: str = "all",
                        order: str = "newest", from_address: int | None = None,
                        to_address: int | None = None, include_superseded: bool = False,
                        cancel: threading.Event | None = None) -> Iterator[int]:
        """Like query_all/query_any, yielding addresses only. `cancel` as
        in query_batches."""
        self._check_open()
        lo, hi, descending = self._range(order, from_address, to_address, None)
        streams = [self._one(name, value, lo, hi, descending, cancel=cancel) for name, value in conditions]
        if not streams:
            raise InvalidArgument("at least one condition is needed")
        if mode == "any":
            addrs = _query.merge_sorted(streams, descending=descending)
        elif mode in ("all", "one"):
            addrs = streams[0] if len(streams) == 1 else _query.intersect_sorted(streams, descending=descending)
        else:
            raise InvalidArgument(f"unknown mode {mode!r}")
        if self._keys is None or include_superseded:
            return addrs
        return (a for batch in self._live_batches(_query._batched(addrs)) for a in batch)

    def query_batches(self, conditions: Iterable[tuple[str, Any]], *, mode: str = "all",
                      limit: int | None = None, order: str = "newest", from_address: int | None = None,
                      to_address: int | None = None, include_superseded: bool = False,
                      cancel: threading.Event | None = None) -> Iterator[RecordBatch]:
        """The records of query_all (mode "all") or query_any (mode "any") as
        RecordBatches: the records' text in one buffer per batch, with no
        Python object per record. The bulk path: `batch.ndjson()` goes to a
        file or socket as is, and iterating a batch gives Records.

        Once `cancel` (a threading.Event) is set, a scan of a range where a
        PSF was not active stops before its next page (or record, for a
        Python PSF) and the answer ends early, incomplete: the caller that
        set it must not take it for the whole answer. A walk of a chain
        reads one batch per next() and needs no such check."""
        conditions = list(conditions)
        if mode not in ("all", "any"):
            raise InvalidArgument(f"unknown mode {mode!r}")
        if not conditions:
            raise InvalidArgument("at least one condition is needed")
        return self._run(conditions, mode if len(conditions) > 1 else "one", limit, order, from_address,
                         to_address, include_superseded, batches=True, cancel=cancel)

    def _run(self, conditions, mode, limit, order, from_address, to_address,
             include_superseded, *, batches: bool = False, cancel: threading.Event | None = None) -> Iterator:
        lo, hi, descending = self._range(order, from_address, to_address, limit)
        for c in conditions:
            if not (isinstance(c, (tuple, list)) and len(c) == 2 and isinstance(c[0], str)):
                raise InvalidArgument("each condition is a (psf_name, value) pair")
        if len(conditions) == 1:  # the chain's own batches, no merging
            self._check_open()
            (name, value), = conditions
            if descending and (self._keys is None or include_superseded):
                fused = self._fetch(name, value, lo, hi, limit, batches)
                if fused is not None:
                    return fused
            addrs = self._one(name, value, lo, hi, descending, batches=True, cancel=cancel)
        else:
            if mode == "all" and descending and (self._keys is None or include_superseded):
                self._check_open()
                fused = self._fetch_all(conditions, lo, hi, limit, batches)
                if fused is not None:
                    return fused
            addrs = _query._batched(self.query_addresses(conditions, mode=mode, order=order,
                                                         from_address=from_address,
                                                         to_address=to_address, include_superseded=True,
                                                         cancel=cancel))
        if self._keys is not None and not include_superseded:
            addrs = self._live_batches(addrs)
        return self._read_batches(addrs, limit) if batches else self._materialize(addrs, limit)

    def _fetch(self, name: str, value: Any, lo: int, hi: int, limit: int | None,
               batches: bool = False) -> Iterator | None:
        """Newest-first records of one condition answered by its chain alone,
        walked and read by one native call per batch; None when part of the
        range must be scanned (the PSF was not active there)."""
        psf = self._registry.get(name)
        canon = canonical(value)
        if canon is None or lo >= hi or limit == 0:
            return iter(())
        if psf.inactive_ranges(lo, hi):
            return None
        fetch = _query.fetch_chain_batches if batches else _query.fetch_chain
        return fetch(self._log, self._index, psf.id, canon, lo, hi, self._gate, limit)

    def _fetch_all(self, conditions, lo: int, hi: int, limit: int | None,
                   batches: bool) -> Iterator | None:
        """Newest-first records meeting every condition: the chain of the
        condition that looks rarest is walked and read by native calls, which
        keep the records that have the other conditions' key pointers too.
        None when a PSF was not active over the whole range (its records
        there have no key pointers to check: the general path scans)."""
        if not conditions:
            return None  # the general path says what is wrong
        # Every name is looked up (an unknown PSF raises) before any answer.
        psfs = [(self._registry.get(name), canonical(value)) for name, value in conditions]
        if lo >= hi or limit == 0 or any(canon is None for _, canon in psfs):
            return iter(())
        if any(psf.inactive_ranges(lo, hi) for psf, _ in psfs):
            return None
        conds = list(dict.fromkeys((psf.id, canon) for psf, canon in psfs))  # a repeated condition is checked once
        if len(conds) > 1:
            conds = _query.rarest_first(self._log, self._index, conds, lo, hi, self._gate)
        (psf_id, canon), also = conds[0], conds[1:]
        fetch = _query.fetch_chain_batches if batches else _query.fetch_chain
        return fetch(self._log, self._index, psf_id, canon, lo, hi, self._gate, limit, also)

    def _live_mask(self, addresses: list[int]) -> list[bool]:
        """Keyed stores: for each address, is the record there its key's live version?"""
        with self._gate:
            return self._require_keys().live_mask(addresses)

    def _live_batches(self, batches: Iterator[list[int]]) -> Iterator[list[int]]:
        """Keyed stores: keep only the live versions (one native call per batch)."""
        keys = self._keys
        for batch in batches:
            with self._gate:
                live = keys.filter_live(batch)
            if live:
                yield live

    def _range(self, order, from_address, to_address, limit) -> tuple[int, int, bool]:
        if order not in ORDERS:
            raise InvalidArgument(f"order must be 'newest' or 'oldest', not {order!r}")
        if limit is not None and (not isinstance(limit, int) or limit < 0):
            raise InvalidArgument("limit must be a non-negative int")
        for name, v in (("from_address", from_address), ("to_address", to_address)):
            if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < 0):
                raise InvalidArgument(f"{name} must be a non-negative int")
        lo = max(self._log.begin_address, from_address or 0)
        hi = self._log.tail_address if to_address is None else min(to_address, self._log.tail_address)
        return lo, hi, order == "newest"

    def _one(self, name: str, value: Any, lo: int, hi: int, descending: bool, *,
             batches: bool = False, cancel: threading.Event | None = None) -> Iterator:
        """Addresses (or lists of them, with batches=True) of the complete
        answer for one condition."""
        psf = self._registry.get(name)
        canon = canonical(value)
        if canon is None or lo >= hi:
            return iter(())
        h = value_hash(psf.id, canon)
        inactive = psf.inactive_ranges(lo, hi)
        if inactive and psf.needs_callable:
            raise PSFError(f"PSF {name!r} is a callable that must be registered again after reopening "
                           f"before ranges it did not index can be searched")

        def factory():
            return self._matcher_for(psf, canon, cancel)

        stream = _query.psf_address_batches if batches else _query.psf_addresses
        return stream(self._log, self._index, psf, canon, h, inactive, factory, lo, hi,
                      descending=descending, gate=self._gate)

    def _matcher_for(self, psf: PSF, canon: bytes | None, cancel: threading.Event | None = None):
        if psf.native:
            nset = self._scan_sets.get((psf.id, psf.definition))
            if nset is None:
                if len(self._scan_sets) >= 256:  # PSFs come and go: build again what is asked again
                    self._scan_sets.clear()
                nset = self._scan_sets[(psf.id, psf.definition)] = NativePSFSet.build_single(psf.expression)
            return NativeMatcher(nset, 0, canon, cancel=cancel)

        budget = EvaluationBudget(self.config.expression_limits)

        def predicate(text: bytes) -> bool:
            # As at ingest (psf/slowpath.py): an error or a record over the
            # budget means no value, so no match.
            try:
                v = evaluate(psf, orjson.loads(text), budget)
            except Exception:  # noqa: BLE001
                return False
            c = canonical(v)
            return c is not None and (c == canon if canon is not None else True)

        return PythonMatcher(predicate, cancel=cancel)

    def _materialize(self, batches: Iterator[list[int]], limit: int | None) -> Iterator[Record]:
        """Records for batches of addresses, read _READ_BATCH at a time."""
        log = self._log
        gate = self._gate
        left = limit
        for batch in batches:  # address streams gate their own native calls
            if left is not None:
                if left <= 0:
                    return
                batch = batch[:left]
                left -= len(batch)
            for k in range(0, len(batch), _READ_BATCH):
                part = batch[k:k + _READ_BATCH]
                with gate:
                    recs = log.read_record_objects(part)
                yield from recs
            if left is not None and left <= 0:
                return  # before asking the stream for more

    def _read_batches(self, batches: Iterator[list[int]], limit: int | None) -> Iterator[RecordBatch]:
        """RecordBatches for batches of addresses (as _materialize)."""
        log = self._log
        gate = self._gate
        left = limit
        for batch in batches:
            if left is not None:
                if left <= 0:
                    return
                batch = batch[:left]
                left -= len(batch)
            with gate:
                out = log.read_batches(batch)
            yield from out
            if left is not None and left <= 0:
                return

    def scan(self, expression: str, *, limit: int | None = None, order: str = "newest",
             from_address: int | None = None, to_address: int | None = None,
             include_superseded: bool = False, cancel: threading.Event | None = None) -> Iterator[Record]:
        """Records for which a JMESPath expression is truthy, by scanning the
        log (no index needed). Keyed stores: live versions only unless
        include_superseded. The expression is checked against the store's
        expression limits (ExpressionTooLong, ExpressionTooDeep at the call);
        on a record where it goes over its evaluation budget the scan stops
        with EvaluationBudgetExceeded (an answer silently missing records
        would look complete). Once `cancel` is set, the scan stops before its
        next record and the iterator ends."""
        lo, hi, descending = self._range(order, from_address, to_address, limit)
        return self._materialize(self._scan_addresses(expression, lo, hi, descending, include_superseded,
                                                      cancel), limit)

    def scan_batches(self, expression: str, *, limit: int | None = None, order: str = "newest",
                     from_address: int | None = None, to_address: int | None = None,
                     include_superseded: bool = False,
                     cancel: threading.Event | None = None) -> Iterator[RecordBatch]:
        """scan's records as RecordBatches (see query_batches)."""
        lo, hi, descending = self._range(order, from_address, to_address, limit)
        return self._read_batches(self._scan_addresses(expression, lo, hi, descending, include_superseded,
                                                       cancel), limit)

    def _scan_addresses(self, expression: str, lo: int, hi: int, descending: bool,
                        include_superseded: bool, cancel: threading.Event | None) -> Iterator[list[int]]:
        """Batches of the addresses of records for which `expression` is truthy."""
        expr = parse_definition(expression, self.config.expression_limits)
        if expr.native:
            matcher: Any = NativeMatcher(NativePSFSet.build_single(expr), 0, None, cancel=cancel)
        else:
            budget = EvaluationBudget(self.config.expression_limits)

            def predicate(text: bytes) -> bool:
                # As for PSFs (psf/slowpath.py): an evaluation error on one
                # record, e.g. length(null), means "no match", not a failed
                # scan. Going over the budget ends the scan (PythonMatcher adds
                # the address): an answer silently missing records would look
                # complete.
                try:
                    return truthy(budget.search(expr, orjson.loads(text)))
                except EvaluationBudgetExceeded:
                    raise
                except Exception:  # noqa: BLE001
                    return False

            matcher = PythonMatcher(predicate, cancel=cancel)
        addrs = _query._batched(scan_range(self._log, matcher, lo, hi, descending=descending, gate=self._gate))
        if self._keys is not None and not include_superseded:
            addrs = self._live_batches(addrs)
        return addrs

    # ---- keyed stores ----
    def _require_keys(self) -> KeyIndex:
        self._check_open()
        if self._keys is None:
            raise InvalidArgument("this store has no key; open it with key=<expression> when creating it")
        return self._keys

    def get_key(self, key: Any) -> Record | None:
        """The newest version of `key`, or None if it was never stored or was deleted."""
        keys = self._require_keys()
        canon = key_canon(key)
        with self._gate:
            address = keys.newest(canon)
            if address is None:
                return None
            raw = self._log.read_records([address], payload_only=True)[0]
        return None if raw is None else Record(address, raw)  # None: a tombstone

    def delete_key(self, key: Any, *, durable: bool = False) -> bool:
        """Delete `key`: append a tombstone, so get_key returns None and PSF
        queries stop returning its versions. Returns False (writing nothing)
        when the key has no live version."""
        keys = self._require_keys()
        canon = key_canon(key)
        text = orjson.dumps(key) if not isinstance(key, int) or abs(key) < 1 << 63 else str(key).encode()
        with self._write_lock:
            self._check_open()
            address = keys.newest(canon)
            if address is None or self._log.read_records([address], payload_only=True)[0] is None:
                return False
            self._log.check_writable()
            _ingest.append_tombstones(self, [(text, canon)])
            if durable:
                self._commit.sync_locked()
            return True

    # ---- durability ----
    def flush(self, durable: bool = True) -> int:
        """Write all records to segment files (fsync when durable); returns the tail."""
        with self._write_lock:
            self._check_open()
            return self._commit.sync_locked() if durable else self._log.flush()

    def checkpoint(self) -> CheckpointInfo:
        """Make the store restartable from this point: flush and fsync the log,
        write the index and the PSF registry atomically, then the metadata."""
        with self._write_lock:
            self._check_open()
            t0 = time.monotonic()
            tail = self._commit.sync_locked()
            self._registry.save()
            info = write_checkpoint(self._ckpt_dir, self._index.dump(), tail, self._log.begin_address,
                                    self._records)
            return CheckpointInfo(info.checkpoint_id, info.tail_address, info.begin_address, info.records,
                                  info.created_at, (time.monotonic() - t0) * 1000)

    def checkpoints(self) -> list[int]:
        return list_checkpoints(self._ckpt_dir)

    # ---- compaction ----
    def compact(self, until_address: int | None = None, *,
                retain_bytes: int | None = None) -> _compaction.CompactionResult:
        """Reclaim the log below a cut: `until_address`, or the newest
        `retain_bytes` of log kept (exactly one). The cut is rounded down to
        a page start and stays below the tail page; live records of a keyed
        store below it are copied to the tail first; whole segment files
        below it are deleted. Ingest and queries go on meanwhile."""
        return self._compactor.compact(until_address, retain_bytes)

    # ---- stats ----
    def stats(self) -> dict:
        self._check_open()
        log = self._log
        idx = self._index.stats()
        disk = _segment_bytes(self.path / "log")
        return {
            "records": self._records,
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
            "psfs": [{"name": p.name, "id": p.id, "kind": p.kind.value, "active": p.active,
                      "native": p.native, "ranges": [list(r) for r in p.ranges],
                      "failure": p.failure, "eval_errors": self._eval_errors.get(p.id, 0),
                      "over_budget": self._over_budget.get(p.id, 0)}
                     for p in self._registry.all()],
            "ingest": dict(self._ingest_totals),
            "syncs": self._commit.syncs,
            "recovery": {"checkpoint_id": self.recovery.checkpoint_id,
                         "replayed_records": self.recovery.replayed_records,
                         "dropped": list(self.recovery.dropped),
                         "lost_and_found_bytes": _tree_bytes(self.path / LOST_AND_FOUND)},
            "compaction": self._compactor.stats(),
        }


def _tree_bytes(directory: Path) -> int:
    """Bytes of the files under `directory` (0 when it does not exist)."""
    total = 0
    for root, _dirs, files in os.walk(directory):
        for name in files:
            try:
                total += os.stat(os.path.join(root, name)).st_size
            except FileNotFoundError:  # removed by hand meanwhile
                pass
    return total


def _segment_bytes(directory: Path) -> int:
    total = 0
    for f in directory.glob("segment-*.log"):
        try:
            total += f.stat().st_size
        except FileNotFoundError:  # deleted by a compaction meanwhile
            pass
    return total


def _lock(path: Path):
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
        from ..files import write_atomic
        write_atomic(meta_path, json.dumps({"format": _FORMAT, "config": base.to_dict()}, indent=1).encode())
    return base

