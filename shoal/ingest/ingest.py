"""The ingest batch loop: frame input into batches, run the slow-path PSFs in
Python where any are active, and hand each batch to one native call that
validates, evaluates, appends and links every record.

Runs on the writer thread, under the store's writer lock.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from .._native import check, ffi, lib, reason
from ..errors import IngestRejected, InvalidArgument
from .framing import Framer, InputFormat
from .result import IngestError, IngestResult
from .sources import Source

if TYPE_CHECKING:  # pragma: no cover
    from ..store.store import Store

_RESULT = np.dtype([("address", "<u8"), ("status", "<i4"), ("err_off", "<u4")])
_SPAN = np.dtype([("start", "<u8"), ("len", "<u8"), ("line", "<u8"), ("status", "<i4"), ("reserved", "<u4")])
assert _RESULT.itemsize == ffi.sizeof("shoal_rec_result")
assert _SPAN.itemsize == ffi.sizeof("shoal_span")

ON_ERROR = ("skip", "reject")


class _Scratch:
    """Native buffers reused across batches of one ingest call."""

    def __init__(self, n_slots: int, page_size: int, n_spans: int = 1 << 16):
        self.slots = ffi.new("shoal_slot[]", max(1, n_slots))
        self.scratch_bytes = 2 * page_size + 4096
        self.scratch = ffi.new("char[]", self.scratch_bytes)
        self.results = ffi.new("shoal_rec_result[]", n_spans)
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
            scratch.n_results = n
        buf_c = ffi.from_buffer(batch.buf) if len(batch.buf) else ffi.new("char[1]")
        spans_np = np.frombuffer(ffi.buffer(batch.spans, n * _SPAN.itemsize), _SPAN)
        result.input_bytes += int(spans_np["len"].sum())

        extras_c, pool_c, n_extras = no_extras, ffi.NULL, 0
        if slow is not None and not dry_run:
            extras_c, pool_c, n_extras, keep = _slow_extras(slow, batch.buf, spans_np)

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
        while True:
            rc = lib.shoal_ingest(job, native_set.ptr, log.c, store._index.ptr)
            if rc == lib.SHOAL_NEED_PAGE:
                log.turn_page()
                continue
            check(rc, "ingest")
            break
        store._index.maybe_grow()

        res = np.frombuffer(ffi.buffer(scratch.results, n * _RESULT.itemsize), _RESULT)
        result.ingested += int(job.appended) if not dry_run else int(n - job.rejected)
        result.rejected += int(job.rejected)
        result.stored_bytes += int(job.bytes_appended)
        if not dry_run and job.appended:
            ok = np.flatnonzero(res["address"])
            if result.first_address is None:
                result.first_address = int(res["address"][ok[0]])
            result.last_address = int(res["address"][ok[-1]])
        if job.rejected and len(result.errors) < max_errors:
            bad = np.flatnonzero(res["status"] != 0)[: max_errors - len(result.errors)]
            for i in bad:
                result.errors.append(IngestError(int(spans_np["line"][i]), reason(int(res["status"][i])),
                                                 int(res["err_off"][i])))
    if not dry_run:
        store._note_ingest(result)
    return result


def _slow_extras(slow, buf, spans_np):
    """Evaluate slow-path PSFs per record (pure Python; documented slow path)."""
    recs: list[tuple[int, int, int, int]] = []
    pool = bytearray()
    mv = memoryview(buf)
    for i in range(len(spans_np)):
        if spans_np["status"][i] != 0:
            continue
        s = int(spans_np["start"][i])
        text = bytes(mv[s:s + int(spans_np["len"][i])])
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
