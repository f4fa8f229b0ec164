"""The ingest batch loop: frame input into batches, run the slow-path PSFs in
Python where any are active, and hand each batch to one native call that
validates, evaluates, appends and links every record.

Runs on the writer thread, under the writer lock of the IngestCore
(ingest/core.py) it is given: the log, index, PSF set and counters it
writes are that object's, never the store facade's.
"""
from __future__ import annotations

import contextlib
from array import array
from typing import Any

import orjson

from .._native import check, ffi, lib, reason
from ..psf import canonical
from ..errors import IngestRejected, InvalidArgument
from ..results import IngestError, IngestResult
from .core import IngestCore
from .framing import Framer, InputFormat
from .sources import Source



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


ON_ERROR = ("skip", "reject")
_NO_EXTRAS = ffi.new("shoal_extra[1]")  # a job without Python-side values


def run(core: IngestCore, data: Any, *, on_error: str = "skip",
        format: str | InputFormat = "auto", max_input_bytes: int | None = None,
        addresses: bool = False) -> tuple[IngestResult, int]:
    """Append the records of `data`; returns the result and a tail address
    at or after its last record. Durability is the caller's (Store.ingest
    waits for its fsync after this).

    With on_error="skip", each batch is prepared (framed, validated,
    evaluated: the bulk of the work) with no lock held and the GIL released,
    and only committed (appended and linked, in input order) under the
    writer lock: calls on several threads prepare at once, and their
    records may interleave in the log, as may a slow stream's with other
    writers' while its next chunk is pulled. With "reject", a one-shot stream
    is spooled first, without the lock, and both passes then run under it.

    `max_input_bytes` bounds the input after gunzip (InputTooLarge past it;
    the records before stay stored with on_error="skip", as on any failure).
    With `addresses`, result.addresses holds each input record's address
    in input order (0 for a rejected one)."""
    if on_error not in ON_ERROR:
        raise InvalidArgument(f"on_error must be 'skip' or 'reject', not {on_error!r}")
    fmt = InputFormat.parse(format)
    source = Source(data, max_input_bytes)
    try:
        if on_error == "skip":
            core.check_open()
            core.log.check_writable()
            return _pass(core, source, fmt, dry_run=False, addresses=addresses, held=False)
        core.check_open()
        source.make_replayable(str(core.tmp_dir))  # reads the whole input: not under the lock
        core.let_through()  # a compaction waiting for the writer lock goes first
        with core.lock:
            core.check_open()
            core.log.check_writable()
            check_result, _ = _pass(core, source, fmt, dry_run=True)
            if check_result.rejected:
                raise IngestRejected(check_result)
            return _pass(core, source, fmt, dry_run=False, addresses=addresses)
    finally:
        source.close()


def run_locked(core: IngestCore, data: bytes, *, format: str | InputFormat = "auto") -> IngestResult:
    """Append the valid records of `data` (on_error="skip") for a caller
    that holds the writer lock: compaction's copies, which add to
    core.records but are not ingest calls (not in core.counters)."""
    source = Source(data)
    try:
        return _pass(core, source, InputFormat.parse(format), dry_run=False, counted=False)[0]
    finally:
        source.close()


