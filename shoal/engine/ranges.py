"""Ranges of a bucketed PSF's values: query_range and count_range, and the
time windows (since/until) every query takes on a store with a time field.

The candidates of [lo, hi) are the chains of the buckets floor(lo / w) ..
floor(hi / w) (psf/buckets.py) where the PSF was active, merged in address
order, and the records the C core finds in those buckets where it was not.
A record of a bucket wholly inside the range is in it (every bucket but the
end ones, and an end one whose edge the range's meets); one of the other end
buckets (or found by a scan) is read and its value compared, read in C as
ingest read it (an IEEE double; seconds for a time). A
count adds the inner buckets' counts without reading (the value tally over
the whole log, a chain count over a window) and reads only the end buckets.

How the buckets are listed: every one when there are at most MAX_WALKS;
else those the value tally holds (all the PSF has, when its tally is
complete); else the range's address span is scanned in C for records of its
buckets.
"""
from __future__ import annotations

import threading
from array import array
from collections.abc import Iterator
from typing import Any

from ..errors import InvalidArgument
from ..psf import PSF, canonical, value_hash
from ..psf import buckets as B
from ..psf.values import decode
from ..store import query as _query
from ..store.scan import BucketMatcher, scan_range
from ..store.tally import Tally
from .planner import Planner

MAX_WALKS = 4096
_READ = 1024


