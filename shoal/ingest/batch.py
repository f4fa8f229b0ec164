"""One batch through the two native ingest calls: shoal_ingest_prepare
(frame, validate, evaluate into plans: no shared state, the GIL released)
and shoal_ingest_commit (append and link, in order, under the writer lock),
and the batch's counts into the call's result.

A BatchRunner is one pass's (or one worker's): its job and scratch are
never shared, so runners prepare at once on several threads. Its `commit`
callable is what makes the commit safe: it takes the writer lock (and, in
a parallel pass, waits for the batch's turn) unless the caller holds it.
"""
from __future__ import annotations

import time
from array import array
from collections.abc import Callable
from typing import Any

import orjson

from .._native import check, ffi, lib, reason
from ..psf import canonical
from ..results import IngestError, IngestResult
from .core import IngestCore

_NO_EXTRAS = ffi.new("shoal_extra[1]")  # a job without Python-side values
_STRIDE = ffi.sizeof("shoal_rec_result") // 8  # a result's address is its first 8 bytes


def key_canonical(expression, obj: Any, search=None) -> bytes | None:
    """Canonical bytes of a record's key: a string or a number, else None.
    `search(expression, obj)` evaluates (the slow path's, within the budget)."""
    try:
        value = search(expression, obj) if search is not None else expression.search(obj)
    except Exception:  # noqa: BLE001 - an evaluation error (or over budget) means "no key"
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        return None
    return canonical(value)


class BatchRunner:
    """Batches of one pass through the native calls, counted into `result`."""

    def __init__(self, core: IngestCore, result: IngestResult, *, dry_run: bool):
        self.core = core
        self.result = result
        self.dry_run = dry_run
        self.job = ffi.new("shoal_ingest_job *")
        self.job.tally = core.tally.ptr
        self.end = core.log.tail_address  # the tail after this runner's last commit
        self.commit: Callable[[], None] = self.commit_held
        self.timed = True  # commits count in stats()["ingest"]["commit_seconds"] (not compaction's copies)

    def commit_held(self) -> None:
        """Commit what the job has prepared; the caller holds the writer lock."""
        core, log, job = self.core, self.core.log, self.job
        if not self.timed:
            self._commit(core, log, job)
            return
        t0 = time.perf_counter()
        try:
            self._commit(core, log, job)
        finally:
            core.counters.commit_seconds += time.perf_counter() - t0

    def _commit(self, core, log, job) -> None:
        while True:
            rc = lib.shoal_ingest_commit(job, log.c, core.index.ptr)
            # Every record the call appended is in its chains now (the C writer
            # publishes the tail before it links a record: engine/tail.py).
            log.linked_tail = log.c.tail_address
            if rc == lib.SHOAL_NEED_PAGE:
                log.turn_page()
                continue
            core.index.maybe_grow()
            self.end = log.linked_tail
            check(rc, "ingest")
            return

    def framed(self, batch, scratch, compiled) -> None:
        """A batch of spans (not lazy), Python PSFs evaluated first."""
        n = batch.n_spans
        scratch.fit(n)
        extras_c, pool_c, n_extras = _NO_EXTRAS, ffi.NULL, 0
        slow = compiled.slow
        if slow is not None and (not self.dry_run or compiled.key_slow is not None):
            extras_c, pool_c, n_extras, _keep = _slow_extras(slow, batch.buf, batch.spans, n,
                                                             key=compiled.key_slow)
            if self.dry_run:
                extras_c, pool_c, n_extras = _NO_EXTRAS, ffi.NULL, 0
        try:
            _append(self, compiled.native, batch.buf, batch.spans, n, extras_c, pool_c, n_extras, scratch)
        finally:
            self.count(batch, scratch)  # also what a call that failed at a page turn appended before it

    def lazy(self, batch, scratch, native_set, batch_bytes: int) -> None:
        """A lazy NDJSON batch (framed by the prepare call)."""
        job = self.job
        try:
            _append_lazy(self, native_set, batch, scratch, batch_bytes)
        finally:
            if batch.n_spans or job.appended or job.rejected:
                self.count(batch, scratch)

    def count(self, batch, scratch) -> None:
        """Add the job's counts to the result and zero them (so a second
        call for the same batch, on an error path, adds nothing)."""
        job, result, cfg = self.job, self.result, self.core.config
        result.input_bytes += int(job.text_bytes)
        result.ingested += int(job.appended) if not self.dry_run else int(job.next_commit - job.rejected)
        result.rejected += int(job.rejected)
        result.stored_bytes += int(job.bytes_appended)
        if job.appended:
            if result.first_address is None:
                result.first_address = int(job.first_address)
            result.last_address = int(job.last_address)
        counted = int(job.next_commit)
        if result.addresses is not None and counted:
            words = array("Q", bytes(ffi.buffer(scratch.results, counted * _STRIDE * 8)))
            result.addresses.extend(words[::_STRIDE])
        max_errors = cfg.max_reported_errors
        if job.n_rejects and len(result.errors) < max_errors:
            for k in range(min(job.n_rejects, max_errors - len(result.errors))):
                i = scratch.rejects[k]
                r = scratch.results[i]
                off = batch.error_offset if batch.error_offset is not None else int(r.err_off)
                span = batch.spans[i]
                if r.status == lib.SHOAL_E_TOO_LARGE:  # its size (a line skipped unread: counted, or not) and the limit
                    why = cfg.record_too_large(batch.record_bytes or int(span.len) or None).reason
                else:
                    why = reason(r.status)
                result.errors.append(IngestError(int(span.line), why, off))
        job.appended = job.rejected = job.bytes_appended = job.text_bytes = job.n_rejects = 0
        job.next_commit = 0


