"""Counts and top values: how many records a condition matches, and which
values a PSF takes how often, answered without reading records wherever
the store allows.

  count, whole log   the value tally (store/tally.py): O(1), plus a scan of
                     the ranges where the PSF was not active
  count, a window    the chain's key pointers walked in C (no record read),
                     jumping between the tally's samples of the value: at
                     most ~2 x 256 key pointers whatever the window's size
  count_all/any      the address streams of query_all/query_any, counted
  group_count        the tally's values, largest first; a window, or a PSF
                     whose tally overflowed, tallies the log's key pointers
                     in C (no JSON parsed); ranges where the PSF was not
                     active are evaluated record by record
  keyed stores       live versions only (unless include_superseded): counts
                     walk chains and check liveness, group_count evaluates
                     each live record

Every answer is exact. The tally is used for a PSF only when it counts
exactly the PSF's chains: it began where the PSF's first range does (see
`_tally_usable`); otherwise the chain is walked.
"""
from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterable
from typing import Any

import orjson

from ..errors import InvalidArgument
from ..psf import PSF, EvaluationBudget, canonical, evaluate
from ..psf import buckets as B
from ..psf.values import decode
from ..store import query as _query
from ..store.scan import scan_range
from ..store.tally import Tally, tally_range
from .planner import Planner


