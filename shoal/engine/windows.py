"""Time windows: since= / until= on every query, count, group count and scan
of a store opened with a time field (`shoal.open(path, time_field=
"created_at")`).

The time field is a bucketed time PSF the store keeps, named TIME_PSF
(`@time`; one bucket per `time_bucket_seconds`, default 300), so the records
of a window are the chains of its buckets (engine/ranges.py), wherever they
lie in the log: records that arrive out of order are found like the others.

  queries, counts    newest first, every PSF active over the range: each
                     bucket's chain is walked in C, keeping the records
                     that also carry the query's key pointers (a
                     conjunction with the bucket) by their addresses only;
                     an end bucket that the window does not hold whole is
                     fetched and its records' times checked. The addresses
                     are sorted and the records read once, in order (a
                     count reads none from whole buckets). Otherwise the
                     window's addresses are intersected with the query's
                     (address streams).
  scans, top values  the window's records, read and evaluated

A window thus reads the pages that hold its records, not the log between.
"""
from __future__ import annotations

from array import array
from collections import Counter
from collections.abc import Iterator
from typing import Any

import orjson

from ..errors import EvaluationBudgetExceeded, InvalidArgument, PSFNotFound
from ..psf import PSF, EvaluationBudget, canonical, evaluate, parse_definition, value_hash
from ..psf import buckets as B
from ..results import RecordBatch
from ..store import fetch as _fetch
from ..store import query as _query
from ..store.scan import truthy
from .planner import Planner
from .ranges import Ranges

TIME_PSF = "@time"
_EARLIEST, _LATEST = -2.0 ** 52, 2.0 ** 52  # seconds: an open end of a window