def _append_lazy(runner: BatchRunner, native_set, batch, scratch, batch_bytes: int) -> None:
    """Native calls that frame a lazy NDJSON batch as they go: about
    batch_bytes of batch.buf from batch.start, at most one results array of
    records. Leaves where framing stopped in the batch."""
    job = runner.job
    buf = batch.buf
    size = len(buf)
    buf_c = ffi.from_buffer(buf) if size else ffi.new("char[1]")
    job.frame = 1
    job.frame_final = 1 if batch.final else 0
    job.span_cap = min(len(batch.spans), scratch.n_results)
    job.frame_pos = batch.start
    job.frame_len = size
    job.frame_stop = batch.start + batch_bytes
    job.frame_line = batch.line_after
    _run(runner, native_set, buf_c, batch.spans, 0, _NO_EXTRAS, ffi.NULL, 0, scratch)
    pos = int(job.frame_pos)
    batch.n_spans = int(job.n_spans)
    batch.consumed_to = pos
    batch.line_after = int(job.frame_line)
    # Framing stopped early (the span or byte budget) rather than at the end
    # or at a partial last line: the rest of the buffer is another batch.
    batch.more = pos < size and (batch.n_spans >= job.span_cap or pos >= job.frame_stop)
    del buf_c


def _append(runner: BatchRunner, native_set, buf, spans, n: int, extras_c, pool_c, n_extras: int,
            scratch, *, tombstones: bool = False) -> None:
    """Native calls over n framed records."""
    buf_c = ffi.from_buffer(buf) if len(buf) else ffi.new("char[1]")  # alive through the calls
    runner.job.frame = 0
    _run(runner, native_set, buf_c, spans, n, extras_c, pool_c, n_extras, scratch, tombstones=tombstones)
    del buf_c


def _run(runner: BatchRunner, native_set, buf_c, spans, n: int, extras_c, pool_c, n_extras: int,
         scratch, *, tombstones: bool = False) -> None:
    """shoal_ingest_prepare over the job (the GIL released: cffi drops it
    for the call), each run of plans handed to `commit` (which appends and
    links them under the writer lock), until every span is done."""
    start(runner, native_set, buf_c, spans, n, extras_c, pool_c, n_extras, scratch, tombstones=tombstones)
    finish(runner, native_set, lib.shoal_ingest_prepare(runner.job, native_set.ptr))


def start(runner: BatchRunner, native_set, buf_c, spans, n: int, extras_c, pool_c, n_extras: int,
          scratch, *, tombstones: bool = False) -> None:
    """Point the runner's job at a batch (before its first prepare)."""
    core, job = runner.core, runner.job
    cfg = core.config
    job.buf = buf_c
    job.spans = spans
    job.n_spans = n
    job.extras = extras_c
    job.n_extras = n_extras
    job.extra_pool = pool_c if pool_c is not None else ffi.NULL
    job.dry_run = 1 if runner.dry_run else 0
    job.tombstones = 1 if tombstones else 0
    job.max_record_bytes = cfg.effective_max_record_bytes
    job.page_size = core.log.page_size
    job.next_span = 0
    job.next_extra = 0
    job.next_commit = 0
    job.results = scratch.results
    job.prep = scratch.prep
    job.plan = scratch.plan
    job.plan_cap = scratch.plan_cap
    job.tally_hints = scratch.tally_hints
    job.n_plan = 0
    job.slots = scratch.slots
    job.scratch = scratch.scratch
    job.scratch_bytes = scratch.scratch_bytes
    job.scratch_used = 0
    job.appended = 0
    job.rejected = 0
    job.bytes_appended = 0
    job.text_bytes = 0
    job.first_address = 0
    job.last_address = 0
    job.rejects = scratch.rejects
    job.n_rejects = 0


def finish(runner: BatchRunner, native_set, rc: int) -> None:
    """Commit what a prepare call (which returned rc) prepared, and go on
    preparing and committing until every span is done; raises what a
    prepare failed with once the records before it are committed."""
    job = runner.job
    while True:
        if job.next_commit < job.next_span:
            runner.commit()  # also the records before an error
        if rc == lib.SHOAL_OUT_FULL:
            job.n_plan = 0
            job.scratch_used = 0
            rc = lib.shoal_ingest_prepare(job, native_set.ptr)
            continue
        check(rc, "ingest")
        return


def _slow_extras(slow, buf, spans, n, *, key=None):
    """Evaluate slow-path PSFs per record (pure Python; documented slow path).
    With `key` (a keyed store's key expression that C cannot evaluate), also
    compute the key; a record without one is marked rejected (SHOAL_E_NO_KEY)."""
    recs: list[tuple[int, int, int, int]] = []
    pool = bytearray()
    mv = memoryview(buf)
    key_id = lib.SHOAL_KEY_PSF_ID
    for i in range(n):
        sp = spans[i]
        if sp.status != 0:
            continue
        s = sp.start
        text = bytes(mv[s:s + sp.len])
        try:
            obj = orjson.loads(text)
        except orjson.JSONDecodeError:
            continue  # C rejects it with the exact reason
        if key is not None:
            canon = key_canonical(key, obj, slow.search)
            if canon is None:
                sp.status = lib.SHOAL_E_NO_KEY
                continue
            recs.append((i, key_id, len(pool), len(canon)))
            pool += canon
        for psf_id, canon in slow.values(obj, parsed=True):
            recs.append((i, psf_id, len(pool), len(canon)))
            pool += canon
    n = len(recs)
    extras = ffi.new("shoal_extra[]", max(1, n))
    for j, (i, psf_id, off, ln) in enumerate(recs):
        e = extras[j]
        e.rec = i
        e.psf_id = psf_id
        e.off = off
        e.len = ln
    pool_c = ffi.new("char[]", bytes(pool)) if pool else ffi.new("char[1]")
    return extras, pool_c, n, pool_c
