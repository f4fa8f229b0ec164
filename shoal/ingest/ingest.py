"""An ingest call: its input framed into batches, each batch through the
native calls (batch.py), serially here or, with threads > 1, prepared on
several threads and committed in input order (parallel.py).

The log, index, PSF set and counters a call writes are those of the
IngestCore (ingest/core.py) it is given, never the store facade's.
"""
from __future__ import annotations

import contextlib
from array import array
from typing import Any

from .._native import ffi, lib, reason
from ..config import MAX_INGEST_THREADS
from ..errors import IngestRejected, InvalidArgument
from ..results import IngestResult
from . import parallel
from .batch import BatchRunner, _append
from .core import IngestCore
from .framing import Framer, InputFormat
from .sources import Source

ON_ERROR = ("skip", "reject")


def _small(data: Any, batch_bytes: int) -> bool:
    """Bytes of at most two batches: one thread does them sooner than a
    pool starts."""
    return isinstance(data, (bytes, bytearray, memoryview)) and len(data) <= 2 * batch_bytes


def run(core: IngestCore, data: Any, *, on_error: str = "skip",
        format: str | InputFormat = "auto", max_input_bytes: int | None = None,
        addresses: bool = False, threads: int = 1) -> tuple[IngestResult, int]:
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
    in input order (0 for a rejected one).

    threads > 1 (on_error="skip"): the input's batches are prepared on that
    many threads and committed in input order (parallel.py)."""
    if on_error not in ON_ERROR:
        raise InvalidArgument(f"on_error must be 'skip' or 'reject', not {on_error!r}")
    if not isinstance(threads, int) or isinstance(threads, bool) or not 1 <= threads <= MAX_INGEST_THREADS:
        raise InvalidArgument(f"threads must be an integer from 1 to {MAX_INGEST_THREADS}, not {threads!r}")
    fmt = InputFormat.parse(format)
    source = Source(data, max_input_bytes)
    try:
        if on_error == "skip":
            core.check_open()
            core.log.check_writable()
            if threads > 1 and not _small(data, core.config.batch_bytes):
                return parallel.run(core, source, fmt, threads, addresses=addresses)
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


def check(core: IngestCore, data: Any, *, format: str | InputFormat = "auto",
          max_input_bytes: int | None = None) -> IngestResult:
    """What ingest(data, on_error="reject") would find: the records it
    would store (result.ingested) and the bad ones, with their errors,
    storing nothing. Under the writer lock, as reject's first pass is (the
    PSF set and the limits it checks against cannot change meanwhile)."""
    source = Source(data, max_input_bytes)
    try:
        core.check_open()
        source.make_replayable(str(core.tmp_dir))  # reads the whole input: not under the lock
        with core.lock:
            core.check_open()
            return _pass(core, source, InputFormat.parse(format), dry_run=True, counted=False)[0]
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
    """One pass over the input on this thread. `held`: the caller holds the
    writer lock throughout; otherwise each batch is prepared without it and
    committed under it, in a PSF hold (core.PsfHold) from its snapshot of
    the PSF set to its commit. Returns the result and the tail after its
    last commit."""
    cfg = core.config
    log = core.log
    lock = core.lock
    compiled = core.compiled
    # Spans are needed before the native call only by Python-side PSFs.
    framer = Framer(fmt, cfg.batch_bytes, cfg.effective_max_record_bytes, lazy=compiled.slow is None)
    result = IngestResult()
    if addresses and not dry_run:
        result.addresses = array("Q")
    runner = BatchRunner(core, result, dry_run=dry_run)
    runner.timed = counted

    def commit() -> None:
        core.let_through()  # a compaction waiting for the writer lock goes first
        with lock:
            core.check_open()
            log.check_writable()
            runner.commit_held()

    if not held and not dry_run:
        runner.commit = commit
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
                    scratch.fit_slots(compiled.native.n_slots)
                    core.check_open()  # closed while a chunk was pulled?
                    log.check_writable()
                    if not batch.lazy:
                        runner.framed(batch, scratch, compiled)
                    elif compiled.slow is None:
                        runner.lazy(batch, scratch, compiled.native, cfg.batch_bytes)
                    else:
                        # A Python PSF was registered mid-stream: it needs spans before
                        # the native call, so frame this lazy batch's bytes first.
                        for eager in framer.frame_eagerly(batch.buf, batch.start, batch.final, batch.line_after):
                            if eager.n_spans:
                                runner.framed(eager, scratch, compiled)
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
    return result, max(runner.end, result.last_address or 0)


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
    runner = BatchRunner(core, IngestResult(), dry_run=False)
    job = runner.job
    with core.scratch(native_set.n_slots) as scratch:
        scratch.fit(n)
        _append(runner, native_set, bytes(buf), spans, n, extras, pool_c, n, scratch, tombstones=True)
        if job.rejected:
            r = scratch.results[scratch.rejects[0]]
            raise InvalidArgument(f"cannot delete this key: {reason(r.status)}")
        core.records += int(job.appended)
        return [int(scratch.results[i].address) for i in range(n)]