class Ranges:
    def __init__(self, planner: Planner, tally: Tally):
        self.planner = planner
        self.tally = tally

    def entry(self, psf: str) -> PSF:
        p = self.planner.registry.get(psf)
        if p.bucket is None:
            raise InvalidArgument(f"PSF {psf!r} has no buckets: a range needs one registered with bucket= "
                                  f"(e.g. register_psf({psf!r}, {p.definition!r}, bucket=100))")
        return p

    # ---- candidates ----
    def address_batches(self, psf: PSF, lo: Any, hi: Any, lo_addr: int, hi_addr: int, *, descending: bool,
                        cancel: threading.Event | None = None) -> Iterator[list[int]]:
        """Batches of the addresses in [lo_addr, hi_addr) of the records
        whose value lies in [lo, hi), in address order, each checked."""
        x_lo, x_hi = B.bound(psf, lo, "lo"), B.bound(psf, hi, "hi")
        span = B.span(psf, x_lo, x_hi)
        if span is None or lo_addr >= hi_addr:
            return iter(())
        kmin, kmax = span
        inactive = psf.inactive_ranges(lo_addr, hi_addr)
        first = psf.ranges[0][0] if psf.ranges else hi_addr
        chain_lo = max(lo_addr, first)
        ks = self._buckets(psf, kmin, kmax)
        if ks is None:  # too many buckets to walk: the span scanned in C (buckets), then checked
            return _query._batched(self._checked(psf, x_lo, x_hi, self._scan(psf, kmin, kmax, lo_addr, hi_addr,
                                                                             descending, cancel)))
        # Each bucket's chain walked in C, the end buckets' records checked,
        # the addresses gathered and sorted once (merging the buckets'
        # streams one address at a time in Python costs more than the walks).
        p = self.planner
        found = array("Q")
        for k in ks:
            if chain_lo >= hi_addr:
                break
            canon = canonical(k)
            walk = _query.walk_chain_batches(p.log, p.index, psf.id, canon, value_hash(psf.id, canon), chain_lo,
                                             hi_addr, p.gate)
            if kmin < k < kmax or B.whole(psf, k, x_lo, x_hi):
                for batch in walk:
                    found.extend(batch)
            else:
                found.extend(self._checked(psf, x_lo, x_hi, (a for b in walk for a in b)))
        for a, b in inactive:
            found.extend(self._checked(psf, x_lo, x_hi, self._scan(psf, kmin, kmax, a, b, False, cancel)))
        return _query._batched(iter(sorted(found, reverse=descending)))

    def _buckets(self, psf: PSF, kmin: int, kmax: int) -> list[int] | None:
        if kmax - kmin + 1 <= MAX_WALKS:
            return list(range(kmin, kmax + 1))
        st = self.tally.state(psf.id)
        if st.tallied and not st.overflow:
            held = [_bucket_number(c) for c, _ in self.tally.values(psf.id)]
            inside = sorted(k for k in held if k is not None and kmin <= k <= kmax)
            if len(inside) <= MAX_WALKS:
                return inside
        return None

    def _chain(self, psf: PSF, k: int, lo: int, hi: int, descending: bool) -> Iterator[int]:
        if lo >= hi:
            return iter(())
        p = self.planner
        canon = canonical(k)
        h = value_hash(psf.id, canon)
        return _query.psf_addresses(p.log, p.index, psf, canon, h, [], lambda: p._matcher_for(psf, canon),
                                    lo, hi, descending=descending, gate=p.gate)

    def _scan(self, psf: PSF, kmin: int, kmax: int, lo: int, hi: int, descending: bool, cancel) -> Iterator[int]:
        p = self.planner
        matcher = BucketMatcher(p.native_set(psf), kmin, kmax, cancel=cancel)
        return scan_range(p.log, matcher, lo, hi, descending=descending, gate=p.gate)

    def _checked(self, psf: PSF, lo, hi, stream: Iterator[int]) -> Iterator[int]:
        """The addresses of `stream` whose record's value is in [lo, hi): read
        _READ at a time, each value read in C as ingest read it and compared
        with the ends as given (Python compares a double with an int exactly)."""
        p = self.planner
        nset = p.native_set(psf)
        for addrs in _query._batched(stream, _READ):
            with p.gate:
                batches = p.log.read_batches(addrs)
            for batch in batches:
                xs = B.numbers(nset, batch)
                yield from (a for a, x in zip(batch.addresses, xs) if x is not None and lo <= x < hi)

    # ---- records ----
    def query(self, psf: str, lo: Any, hi: Any, *, limit: int | None, order: str, from_address: int | None,
              to_address: int | None, include_superseded: bool, fields, cancel, batches: bool) -> Iterator:
        p = self.planner
        p.gate.check_open()
        entry = self.entry(psf)
        lo_addr, hi_addr, descending = p._range(order, from_address, to_address, limit)
        projection = p.projection(fields)
        addrs = self.address_batches(entry, lo, hi, lo_addr, hi_addr, descending=descending, cancel=cancel)
        if p.keys is not None and not include_superseded:
            addrs = p._live_batches(addrs)
        out = p._read_batches(addrs, limit)
        if projection is not None:
            out = map(projection.batch, out)
        return out if batches else p._records(out)

    # ---- counts ----
    def count(self, psf: PSF, lo: Any, hi: Any, lo_addr: int, hi_addr: int, *, include_superseded: bool,
              cancel) -> int:
        """How many records of [lo_addr, hi_addr) have a value in [lo, hi):
        the inner buckets counted without reading a record, the end ones read."""
        p = self.planner
        x_lo, x_hi = B.bound(psf, lo, "lo"), B.bound(psf, hi, "hi")
        span = B.span(psf, x_lo, x_hi)
        if span is None or lo_addr >= hi_addr:
            return 0
        if p.keys is not None and not include_superseded:
            return sum(len(b) for b in p._live_batches(self.address_batches(psf, lo, hi, lo_addr, hi_addr,
                                                                             descending=True, cancel=cancel)))
        kmin, kmax = span
        ks = self._buckets(psf, kmin, kmax)
        inactive = psf.inactive_ranges(lo_addr, hi_addr)
        if ks is None:
            return sum(len(b) for b in self.address_batches(psf, lo, hi, lo_addr, hi_addr, descending=True,
                                                            cancel=cancel))
        log = p.log
        whole = lo_addr <= log.begin_address and hi_addr >= log.tail_address
        first = psf.ranges[0][0] if psf.ranges else hi_addr
        chain_lo = max(lo_addr, first)
        n = 0
        for k in ks:
            if kmin < k < kmax or B.whole(psf, k, x_lo, x_hi):
                canon = canonical(k)
                got = self.tally.count(psf.id, canon, log.begin_address) if whole and first <= log.begin_address \
                    else None
                n += got if got is not None else _query.count_chain(log, p.index, self.tally, psf.id, canon,
                                                                    chain_lo, hi_addr, p.gate)
            else:
                n += sum(1 for _ in self._checked(psf, x_lo, x_hi, self._chain(psf, k, chain_lo, hi_addr, True)))
        for a, b in inactive:
            n += sum(1 for _ in self._checked(psf, x_lo, x_hi, self._scan(psf, kmin, kmax, a, b, True, cancel)))
        return n


def _bucket_number(canon: bytes) -> int | None:
    """The bucket number of a bucketed PSF's canonical value."""
    v = decode(canon)
    return v if isinstance(v, int) and not isinstance(v, bool) else None