def _pass(core: IngestCore, source: Source, fmt: InputFormat, *, dry_run: bool,
          counted: bool = True, addresses: bool = False, held: bool = True) -> tuple[IngestResult, int]:
    """One pass over the input. `held`: the caller holds the writer lock
    throughout; otherwise each batch is prepared without it and committed
    under it, in a PSF hold (core.PsfHold) from its snapshot of the PSF set
    to its commit. Returns the result and the tail after its last commit."""
    cfg = core.config
    log = core.log
    lock = core.lock
    compiled = core.compiled
    # Spans are needed before the native call only by Python-side PSFs.
    framer = Framer(fmt, cfg.batch_bytes, cfg.effective_max_record_bytes, lazy=compiled.slow is None)
    result = IngestResult()
    if addresses and not dry_run:
        result.addresses = array("Q")
    stride = ffi.sizeof("shoal_rec_result") // 8  # a result's address is its first 8 bytes
    max_errors = cfg.max_reported_errors
    job = ffi.new("shoal_ingest_job *")
    job.tally = core.tally.ptr
    end = [log.tail_address]

    def commit_held() -> None:
        """Commit what job has prepared (the writer lock is held)."""
        while True:
            rc = lib.shoal_ingest_commit(job, log.c, core.index.ptr)
            # Every record the call appended is in its chains now (the C writer
            # publishes the tail before it links a record: engine/tail.py).
            log.linked_tail = log.c.tail_address
            if rc == lib.SHOAL_NEED_PAGE:
                log.turn_page()
                continue
            core.index.maybe_grow()
            end[0] = log.linked_tail
            check(rc, "ingest")
            return

    def commit() -> None:
        if held or dry_run:
            commit_held()
            return
        core.let_through()  # a compaction waiting for the writer lock goes first
        with lock:
            core.check_open()
            log.check_writable()
            commit_held()

    def framed(batch, scratch) -> None:
        """A batch of spans (not lazy) through the native calls."""
        n = batch.n_spans
        scratch.fit(n)
        extras_c, pool_c, n_extras = _NO_EXTRAS, ffi.NULL, 0
        if slow is not None and (not dry_run or compiled.key_slow is not None):
            extras_c, pool_c, n_extras, keep = _slow_extras(slow, batch.buf, batch.spans, n,
                                                            key=compiled.key_slow)
            if dry_run:
                extras_c, pool_c, n_extras = _NO_EXTRAS, ffi.NULL, 0
        try:
            _append(core, job, native_set, batch.buf, batch.spans, n, extras_c, pool_c, n_extras,
                    scratch, commit, dry_run=dry_run)
        finally:
            add_counts(batch, scratch)  # also what a call that failed at a page turn appended before it

    def add_counts(batch, scratch) -> None:
        """Add the job's counts to the result and zero them (so a second
        call for the same batch, on an error path, adds nothing)."""
        result.input_bytes += int(job.text_bytes)
        result.ingested += int(job.appended) if not dry_run else int(job.next_commit - job.rejected)
        result.rejected += int(job.rejected)
        result.stored_bytes += int(job.bytes_appended)
        if job.appended:
            if result.first_address is None:
                result.first_address = int(job.first_address)
            result.last_address = int(job.last_address)
        counted_spans = int(job.next_commit)
        if result.addresses is not None and counted_spans:
            words = array("Q", bytes(ffi.buffer(scratch.results, counted_spans * stride * 8)))
            result.addresses.extend(words[::stride])
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

    hold = contextlib.nullcontext if held else core.psf_hold.batch
    try:
        with core.scratch(compiled.native.n_slots) as scratch:
            for batch in framer.batches(source.chunks()):
                with hold():
                    # A batch takes the PSF set as it is now: registered or
                    # deregistered since the last (while a chunk was pulled, or
                    # by another thread between commits), records from here on
                    # are indexed by the new set (its PSFs are active from the tail).
                    compiled = core.compiled
                    native_set = compiled.native
                    slow = compiled.slow
                    scratch.fit_slots(native_set.n_slots)
                    core.check_open()  # closed while a chunk was pulled?
                    log.check_writable()
                    if not batch.lazy:
                        framed(batch, scratch)
                    elif slow is None:
                        try:
                            _append_lazy(core, job, native_set, batch, scratch, cfg.batch_bytes, commit,
                                         dry_run=dry_run)
                        finally:
                            if batch.n_spans or job.appended or job.rejected:
                                add_counts(batch, scratch)
                    else:
                        # A Python PSF was registered mid-stream: it needs spans before
                        # the native call, so frame this lazy batch's bytes first.
                        for eager in framer.frame_eagerly(batch.buf, batch.start, batch.final, batch.line_after):
                            if eager.n_spans:
                                framed(eager, scratch)
                            batch.consumed_to, batch.line_after = eager.consumed_to, eager.line_after
                        batch.more = False
    except BaseException as exc:
        # The contract for an ingest that fails partway (truncated gzip, a
        # cut upload, disk full): the records appended before the failure
        # stay stored, are counted below, and the error says how many, so
        # the counters always equal what a scan finds and a client knows
        # where to resume instead of storing duplicates.
        if not dry_run:
            exc.ingest_result = result
        raise
    finally:
        if not dry_run:
            if held:
                core.noted(result, counted=counted)
            else:
                with lock:
                    core.noted(result, counted=counted)
    return result, max(end[0], result.last_address or 0)


