"""The writer's side of one open store, as ingest sees it: the log, the
index, the value tally, the reader gate, the writer lock, the compiled PSFs
and the counters, in one object the engine builds at open (instead of
ingest reaching into the store facade).

What must stay true:
  - `lock` serializes every writer: ingest (while it appends), PSF
    registration, checkpoints, compaction's copies and its begin move, close.
    A durable ingest waits for its fsync without it (store/commit.py).
  - `compiled` is replaced, never mutated: an ingest batch takes one
    snapshot and notices a swap (a PSF registered while a slow stream's
    chunk was pulled with the lock released) by identity.
  - `records` is the number of records in [begin, tail): every append adds
    to it (copies too), compaction subtracts what it drops.
  - `counters` count the calls users made; compaction's copies are appends
    but not ingest calls, so they do not count there.
"""
from __future__ import annotations

import contextlib
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._native import ffi, lib

if TYPE_CHECKING:  # pragma: no cover
    from ..config import StoreConfig
    from ..psf.compiled import Compiled
    from ..results import IngestResult
    from ..store.gate import Gate
    from ..store.hlog import HybridLog
    from ..store.index import HashIndex
    from ..store.tally import Tally


@dataclass
class Counters:
    """Ingest calls since open, and what they did (stats()["ingest"])."""
    calls: int = 0
    records: int = 0
    rejected: int = 0
    bytes: int = 0
    # Wall seconds of commits (appending and linking, the part under the
    # writer lock that threads take in turn): what bounds ingest on many cores.
    commit_seconds: float = 0.0

    def note(self, result: IngestResult) -> None:
        self.calls += 1
        self.records += result.ingested
        self.rejected += result.rejected
        self.bytes += result.input_bytes

    def to_dict(self) -> dict:
        return {"calls": self.calls, "records": self.records, "rejected": self.rejected, "bytes": self.bytes,
                "commit_seconds": round(self.commit_seconds, 6)}


# Key pointer plans a Scratch holds: a batch's records, prepared before any
# is committed (at least SHOAL_MAX_PLAN, one record's most).
PLAN_CAP = 1 << 15


class Scratch:
    """Native buffers one ingest pass uses, from the prepare to the commit of
    each batch: the slots a parse fills, canonical values, the plans of the
    records prepared and their results. One pass holds it at a time
    (IngestCore.scratch), so passes prepare at once on several threads."""

    def __init__(self, n_slots: int, page_size: int, n_spans: int = 1 << 16):
        self.slots = ffi.new("shoal_slot[]", max(1, n_slots))
        self.scratch_bytes = 2 * page_size + 4096
        self.scratch = ffi.new("char[]", self.scratch_bytes)
        self.plan_cap = max(PLAN_CAP, lib.SHOAL_MAX_PLAN)
        self.plan = ffi.new("char[]", self.plan_cap * lib.shoal_kp_plan_bytes())
        self.tally_hints = ffi.new("void *[]", self.plan_cap)  # each plan's tally entry (ingest.c)
        self.fit(n_spans)

    def fit_slots(self, n_slots: int) -> None:
        """Room for a PSF set of n_slots slots (one registered mid-pass)."""
        if len(self.slots) < n_slots:
            self.slots = ffi.new("shoal_slot[]", n_slots)

    def fit(self, n: int) -> None:
        """Room for the results of n records."""
        if n > getattr(self, "n_results", 0):
            self.results = ffi.new("shoal_rec_result[]", n)
            self.rejects = ffi.new("uint32_t[]", n)
            self.prep = ffi.new("shoal_ingest_prep[]", n)
            self.n_results = n


