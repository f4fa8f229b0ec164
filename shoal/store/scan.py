"""Scans: evaluate an expression over every record of a log address range,
page by page, in C where the expression is in the native subset and in Python
(the slow path) otherwise. Used by Store.scan and by queries to cover ranges
where a PSF was not active.

Readers only: pages are copied out of their frames (or read from segment
files), so eviction under a scan is harmless.

Cancelling: a matcher may carry a `cancel` event (threading.Event). Once it
is set, the scan stops before its next page and, in Python, before its next
record, and its stream ends: whoever set it (an HTTP client that went away,
a server shutting down) no longer reads the answer. A slow expression
cannot hold a core for long past that: each record's evaluation is bounded
by its budget (psf/budget.py).
"""
from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

from .._native import check, ffi, lib
from ..errors import EvaluationBudgetExceeded
from .address import FIRST_ADDRESS
from .record import payload_of

_OUT_CAP = 4096


class _Cancelled(Exception):
    """A matcher saw its cancel event set; scan_range ends its stream."""


class NativeMatcher:
    """Records where a compiled program is truthy, or equals a canonical value."""

    def __init__(self, psfset, prog: int = 0, canon: bytes | None = None, *, cancel=None):
        self.cancel = cancel  # checked per page: C scans a page in well under a second
        self._set = psfset  # keeps the native program alive
        self.job = ffi.new("shoal_scan_job *")
        self._slots = ffi.new("shoal_slot[]", max(1, psfset.n_slots))
        self._scratch_bytes = 1 << 16
        self._scratch = ffi.new("char[]", self._scratch_bytes)
        self._out = ffi.new("uint64_t[]", _OUT_CAP)
        self._canon = ffi.new("char[]", canon) if canon else ffi.NULL
        j = self.job
        j.mode = lib.SHOAL_SCAN_TRUTHY if canon is None else lib.SHOAL_SCAN_EQUALS
        j.prog = prog
        j.canon = self._canon
        j.canon_len = len(canon) if canon else 0
        j.cap = _OUT_CAP
        j.out = self._out
        j.slots = self._slots
        j.scratch = self._scratch
        j.scratch_bytes = self._scratch_bytes

    def matches(self, buf, base: int, length: int, start: int, lo: int, hi: int) -> list[int]:
        if self._scratch_bytes < length + 64:  # canonical values never outgrow the page
            self._scratch_bytes = length + 64
            self._scratch = ffi.new("char[]", self._scratch_bytes)
            self.job.scratch = self._scratch
            self.job.scratch_bytes = self._scratch_bytes
        return _run(self.job, self._out, self._set.ptr, buf, base, length, start, lo, hi)


class BucketMatcher(NativeMatcher):
    """Records whose bucket under a bucketed program (psf/entry.py: bucket)
    lies in [kmin, kmax]: the candidates of a range, before the exact check."""

    def __init__(self, psfset, kmin: int, kmax: int, *, cancel=None):
        super().__init__(psfset, 0, None, cancel=cancel)
        self.job.mode = lib.SHOAL_SCAN_BUCKETS
        self.job.kmin = kmin
        self.job.kmax = kmax


class PythonMatcher:
    """Records where a Python predicate over the raw JSON text holds. A
    predicate may raise EvaluationBudgetExceeded; it is given the record's
    address and ends the scan."""

    def __init__(self, predicate: Callable[[bytes], bool], *, cancel=None):
        self.predicate = predicate
        self.cancel = cancel  # checked per record: a predicate may take up to its budget
        self._all = _AllRecords()

    def matches(self, buf, base: int, length: int, start: int, lo: int, hi: int) -> list[int]:
        mv = ffi.buffer(buf, length) if isinstance(buf, ffi.CData) else memoryview(buf)
        cancel = self.cancel
        out: list[int] = []
        for a in self._all.matches(buf, base, length, start, lo, hi):
            if cancel is not None and cancel.is_set():
                raise _Cancelled
            try:
                if self.predicate(payload_of(mv, a - base)):
                    out.append(a)
            except EvaluationBudgetExceeded as exc:
                raise EvaluationBudgetExceeded(f"{exc} at the record at address {a}",
                                               limit=exc.limit, address=a) from None
        return out


class _AllRecords:
    def __init__(self):
        self.job = ffi.new("shoal_scan_job *")
        self._out = ffi.new("uint64_t[]", _OUT_CAP)
        self.job.mode = lib.SHOAL_SCAN_ALL
        self.job.cap = _OUT_CAP
        self.job.out = self._out
        self.job.canon = ffi.NULL

    def matches(self, buf, base, length, start, lo, hi) -> list[int]:
        return _run(self.job, self._out, ffi.NULL, buf, base, length, start, lo, hi)


def _run(job, out_array, set_ptr, buf, base: int, length: int, start: int, lo: int, hi: int) -> list[int]:
    """One native scan of a page buffer, resumed until done."""
    job.buf = buf if isinstance(buf, ffi.CData) else ffi.from_buffer(buf)
    job.base = base
    job.len = length
    job.pos = start
    job.lo = lo
    job.hi = hi
    out: list[int] = []
    while True:
        rc = lib.shoal_scan(job, set_ptr)
        out.extend(ffi.unpack(out_array, job.n_out))
        if rc == lib.SHOAL_OUT_FULL:
            continue
        if rc < 0:
            check(rc, f"scan at address {job.err_address}")
        return out


def truthy(value) -> bool:
    """JMESPath truthiness: null, false, "", [] and {} are false; numbers are true."""
    if value is None or value is False:
        return False
    if isinstance(value, (str, list, dict)):
        return len(value) > 0
    return True


def scan_range(log, matcher, lo: int, hi: int, *, descending: bool,
               gate=contextlib.nullcontext()) -> Iterator[int]:
    """Addresses in [lo, hi) of records the matcher accepts, page by page.
    `gate` is entered around each page's read and native scan."""
    lo = max(lo, log.begin_address, FIRST_ADDRESS)
    hi = min(hi, log.tail_address)
    if lo >= hi:
        return
    bits = log.page_bits
    first, last = lo >> bits, (hi - 1) >> bits
    pages = range(last, first - 1, -1) if descending else range(first, last + 1)
    cancel = getattr(matcher, "cancel", None)
    for page in pages:
        if cancel is not None and cancel.is_set():
            return
        base = page << bits
        start = max(base, FIRST_ADDRESS, log.begin_address if page == log.begin_address >> bits else base)

        def visit(buf, valid, base=base, start=start):
            return matcher.matches(buf, base, valid, start, lo, hi) if valid else []

        try:
            with gate:
                found = log.visit_page(page, visit)
        except _Cancelled:
            return
        if descending:
            found.reverse()
        yield from found