def _append_lazy(core: IngestCore, job, native_set, batch, scratch, batch_bytes: int, commit, *,
                 dry_run: bool) -> None:
    """Native calls that frame a lazy NDJSON batch as they go: about
    batch_bytes of batch.buf from batch.start, at most one results array of
    records. Leaves where framing stopped in the batch."""
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
    _run(core, job, native_set, buf_c, batch.spans, 0, _NO_EXTRAS, ffi.NULL, 0, scratch, commit,
         dry_run=dry_run, tombstones=False)
    pos = int(job.frame_pos)
    batch.n_spans = int(job.n_spans)
    batch.consumed_to = pos
    batch.line_after = int(job.frame_line)
    # Framing stopped early (the span or byte budget) rather than at the end
    # or at a partial last line: the rest of the buffer is another batch.
    batch.more = pos < size and (batch.n_spans >= job.span_cap or pos >= job.frame_stop)
    del buf_c


def _append(core: IngestCore, job, native_set, buf, spans, n: int, extras_c, pool_c, n_extras: int,
            scratch, commit, *, dry_run: bool = False, tombstones: bool = False) -> None:
    """Native calls over n framed records."""
    buf_c = ffi.from_buffer(buf) if len(buf) else ffi.new("char[1]")  # alive through the calls
    job.frame = 0
    _run(core, job, native_set, buf_c, spans, n, extras_c, pool_c, n_extras, scratch, commit,
         dry_run=dry_run, tombstones=tombstones)
    del buf_c


def _run(core: IngestCore, job, native_set, buf_c, spans, n: int, extras_c, pool_c, n_extras: int,
         scratch, commit, *, dry_run: bool, tombstones: bool) -> None:
    """shoal_ingest_prepare over the job (the GIL released: cffi drops it
    for the call), each run of plans handed to `commit` (which appends and
    links them under the writer lock), until every span is done."""
    cfg = core.config
    job.buf = buf_c
    job.spans = spans
    job.n_spans = n
    job.extras = extras_c
    job.n_extras = n_extras
    job.extra_pool = pool_c if pool_c is not None else ffi.NULL
    job.dry_run = 1 if dry_run else 0
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
    while True:
        rc = lib.shoal_ingest_prepare(job, native_set.ptr)
        if job.next_commit < job.next_span:
            commit()  # also the records before an error
        if rc == lib.SHOAL_OUT_FULL:
            job.n_plan = 0
            job.scratch_used = 0
            continue
        check(rc, "ingest")
        return


def append_tombstones(core: IngestCore, keys: list[tuple[bytes, bytes]]) -> list[int]:
    """Append one tombstone per (key JSON text, canonical key): a record
    flagged deleted whose only key pointer is on the key chain. Writer only.
    Returns the tombstones' addresses."""
    n = len(keys)
    buf = bytearray()
    spans = ffi.new("shoal_span[]", max(1, n))
    extras = ffi.new("shoal_extra[]", max(1, n))
    pool = bytearray()
    for i, (text, canon) in enumerate(keys):
        sp = spans[i]
        sp.start = len(buf)
        sp.len = len(text)
        sp.line = i + 1
        sp.status = 0
        buf += text + b"\n"
        e = extras[i]
        e.rec = i
        e.psf_id = lib.SHOAL_KEY_PSF_ID
        e.off = len(pool)
        e.len = len(canon)
        pool += canon
    pool_c = ffi.new("char[]", bytes(pool) or b"\0")
    native_set = core.compiled.native
    job = ffi.new("shoal_ingest_job *")
    job.tally = core.tally.ptr
    log = core.log

    def commit() -> None:
        while True:
            rc = lib.shoal_ingest_commit(job, log.c, core.index.ptr)
            log.linked_tail = log.c.tail_address
            if rc == lib.SHOAL_NEED_PAGE:
                log.turn_page()
                continue
            core.index.maybe_grow()
            check(rc, "ingest")
            return

    with core.scratch(native_set.n_slots) as scratch:
        scratch.fit(n)
        _append(core, job, native_set, bytes(buf), spans, n, extras, pool_c, n, scratch, commit, tombstones=True)
        if job.rejected:
            r = scratch.results[scratch.rejects[0]]
            raise InvalidArgument(f"cannot delete this key: {reason(r.status)}")
        core.records += int(job.appended)
        return [int(scratch.results[i].address) for i in range(n)]


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