class PsfHold:
    """Lets ingest passes prepare batches outside the writer lock while the
    PSF set cannot change under them: each batch is held from the snapshot
    of `compiled` its records are evaluated by until they are committed, and
    a registration waits for the batches held, and holds off new ones, before
    it takes the writer lock. Otherwise a batch evaluated by the old set
    could land after a new PSF's start, unindexed by it.

    Never wait for `exclusive` while holding the writer lock: a held batch
    waits for that lock to commit."""

    def __init__(self) -> None:
        self._cv = threading.Condition(threading.Lock())
        self._held = 0
        self._waiting = 0

    def enter(self) -> None:
        """Hold a batch (waits while a registration is waiting)."""
        cv = self._cv
        with cv:
            while self._waiting:
                cv.wait()
            self._held += 1

    def try_enter(self) -> bool:
        """enter() unless a registration is waiting (then False, at once)."""
        with self._cv:
            if self._waiting:
                return False
            self._held += 1
            return True

    def leave(self) -> None:
        with self._cv:
            self._held -= 1
            if not self._held:
                self._cv.notify_all()

    @contextlib.contextmanager
    def batch(self) -> Any:
        self.enter()
        try:
            yield
        finally:
            self.leave()

    @contextlib.contextmanager
    def exclusive(self) -> Any:
        cv = self._cv
        with cv:
            self._waiting += 1
            try:
                while self._held:
                    cv.wait()
            except BaseException:
                self._waiting -= 1
                cv.notify_all()
                raise
        try:
            yield
        finally:
            with cv:
                self._waiting -= 1
                cv.notify_all()


class IngestCore:
    def __init__(self, config: StoreConfig, log: HybridLog, index: HashIndex, tally: Tally, gate: Gate,
                 tmp_dir: Path, compiled: Compiled, records: int):
        self.config = config
        self.log = log
        self.index = index
        self.tally = tally
        self.gate = gate
        self.tmp_dir = tmp_dir
        self.compiled = compiled
        self.records = records
        self.counters = Counters()
        self.lock = threading.Lock()
        # Compaction takes the writer lock through this turnstile, and ingest
        # passes it before taking the lock: back-to-back ingest calls would
        # otherwise win every hand-over (threading.Lock is not fair) and
        # starve background compaction.
        self._turnstile = threading.Lock()
        self._scratch: list[Scratch] = []  # free, for the next pass
        self._scratch_lock = threading.Lock()
        self.psf_hold = PsfHold()
        # Notified after every ingest call: followers of the live tail
        # (engine/tail.py) wait on it instead of polling hard.
        self.appended = threading.Condition()

    def check_open(self) -> None:
        self.gate.check_open()

    def let_through(self) -> None:
        """Ingest, before taking the writer lock: wait while a compaction is
        queued for it (an uncontended acquire otherwise)."""
        with self._turnstile:
            pass

    @contextlib.contextmanager
    def writer_first(self) -> Any:
        """The writer lock for compaction: ahead of ingest calls that have
        not yet passed the turnstile."""
        with self._turnstile:
            self.lock.acquire()
        try:
            yield
        finally:
            self.lock.release()

    def take_scratch(self, n_slots: int) -> Scratch:
        """Native ingest buffers for a PSF set of n_slots slots, the
        caller's alone until it gives them back (one per preparing thread)."""
        n = max(64, n_slots)
        with self._scratch_lock:
            s = self._scratch.pop() if self._scratch else None
        if s is None:
            return Scratch(n, self.log.page_size)
        s.fit_slots(n)
        return s

    def give_scratch(self, s: Scratch) -> None:
        with self._scratch_lock:
            if len(self._scratch) < 4:  # one per core that ingests, kept warm
                self._scratch.append(s)

    @contextlib.contextmanager
    def scratch(self, n_slots: int) -> Any:
        s = self.take_scratch(n_slots)
        try:
            yield s
        finally:
            self.give_scratch(s)

    def noted(self, result: IngestResult, *, counted: bool) -> None:
        """An ingest pass appended result.ingested records."""
        self.records += result.ingested
        if counted:
            self.counters.note(result)
        if result.ingested:
            with self.appended:
                self.appended.notify_all()