class Counts:
    def __init__(self, planner: Planner, tally: Tally):
        self.planner = planner
        self.tally = tally
        self.windows: Any = None  # engine/windows.py's, set by the store: since/until

    # ---- counts ----
    def count(self, psf: str, value: Any = True, *, from_address: int | None = None,
              to_address: int | None = None, include_superseded: bool = False,
              cancel: threading.Event | None = None) -> int:
        p = self.planner
        if not isinstance(psf, str):
            raise InvalidArgument("psf must be a PSF name (a string)")
        p.gate.check_open()
        entry = p.registry.get(psf)  # an unknown name raises PSFNotFound
        canon = canonical(value)
        if (from_address is None and to_address is None and canon is not None and p.keys is None
                and len(entry.ranges) == 1 and entry.ranges[0][1] is None):
            # The common call: the whole log, a PSF active since its one range
            # began. From begin on the tally counts all of it when it began
            # at or before begin (else part of the log is to be scanned).
            begin = p.log.begin_address
            if entry.ranges[0][0] <= begin:
                n = self.tally.count(entry.id, canon, begin)
                if n is not None:
                    return n
        lo, hi, _ = p._range("newest", from_address, to_address, None)
        if canon is None or lo >= hi:
            return 0
        if p.keys is not None and not include_superseded:
            return self._count_addresses([(psf, value)], "all", lo, hi, False, cancel)
        log = p.log
        if lo <= log.begin_address and hi >= log.tail_address and self._tally_usable(entry):
            n = self.tally.get(entry.id, canon)
            if n is None and self._tally_complete(entry):
                n = 0  # a complete tally that lacks the value: no record has it
            if n is not None:
                return n + sum(self._scan_count(entry, canon, a, b, cancel)
                               for a, b in entry.inactive_ranges(lo, hi))
        # A window, or a value the tally cannot answer for: the chain counted
        # where the PSF was active (samples let it skip most of a window), the
        # rest scanned.
        # (From the PSF's first range on: key pointers below it may be an
        # earlier owner's of its id; psf/registry.py.)
        first = entry.ranges[0][0] if entry.ranges else hi
        n = _query.count_chain(log, p.index, self.tally, entry.id, canon, max(lo, first), hi, p.gate)
        return n + sum(self._scan_count(entry, canon, a, b, cancel) for a, b in entry.inactive_ranges(lo, hi))

    def count_all(self, conditions: Iterable[tuple[str, Any]], *, from_address: int | None = None,
                  to_address: int | None = None, include_superseded: bool = False,
                  cancel: threading.Event | None = None) -> int:
        return self._count_conditions(conditions, "all", from_address, to_address, include_superseded, cancel)

    def count_any(self, conditions: Iterable[tuple[str, Any]], *, from_address: int | None = None,
                  to_address: int | None = None, include_superseded: bool = False,
                  cancel: threading.Event | None = None) -> int:
        return self._count_conditions(conditions, "any", from_address, to_address, include_superseded, cancel)

    def _count_conditions(self, conditions, mode, from_address, to_address, include_superseded, cancel) -> int:
        conditions = list(conditions)
        for c in conditions:
            if not (isinstance(c, (tuple, list)) and len(c) == 2 and isinstance(c[0], str)):
                raise InvalidArgument("each condition is a (psf_name, value) pair")
        if not conditions:
            raise InvalidArgument("at least one condition is needed")
        distinct = list(dict.fromkeys((name, canonical(v)) for name, v in conditions))
        if len(distinct) == 1:  # one condition (maybe repeated): its count
            name, value = conditions[0]
            return self.count(name, value, from_address=from_address, to_address=to_address,
                              include_superseded=include_superseded, cancel=cancel)
        p = self.planner
        p.gate.check_open()
        lo, hi, _ = p._range("newest", from_address, to_address, None)
        return self._count_addresses(conditions, mode, lo, hi, include_superseded, cancel)

    def _count_addresses(self, conditions, mode: str, lo: int, hi: int, include_superseded: bool,
                         cancel) -> int:
        """The length of the address stream of a query (chains walked for
        addresses only, ranges where a PSF was not active scanned)."""
        addrs = self.planner.query_addresses(conditions, mode=mode, from_address=lo, to_address=hi,
                                             include_superseded=include_superseded, cancel=cancel)
        return sum(len(b) for b in _query._batched(addrs, 4096))

    def _scan_count(self, psf: PSF, canon: bytes, lo: int, hi: int, cancel) -> int:
        p = self.planner
        matcher = p._matcher_for(psf, canon, cancel)
        return sum(1 for _ in scan_range(p.log, matcher, lo, hi, descending=False, gate=p.gate))

    def _tally_usable(self, psf: PSF) -> bool:
        """Whether the tally holds exactly psf's key pointers in [begin,
        tail): it began where the PSF's first range does (both taken from
        begin on). It does not after a crash lost the log a PSF began in,
        nor for a PSF whose oldest range the registry forgot."""
        if not psf.ranges:
            return False
        st = self.tally.state(psf.id)
        begin = self.planner.log.begin_address
        return st.tallied and max(st.since, begin) == max(psf.ranges[0][0], begin)

    def _tally_complete(self, psf: PSF) -> bool:
        """Whether the tally holds every value psf has in [begin, tail)."""
        return not self.tally.state(psf.id).overflow

    # ---- top values ----
    def group_count(self, psf: str, *, limit: int | None = None, from_address: int | None = None,
                    to_address: int | None = None, include_superseded: bool = False,
                    cancel: threading.Event | None = None, since: Any = None,
                    until: Any = None) -> list[tuple[Any, int]]:
        if since is not None or until is not None:
            if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit < 0):
                raise InvalidArgument("limit must be a non-negative int")
            entry = self.planner.registry.get(psf)
            groups = _top(self.windows.group_counts(entry, since, until, from_address=from_address,
                                                    to_address=to_address, include_superseded=include_superseded,
                                                    cancel=cancel), limit)
        else:
            groups = self._group_count(psf, limit, from_address, to_address, include_superseded, cancel)
        entry = self.planner.registry.get(psf)
        if entry.bucket is None:
            return groups
        # a bucketed PSF's values are bucket numbers: shown as each bucket's smallest value
        return [(B.lower_bound(entry, k), n) for k, n in groups]

    def _group_count(self, psf: str, limit, from_address, to_address, include_superseded,
                     cancel) -> list[tuple[Any, int]]:
        p = self.planner
        if not isinstance(psf, str):
            raise InvalidArgument("psf must be a PSF name (a string)")
        if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit < 0):
            raise InvalidArgument("limit must be a non-negative int")
        p.gate.check_open()
        entry = p.registry.get(psf)
        if limit == 0:
            return []
        if (from_address is None and to_address is None and p.keys is None
                and len(entry.ranges) == 1 and entry.ranges[0][1] is None):
            begin = p.log.begin_address  # as in count: one native call when the tally knows it all
            if entry.ranges[0][0] <= begin:
                top = self.tally.top(entry.id, limit, begin)
                if top is not None:
                    return top
        lo, hi, _ = p._range("newest", from_address, to_address, None)
        if lo >= hi:
            return []
        if p.keys is not None and not include_superseded:
            return _top(self._evaluated(entry, lo, hi, False, cancel), limit)
        log = p.log
        inactive = entry.inactive_ranges(lo, hi)
        whole = lo <= log.begin_address and hi >= log.tail_address
        if whole and self._tally_usable(entry) and self._tally_complete(entry):
            if not inactive:
                return [(c[1:].decode() if c[:1] == b"s" else decode(c), n)
                        for c, n in self.tally.values(entry.id, limit)]
            counts = Counter(dict(self.tally.values(entry.id)))
        else:
            window = Tally.unbounded()
            for a, b in _active_parts(lo, hi, inactive):
                tally_range(log, window, a, b, psf_id=entry.id, gate=p.gate, cancel=cancel)
            counts = Counter(dict(window.values(entry.id)))
        for a, b in inactive:
            counts.update(self._evaluated(entry, a, b, True, cancel))
        return _top(counts, limit)

    def _evaluated(self, psf: PSF, lo: int, hi: int, include_superseded: bool, cancel) -> Counter:
        """Canonical value -> count of psf over the records of [lo, hi),
        each evaluated as at ingest (psf/slowpath.py: an error or a record
        over its budget has no value)."""
        p = self.planner
        budget = EvaluationBudget(p.config.expression_limits)
        counts: Counter = Counter()
        for batch in p.scan_batches("`true`", from_address=lo, to_address=hi, order="oldest",
                                    include_superseded=include_superseded, cancel=cancel):
            for record in batch:
                try:
                    v = evaluate(psf, orjson.loads(record.raw), budget)
                except Exception:  # noqa: BLE001
                    continue
                c = canonical(v)
                if c is not None:
                    counts[c] += 1
        return counts


def _active_parts(lo: int, hi: int, inactive: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """[lo, hi) without the inactive ranges (sorted, disjoint, inside it)."""
    out, cur = [], lo
    for a, b in inactive:
        if a > cur:
            out.append((cur, a))
        cur = max(cur, b)
    if cur < hi:
        out.append((cur, hi))
    return out


def _top(counts: Counter, limit: int | None) -> list[tuple[Any, int]]:
    """(value, count) largest first, ties by the canonical bytes (as the tally orders them)."""
    items = sorted(((c, n) for c, n in counts.items() if n > 0), key=lambda cn: (-cn[1], cn[0]))
    if limit is not None:
        items = items[:limit]
    return [(decode(c), n) for c, n in items]
