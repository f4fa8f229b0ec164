"""Ranges of a bucketed PSF's values: query_range and count_range, and the
time windows (since/until) every query takes on a store with a time field.

The candidates of [lo, hi) are the chains of the buckets floor(lo / w) ..
floor(hi / w) (psf/buckets.py) where the PSF was active, merged in address
order, and the records the C core finds in those buckets where it was not.
A record of a bucket strictly inside the range is in it; one of the end
buckets (or found by a scan) is read and its value compared exactly. A
count adds the inner buckets' counts without reading (the value tally over
the whole log, a chain count over a window) and reads only the end buckets.

How the buckets are listed: every one when there are at most MAX_WALKS;
else those the value tally holds (all the PSF has, when its tally is
complete); else the range's address span is scanned in C for records of its
buckets.
"""
from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import orjson

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
        streams: list[Iterator[int]] = []
        if ks is None:  # too many buckets to walk: the span scanned in C (buckets), then checked
            streams.append(self._checked(psf, x_lo, x_hi, self._scan(psf, kmin, kmax, lo_addr, hi_addr, descending,
                                                                      cancel)))
        else:
            for k in ks:
                stream = self._chain(psf, k, chain_lo, hi_addr, descending)
                inner = kmin < k < kmax
                streams.append(stream if inner else self._checked(psf, x_lo, x_hi, stream))
            for a, b in sorted(inactive, reverse=descending):
                streams.append(self._checked(psf, x_lo, x_hi, self._scan(psf, kmin, kmax, a, b, descending, cancel)))
        merged = streams[0] if len(streams) == 1 else _query.merge_sorted(streams, descending=descending)
        return _query._batched(merged)

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
        _READ at a time, each value compared exactly."""
        p = self.planner
        expr = psf.expression
        for batch in _query._batched(stream, _READ):
            with p.gate:
                raws = p.log.read_records(batch, payload_only=True)
            for a, raw in zip(batch, raws):
                if raw is None:
                    continue
                try:
                    x = B.value_number(psf, expr.search(orjson.loads(raw)))
                except Exception:  # noqa: BLE001 - no value, as at ingest
                    continue
                if x is not None and lo <= x < hi:
                    yield a

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
            if kmin < k < kmax:
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
