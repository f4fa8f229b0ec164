"""One ingest call on several threads: the calling thread frames the input
(eagerly, at memchr speed) into batches of about batch_bytes, workers
prepare them (the GIL released: parse, validate, evaluate, hash, checksum),
and the calling thread commits each under the writer lock, in input order,
as soon as it is prepared: it parses nothing itself, so while it appends
one batch the workers parse the next ones.

Must stay true:
  - Batches commit in input order (the calling thread takes them from the
    front of `inflight`), so the call's records land in input order and its
    result (counts, errors, addresses) is built in that order.
  - After a batch fails, no later batch commits: the records stored are a
    prefix of the input, as for a serial call, and the error says how many.
    A failure of the input itself (a truncated gzip) commits the batches
    framed before it first.
  - PSF holds (core.PsfHold) are taken in batch order on the calling
    thread and left once a batch is committed. A registration waiting for
    them is let in by committing every batch in flight first: the calling
    thread never blocks on a hold while it holds others.
  - At most threads + 1 batches are in flight, each with its own job and
    scratch: the input is read no further ahead than that.
"""
from __future__ import annotations

from array import array
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from .._native import ffi, lib
from ..results import IngestResult
from .batch import _NO_EXTRAS, BatchRunner, _slow_extras, finish, start
from .core import IngestCore
from .framing import _SPAN_CAP, Framer, InputFormat
from .sources import Source


class _Slot:
    """One batch in flight: its runner (job) and scratch, reused."""

    def __init__(self, core: IngestCore, result: IngestResult):
        self.runner = BatchRunner(core, result, dry_run=False)
        self.scratch = core.take_scratch(core.compiled.native.n_slots)
        self.batch: Any = None
        self.compiled: Any = None
        self.future: Future | None = None
        self.keep: tuple = ()


def _prepare(slot: _Slot) -> int:
    """On a worker: the first prepare call over the slot's batch."""
    batch, compiled, scratch, runner = slot.batch, slot.compiled, slot.scratch, slot.runner
    n = batch.n_spans
    scratch.fit_slots(compiled.native.n_slots)
    scratch.fit(n)
    extras_c, pool_c, n_extras = _NO_EXTRAS, ffi.NULL, 0
    if compiled.slow is not None:  # Python PSFs: evaluated here, holding the GIL
        extras_c, pool_c, n_extras, _ = _slow_extras(compiled.slow, batch.buf, batch.spans, n,
                                                     key=compiled.key_slow)
    buf_c = ffi.from_buffer(batch.buf) if len(batch.buf) else ffi.new("char[1]")
    slot.keep = (buf_c, extras_c, pool_c)
    runner.job.frame = 0
    start(runner, compiled.native, buf_c, batch.spans, n, extras_c, pool_c, n_extras, scratch)
    return lib.shoal_ingest_prepare(runner.job, compiled.native.ptr)


def run(core: IngestCore, source: Source, fmt: InputFormat, threads: int, *,
        addresses: bool = False) -> tuple[IngestResult, int]:
    """The records of `source`, prepared on `threads` workers (on_error
    "skip"); returns the result and a tail at or after its last record."""
    cfg = core.config
    lock = core.lock
    log = core.log
    hold = core.psf_hold
    result = IngestResult()
    if addresses:
        result.addresses = array("Q")
    framer = Framer(fmt, cfg.batch_bytes, cfg.effective_max_record_bytes, lazy=False)
    free_spans: list[Any] = []

    def spans_source() -> Any:
        return free_spans.pop() if free_spans else ffi.new("shoal_span[]", _SPAN_CAP)

    framer.spans_source = spans_source
    framer.window = cfg.batch_bytes
    slots: list[_Slot] = []   # every slot made, for their scratch at the end
    free: list[_Slot] = []
    inflight: deque[_Slot] = deque()
    end = [log.tail_address]

    def commit_held_locked(runner: BatchRunner) -> None:
        core.let_through()  # a compaction waiting for the writer lock goes first
        with lock:
            core.check_open()
            log.check_writable()
            runner.commit_held()

    def commit_oldest() -> None:
        slot = inflight.popleft()
        runner = slot.runner
        try:
            rc = slot.future.result()  # a worker's exception is raised here, in batch order
            runner.commit = lambda: commit_held_locked(runner)
            finish(runner, slot.compiled.native, rc)
        finally:
            runner.count(slot.batch, slot.scratch)
            end[0] = max(end[0], runner.end)
            hold.leave()
            _release(slot)

    def _release(slot: _Slot) -> None:
        spans = slot.batch.spans
        if spans is not None and len(spans) == _SPAN_CAP:
            free_spans.append(spans)
        slot.batch = slot.compiled = slot.future = None
        slot.keep = ()
        free.append(slot)

    def abandon() -> None:
        """Batches after a failure: prepared, never committed."""
        while inflight:
            slot = inflight.popleft()
            try:
                slot.future.exception()  # wait for the worker to let go of the slot
            finally:
                hold.leave()
                _release(slot)

    pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="shoal-ingest")
    try:
        try:
            for batch in framer.batches(source.chunks()):
                while inflight and (len(inflight) > threads or inflight[0].future.done()):
                    commit_oldest()
                if not hold.try_enter():
                    # A registration is waiting for the batches in flight:
                    # commit them all, then wait for it to finish.
                    while inflight:
                        commit_oldest()
                    hold.enter()
                try:
                    compiled = core.compiled  # held: fixed until this batch commits
                    core.check_open()
                except BaseException:
                    hold.leave()
                    raise
                if free:
                    slot = free.pop()
                else:
                    slot = _Slot(core, result)
                    slots.append(slot)
                slot.batch, slot.compiled = batch, compiled
                slot.future = pool.submit(_prepare, slot)
                inflight.append(slot)
        except BaseException:
            # The input failed (or the store closed): what was framed before
            # it is stored, as for a serial call, then the error goes up.
            while inflight:
                commit_oldest()
            raise
        while inflight:
            commit_oldest()
    except BaseException as exc:
        abandon()
        exc.ingest_result = result
        raise
    finally:
        pool.shutdown(wait=True)
        for slot in slots:
            core.give_scratch(slot.scratch)
        with lock:
            core.noted(result, counted=True)
    return result, max(end[0], result.last_address or 0)
