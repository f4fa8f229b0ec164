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

from .._native import ffi

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

    def note(self, result: IngestResult) -> None:
        self.calls += 1
        self.records += result.ingested
        self.rejected += result.rejected
        self.bytes += result.input_bytes

    def to_dict(self) -> dict:
        return {"calls": self.calls, "records": self.records, "rejected": self.rejected, "bytes": self.bytes}


class Scratch:
    """Native buffers reused across batches and calls (writer only)."""

    def __init__(self, n_slots: int, page_size: int, n_spans: int = 1 << 16):
        self.slots = ffi.new("shoal_slot[]", max(1, n_slots))
        self.scratch_bytes = 2 * page_size + 4096
        self.scratch = ffi.new("char[]", self.scratch_bytes)
        self.results = ffi.new("shoal_rec_result[]", n_spans)
        self.rejects = ffi.new("uint32_t[]", n_spans)
        self.n_results = n_spans

    def fit(self, n: int) -> None:
        """Room for the results of n records."""
        if n > self.n_results:
            self.results = ffi.new("shoal_rec_result[]", n)
            self.rejects = ffi.new("uint32_t[]", n)
            self.n_results = n


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
        self._scratch: Scratch | None = None
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

    def scratch(self, n_slots: int) -> Scratch:
        """Native ingest buffers for a PSF set of n_slots slots (writer only)."""
        s = self._scratch
        if s is None or len(s.slots) < max(1, n_slots):
            s = self._scratch = Scratch(max(64, n_slots), self.log.page_size)
        return s

    def noted(self, result: IngestResult, *, counted: bool) -> None:
        """An ingest pass appended result.ingested records."""
        self.records += result.ingested
        if counted:
            self.counters.note(result)
        if result.ingested:
            with self.appended:
                self.appended.notify_all()
