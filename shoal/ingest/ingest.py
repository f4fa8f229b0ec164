"""The ingest batch loop: frame input into batches, run the slow-path PSFs in
Python where any are active, and hand each batch to one native call that
validates, evaluates, appends and links every record.

Runs on the writer thread, under the store's writer lock.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .._native import check, ffi, lib, reason
from ..errors import IngestRejected, InvalidArgument
from .framing import Framer, InputFormat
from .result import IngestError, IngestResult
from .sources import Source

if TYPE_CHECKING:  # pragma: no cover
    from ..store.store import Store

ON_ERROR = ("skip", "reject")


class _Scratch:
    """Native buffers reused across batches of one ingest call."""

    def __init__(self, n_slots: int, page_size: int, n_spans: int = 1 << 16):
        self.slots = ffi.new("shoal_slot[]", max(1, n_slots))
        self.scratch_bytes = 2 * page_size + 4096
        self.scratch = ffi.new("char[]", self.scratch_bytes)
        self.results = ffi.new("shoal_rec_result[]", n_spans)
        self.rejects = ffi.new("uint32_t[]", n_spans)
        self.n_results = n_spans


def run(store: "Store", data: Any, *, on_error: str = "skip", durable: bool = False,
        format: str | InputFormat = "auto") -> IngestResult:
    if on_error not in ON_ERROR:
        raise InvalidArgument(f"on_error must be 'skip' or 'reject', not {on_error!r}")
    fmt = InputFormat.parse(format)
    source = Source(data)
    try:
        if on_error == "reject":
            source.make_replayable(str(store.tmp_dir))
            check_result = _pass(store, source, fmt, dry_run=True)
            if check_result.rejected:
                raise IngestRejected(check_result)
        result = _pass(store, source, fmt, dry_run=False)
    finally:
        source.close()
    if durable:
        store._log.flush(durable=True)
        result.durable = True
    return result


def _pass(store: "Store", source: Source, fmt: InputFormat, *, dry_run: bool) -> IngestResult:
    cfg = store.config
    log = store._log
    compiled = store._compiled()
    native_set = compiled.native
    slow = compiled.slow
    framer = Framer(fmt, cfg.batch_bytes, cfg.effective_max_record_bytes)
    scratch = store._ingest_scratch(native_set.n_slots)
    result = IngestResult()
    max_errors = cfg.max_reported_errors
    job = ffi.new("shoal_ingest_job *")
    no_extras = ffi.new("shoal_extra[1]")

    for batch in framer.batches(source.chunks()):
        n = batch.n_spans
        if n > scratch.n_results:
            scratch.results = ffi.new("shoal_rec_result[]", n)
            scratch.rejects = ffi.new("uint32_t[]", n)
            scratch.n_results = n
        buf_c = ffi.from_buffer(batch.buf) if len(batch.buf) else ffi.new("char[1]")
        extras_c, pool_c, n_extras = no_extras, ffi.NULL, 0
        if slow is not None and not dry_run:
            extras_c, pool_c, n_extras, keep = _slow_extras(slow, batch.buf, batch.spans, n)

        job.buf = buf_c
        job.spans = batch.spans
        job.n_spans = n
        job.extras = extras_c
        job.n_extras = n_extras
        job.extra_pool = pool_c if pool_c is not None else ffi.NULL
        job.dry_run = 1 if dry_run else 0
        job.max_record_bytes = cfg.effective_max_record_bytes
        job.next_span = 0
        job.next_extra = 0
        job.results = scratch.results
        job.slots = scratch.slots
        job.scratch = scratch.scratch
        job.scratch_bytes = scratch.scratch_bytes
        job.appended = 0
        job.rejected = 0
        job.bytes_appended = 0
        job.text_bytes = 0
        job.first_address = 0
        job.last_address = 0
        job.rejects = scratch.rejects
        job.n_rejects = 0
        while True:
            rc = lib.shoal_ingest(job, native_set.ptr, log.c, store._index.ptr)
            if rc == lib.SHOAL_NEED_PAGE:
                log.turn_page()
                continue
            check(rc, "ingest")
            break
        store._index.maybe_grow()

        result.input_bytes += int(job.text_bytes)
        result.ingested += int(job.appended) if not dry_run else int(n - job.rejected)
        result.rejected += int(job.rejected)
        result.stored_bytes += int(job.bytes_appended)
        if job.appended:
            if result.first_address is None:
                result.first_address = int(job.first_address)
            result.last_address = int(job.last_address)
        if job.n_rejects and len(result.errors) < max_errors:
            for k in range(min(job.n_rejects, max_errors - len(result.errors))):
                i = scratch.rejects[k]
                r = scratch.results[i]
                result.errors.append(IngestError(int(batch.spans[i].line), reason(r.status), int(r.err_off)))
    if not dry_run:
        store._note_ingest(result)
    return result


def _slow_extras(slow, buf, spans, n):
    """Evaluate slow-path PSFs per record (pure Python; documented slow path)."""
    recs: list[tuple[int, int, int, int]] = []
    pool = bytearray()
    mv = memoryview(buf)
    for i in range(n):
        sp = spans[i]
        if sp.status != 0:
            continue
        s = sp.start
        text = bytes(mv[s:s + sp.len])
        for psf_id, canon in slow.values(text):
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