class Windows:
    def __init__(self, planner: Planner, ranges: Ranges):
        self.planner = planner
        self.ranges = ranges

    def time_psf(self) -> PSF:
        try:
            return self.planner.registry.get(TIME_PSF)
        except PSFNotFound:
            raise InvalidArgument("since/until need a store with a time field: open it with "
                                  "time_field=<JMESPath of each record's time> (shoal serve --time-field)") from None

    def bounds(self, psf: PSF, since: Any, until: Any) -> tuple[float, float]:
        lo = _EARLIEST if since is None else B.bound(psf, since, "since")
        hi = _LATEST if until is None else B.bound(psf, until, "until")
        return lo, hi

    # ---- addresses ----
    def addresses(self, since, until, lo: int, hi: int, descending: bool, cancel) -> Iterator[list[int]]:
        """Batches of the addresses in [lo, hi) of the records in the window."""
        tp = self.time_psf()
        s, u = self.bounds(tp, since, until)
        return self.ranges.address_batches(tp, s, u, lo, hi, descending=descending, cancel=cancel)

    def query_addresses(self, conditions: list, mode: str, since, until, lo: int, hi: int, descending: bool,
                        include_superseded: bool, cancel) -> Iterator[list[int]]:
        """The addresses of a query's records in the window (address streams)."""
        p = self.planner
        window = (a for b in self.addresses(since, until, lo, hi, descending, cancel) for a in b)
        if conditions:
            matched = p.query_addresses(conditions, mode=mode, order="newest" if descending else "oldest",
                                        from_address=lo, to_address=hi, include_superseded=True, cancel=cancel)
            window = _query.intersect_sorted([matched, window], descending=descending)
        out = _query._batched(window)
        if p.keys is not None and not include_superseded:
            out = p._live_batches(out)
        return out

    # ---- queries ----
    def query(self, conditions: list, mode: str, since, until, *, limit: int | None, order: str,
              from_address: int | None, to_address: int | None, include_superseded: bool, fields, cancel,
              batches: bool) -> Iterator:
        p = self.planner
        p.gate.check_open()
        lo, hi, descending = p._range(order, from_address, to_address, limit)
        projection = p.projection(fields)
        fused = None
        if mode != "any" and conditions and (p.keys is None or include_superseded):
            fused = self._fused(conditions, since, until, lo, hi, limit, descending)
        if fused is not None:  # the records read again, in order, by one native call per batch
            out: Iterator[RecordBatch] = p._read_batches(_query._batched(iter(fused), 1024), None)
        else:
            out = p._read_batches(self.query_addresses(conditions, mode, since, until, lo, hi, descending,
                                                       include_superseded, cancel), limit)
        if projection is not None:
            out = map(projection.batch, out)
        return out if batches else p._records(out)

    def _fused(self, conditions: list, since, until, lo: int, hi: int, limit: int | None,
               descending: bool = True) -> list[int] | None:
        """The addresses of the window's records meeting every condition, in
        address order: each bucket's chain walked in C keeping the records
        that also carry the conditions' key pointers (addresses only for a
        bucket the window holds whole; an end bucket's records fetched and
        their times checked), all gathered and sorted once. None when a
        PSF was not active over [lo, hi) (the general path scans there)."""
        p = self.planner
        tp = self.time_psf()
        psfs = [(p.registry.get(name), canonical(value)) for name, value in conditions]
        if any(c is None for _, c in psfs):
            return []
        if any(x.inactive_ranges(lo, hi) for x, _ in psfs + [(tp, None)]):
            return None
        s, u = self.bounds(tp, since, until)
        span = B.span(tp, s, u)
        if span is None or lo >= hi:
            return []
        kmin, kmax = span
        ks = self.ranges._buckets(tp, kmin, kmax)
        if ks is None:
            return None
        also = list(dict.fromkeys((x.id, c) for x, c in psfs))
        found = array("Q")
        for k in ks:
            canon = canonical(k)
            if kmin < k < kmax or B.whole(tp, k, s, u):  # addresses only: the records are read once, sorted
                for addrs in _query.walk_chain_batches(p.log, p.index, tp.id, canon, value_hash(tp.id, canon),
                                                       lo, hi, p.gate, also):
                    found.extend(addrs)
                continue
            for batch in _fetch.fetch_chain_batches(p.log, p.index, tp.id, canon, lo, hi, p.gate, None, also):
                xs = B.numbers(p.native_set(tp), batch)
                found.extend(a for a, x in zip(batch.addresses, xs) if x is not None and s <= x < u)
        out = sorted(found, reverse=descending)
        return out if limit is None else out[:limit]

    # ---- counts ----
    def count(self, conditions: list, mode: str, since, until, *, from_address, to_address,
              include_superseded: bool, cancel) -> int:
        p = self.planner
        p.gate.check_open()
        lo, hi, _ = p._range("newest", from_address, to_address, None)
        if mode != "any" and (p.keys is None or include_superseded):
            fused = self._fused(conditions, since, until, lo, hi, None)
            if fused is not None:
                return len(fused)
        return sum(len(b) for b in self.query_addresses(conditions, mode, since, until, lo, hi, True,
                                                        include_superseded, cancel))

    # ---- scans and top values: the window's records, evaluated ----
    def scan(self, expression: str, since, until, *, limit, order, from_address, to_address,
             include_superseded: bool, fields, cancel, batches: bool) -> Iterator:
        p = self.planner
        p.gate.check_open()
        expr = parse_definition(expression, p.config.expression_limits)
        lo, hi, descending = p._range(order, from_address, to_address, limit)
        projection = p.projection(fields)
        budget = EvaluationBudget(p.config.expression_limits)

        def matching() -> Iterator[list[int]]:
            for batch in p._read_batches(self.query_addresses([], "all", since, until, lo, hi, descending,
                                                              include_superseded, cancel), None):
                keep = []
                for r in batch:
                    try:
                        ok = truthy(budget.search(expr, orjson.loads(r.raw)))
                    except EvaluationBudgetExceeded:
                        raise
                    except Exception:  # noqa: BLE001 - as a scan: an error is no match
                        ok = False
                    if ok:
                        keep.append(r.address)
                if keep:
                    yield keep

        out = p._read_batches(matching(), limit)
        if projection is not None:
            out = map(projection.batch, out)
        return out if batches else p._records(out)

    def group_counts(self, psf: PSF, since, until, *, from_address, to_address, include_superseded: bool,
                     cancel) -> Counter:
        """Canonical value (a bucket number for a bucketed PSF) -> count of
        psf over the window's records, each evaluated as at ingest."""
        p = self.planner
        p.gate.check_open()
        lo, hi, _ = p._range("newest", from_address, to_address, None)
        budget = EvaluationBudget(p.config.expression_limits)
        counts: Counter = Counter()
        for batch in p._read_batches(self.query_addresses([], "all", since, until, lo, hi, True,
                                                          include_superseded, cancel), None):
            for r in batch:
                try:
                    v = evaluate(psf, orjson.loads(r.raw), budget)
                except Exception:  # noqa: BLE001
                    continue
                if psf.bucket is not None:
                    x = B.value_number(psf, v)
                    k = B.bucket_of(x, psf.bucket) if x is not None else None
                    c = canonical(k) if k is not None else None
                else:
                    c = canonical(v)
                if c is not None:
                    counts[c] += 1
        return counts
