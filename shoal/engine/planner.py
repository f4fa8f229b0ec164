"""The query planner: how each read of a store is answered.

A condition (psf, value) is answered by the PSF's hash chain where the PSF
was active and by scanning the log where it was not, so every answer is
complete (FishStore's rule). The planner picks, per call:
  - newest-first answers whose every PSF was active over the range: the
    fused fetch (store/query.py: one native call walks a chain and reads
    its records per batch; with several conditions, the rarest chain is
    walked and the others' key pointers checked on each record);
  - otherwise address streams (chains and scans, merged or intersected in
    address order) read in batches;
  - keyed stores: only each key's live version, unless include_superseded.

Readers take no lock: each native call runs inside the reader gate, and the
registry's PSFs and the compiled sets are snapshots replaced, never mutated.
The Store facade (engine/store.py) documents each call; this module is how.
"""
from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import orjson

from ..config import StoreConfig
from ..errors import EvaluationBudgetExceeded, InvalidArgument, PSFError
from ..psf import PSF, EvaluationBudget, NativePSFSet, Registry, canonical, evaluate, parse_definition, value_hash
from ..results import Record, RecordBatch
from ..store import fetch as _fetch
from ..store import query as _query
from ..store.address import MAX_ADDRESS
from ..store.gate import Gate
from ..store.hlog import HybridLog
from ..store.index import HashIndex
from ..store.keys import KeyIndex, key_canon
from ..store.projection import Projection
from ..store.scan import NativeMatcher, PythonMatcher, scan_range, truthy

_READ_BATCH = 1024
ORDERS = ("newest", "oldest")


class Planner:
    def __init__(self, config: StoreConfig, log: HybridLog, index: HashIndex, registry: Registry,
                 keys: KeyIndex | None, gate: Gate, tally=None):
        self.config = config
        self.log = log
        self.index = index
        self.registry = registry
        self.keys = keys
        self.gate = gate
        self.tally = tally  # the store's value tally (its samples let whole chain walks run in lanes)
        # Keyed by (psf_id, expression, bucket, time): a forgotten PSF's id may serve a later one.
        self._scan_sets: dict[tuple, NativePSFSet] = {}
        self._projections: dict[Any, Projection] = {}

    def get(self, address: int) -> Record | None:
        if not isinstance(address, int) or isinstance(address, bool):
            raise InvalidArgument("address must be an int")
        if address < 0:
            raise InvalidArgument("address must be a non-negative int")
        if address > MAX_ADDRESS:  # past any log (e.g. >= 2**64, which C cannot even take): no record
            return None
        with self.gate:  # a caller's address: it may point anywhere in a page
            raw = self.log.read_records([address], payload_only=True, verify_start=True)[0]
        return None if raw is None else Record(address, raw)

    def query(self, psf: str, value: Any = True, *, limit: int | None = None, order: str = "newest",
              from_address: int | None = None, to_address: int | None = None,
              include_superseded: bool = False, fields: Sequence[str] | None = None) -> Iterator[Record]:
        if fields is not None:
            return self._records(self.query_batches([(psf, value)], limit=limit, order=order,
                                                    from_address=from_address, to_address=to_address,
                                                    include_superseded=include_superseded, fields=fields))
        if (limit is None and order == "newest" and from_address is None and to_address is None
                and (self.keys is None or include_superseded) and type(psf) is str):
            # The common call (a point query) without the general path's argument checks.
            self.gate.check_open()
            log = self.log
            lo, hi = log.begin_address, log.tail_address
            fused = self._fetch(psf, value, lo, hi, None)
            if fused is not None:
                return fused
        return self._run([(psf, value)], "one", limit, order, from_address, to_address, include_superseded)

    def query_all(self, conditions: Iterable[tuple[str, Any]], *, limit: int | None = None,
                  order: str = "newest", from_address: int | None = None,
                  to_address: int | None = None, include_superseded: bool = False,
                  fields: Sequence[str] | None = None) -> Iterator[Record]:
        if fields is not None:
            return self._records(self.query_batches(conditions, mode="all", limit=limit, order=order,
                                                    from_address=from_address, to_address=to_address,
                                                    include_superseded=include_superseded, fields=fields))
        return self._run(list(conditions), "all", limit, order, from_address, to_address, include_superseded)

    def query_any(self, conditions: Iterable[tuple[str, Any]], *, limit: int | None = None,
                  order: str = "newest", from_address: int | None = None,
                  to_address: int | None = None, include_superseded: bool = False,
                  fields: Sequence[str] | None = None) -> Iterator[Record]:
        if fields is not None:
            return self._records(self.query_batches(conditions, mode="any", limit=limit, order=order,
                                                    from_address=from_address, to_address=to_address,
                                                    include_superseded=include_superseded, fields=fields))
        return self._run(list(conditions), "any", limit, order, from_address, to_address, include_superseded)

    def query_addresses(self, conditions: Iterable[tuple[str, Any]], *, mode: str = "all",
                        order: str = "newest", from_address: int | None = None,
                        to_address: int | None = None, include_superseded: bool = False,
                        cancel: threading.Event | None = None) -> Iterator[int]:
        self.gate.check_open()
        lo, hi, descending = self._range(order, from_address, to_address, None)
        streams = [self._one(name, value, lo, hi, descending, cancel=cancel) for name, value in conditions]
        if not streams:
            raise InvalidArgument("at least one condition is needed")
        if mode == "any":
            addrs = _query.merge_sorted(streams, descending=descending)
        elif mode in ("all", "one"):
            addrs = streams[0] if len(streams) == 1 else _query.intersect_sorted(streams, descending=descending)
        else:
            raise InvalidArgument(f"unknown mode {mode!r}")
        if self.keys is None or include_superseded:
            return addrs
        return (a for batch in self._live_batches(_query._batched(addrs)) for a in batch)

    def query_batches(self, conditions: Iterable[tuple[str, Any]], *, mode: str = "all",
                      limit: int | None = None, order: str = "newest", from_address: int | None = None,
                      to_address: int | None = None, include_superseded: bool = False,
                      cancel: threading.Event | None = None,
                      fields: Sequence[str] | None = None) -> Iterator[RecordBatch]:
        conditions = list(conditions)
        if mode not in ("all", "any"):
            raise InvalidArgument(f"unknown mode {mode!r}")
        if not conditions:
            raise InvalidArgument("at least one condition is needed")
        projection = self.projection(fields)  # checked before any answer
        out = self._run(conditions, mode if len(conditions) > 1 else "one", limit, order, from_address,
                        to_address, include_superseded, batches=True, cancel=cancel)
        return out if projection is None else map(projection.batch, out)

    def projection(self, fields: Sequence[str] | None) -> Projection | None:
        """The Projection of `fields` (None: none), built once per list of fields."""
        if fields is None:
            return None
        key = tuple(fields) if isinstance(fields, (list, tuple)) else fields
        try:
            return self._projections[key]
        except (KeyError, TypeError):
            pass
        p = Projection(fields, self.config.expression_limits)
        if len(self._projections) >= 64:  # a client's ad hoc field lists come and go
            self._projections.clear()
        self._projections[key] = p
        return p

    @staticmethod
    def _records(batches: Iterator[RecordBatch]) -> Iterator[Record]:
        for batch in batches:
            yield from batch

    def _run(self, conditions, mode, limit, order, from_address, to_address,
             include_superseded, *, batches: bool = False, cancel: threading.Event | None = None) -> Iterator:
        lo, hi, descending = self._range(order, from_address, to_address, limit)
        for c in conditions:
            if not (isinstance(c, (tuple, list)) and len(c) == 2 and isinstance(c[0], str)):
                raise InvalidArgument("each condition is a (psf_name, value) pair")
        if len(conditions) == 1:  # the chain's own batches, no merging
            self.gate.check_open()
            (name, value), = conditions
            if descending and (self.keys is None or include_superseded):
                fused = self._fetch(name, value, lo, hi, limit, batches)
                if fused is not None:
                    return fused
            addrs = self._one(name, value, lo, hi, descending, batches=True, cancel=cancel)
        else:
            if mode == "all" and descending and (self.keys is None or include_superseded):
                self.gate.check_open()
                fused = self._fetch_all(conditions, lo, hi, limit, batches)
                if fused is not None:
                    return fused
            addrs = _query._batched(self.query_addresses(conditions, mode=mode, order=order,
                                                         from_address=from_address,
                                                         to_address=to_address, include_superseded=True,
                                                         cancel=cancel))
        if self.keys is not None and not include_superseded:
            addrs = self._live_batches(addrs)
        return self._read_batches(addrs, limit) if batches else self._materialize(addrs, limit)

    def _fetch(self, name: str, value: Any, lo: int, hi: int, limit: int | None,
               batches: bool = False) -> Iterator | None:
        """Newest-first records of one condition answered by its chain alone,
        walked and read by one native call per batch; None when part of the
        range must be scanned (the PSF was not active there)."""
        psf = self.registry.get(name)
        canon = canonical(value)
        if canon is None or lo >= hi or limit == 0:
            return iter(())
        if psf.inactive_ranges(lo, hi):
            return None
        fetch = _fetch.fetch_chain_batches if batches else _fetch.fetch_chain
        return fetch(self.log, self.index, psf.id, canon, lo, hi, self.gate, limit, tally=self.tally)

    def _fetch_all(self, conditions, lo: int, hi: int, limit: int | None,
                   batches: bool) -> Iterator | None:
        """Newest-first records meeting every condition: the chain of the
        condition that looks rarest is walked and read by native calls, which
        keep the records that have the other conditions' key pointers too.
        None when a PSF was not active over the whole range (its records
        there have no key pointers to check: the general path scans)."""
        if not conditions:
            return None  # the general path says what is wrong
        # Every name is looked up (an unknown PSF raises) before any answer.
        psfs = [(self.registry.get(name), canonical(value)) for name, value in conditions]
        if lo >= hi or limit == 0 or any(canon is None for _, canon in psfs):
            return iter(())
        if any(psf.inactive_ranges(lo, hi) for psf, _ in psfs):
            return None
        conds = list(dict.fromkeys((psf.id, canon) for psf, canon in psfs))  # a repeated condition is checked once
        if len(conds) > 1:
            conds = _fetch.rarest_first(self.log, self.index, conds, lo, hi, self.gate)
        (psf_id, canon), also = conds[0], conds[1:]
        fetch = _fetch.fetch_chain_batches if batches else _fetch.fetch_chain
        return fetch(self.log, self.index, psf_id, canon, lo, hi, self.gate, limit, also)

    def live_mask(self, addresses: list[int]) -> list[bool]:
        """Keyed stores: for each address, is the record there its key's live version?"""
        with self.gate:
            return self.require_keys().live_mask(addresses)

    def _live_batches(self, batches: Iterator[list[int]]) -> Iterator[list[int]]:
        """Keyed stores: keep only the live versions (one native call per batch)."""
        keys = self.keys
        for batch in batches:
            with self.gate:
                live = keys.filter_live(batch)
            if live:
                yield live

    def _range(self, order, from_address, to_address, limit) -> tuple[int, int, bool]:
        if order not in ORDERS:
            raise InvalidArgument(f"order must be 'newest' or 'oldest', not {order!r}")
        if limit is not None and (not isinstance(limit, int) or limit < 0):
            raise InvalidArgument("limit must be a non-negative int")
        for name, v in (("from_address", from_address), ("to_address", to_address)):
            if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < 0):
                raise InvalidArgument(f"{name} must be a non-negative int")
        lo = max(self.log.begin_address, from_address or 0)
        hi = self.log.tail_address if to_address is None else min(to_address, self.log.tail_address)
        return lo, hi, order == "newest"

    def _one(self, name: str, value: Any, lo: int, hi: int, descending: bool, *,
             batches: bool = False, cancel: threading.Event | None = None) -> Iterator:
        """Addresses (or lists of them, with batches=True) of the complete
        answer for one condition."""
        psf = self.registry.get(name)
        canon = canonical(value)
        if canon is None or lo >= hi:
            return iter(())
        h = value_hash(psf.id, canon)
        inactive = psf.inactive_ranges(lo, hi)
        if inactive and psf.needs_callable:
            raise PSFError(f"PSF {name!r} is a callable that must be registered again after reopening "
                           f"before ranges it did not index can be searched")

        def factory():
            return self._matcher_for(psf, canon, cancel)

        if batches:
            return _query.psf_address_batches(self.log, self.index, psf, canon, h, inactive, factory, lo, hi,
                                              descending=descending, gate=self.gate, tally=self.tally)
        return _query.psf_addresses(self.log, self.index, psf, canon, h, inactive, factory, lo, hi,
                                    descending=descending, gate=self.gate, tally=self.tally)

    def native_set(self, psf: PSF) -> NativePSFSet:
        """A native PSF's program alone (its bucketing too), for scans; built once."""
        key = (psf.id, psf.definition, psf.bucket, psf.time)
        nset = self._scan_sets.get(key)
        if nset is None:
            if len(self._scan_sets) >= 256:  # PSFs come and go: build again what is asked again
                self._scan_sets.clear()
            xf = (psf.transform, psf.bucket) if psf.bucket is not None else None
            nset = self._scan_sets[key] = NativePSFSet.build_single(psf.expression, xf)
        return nset

    def _matcher_for(self, psf: PSF, canon: bytes | None, cancel: threading.Event | None = None):
        if psf.native:
            return NativeMatcher(self.native_set(psf), 0, canon, cancel=cancel)

        budget = EvaluationBudget(self.config.expression_limits)

        def predicate(text: bytes) -> bool:
            # As at ingest (psf/slowpath.py): an error or a record over the
            # budget means no value, so no match.
            try:
                v = evaluate(psf, orjson.loads(text), budget)
            except Exception:  # noqa: BLE001
                return False
            c = canonical(v)
            return c is not None and (c == canon if canon is not None else True)

        return PythonMatcher(predicate, cancel=cancel)

    def _materialize(self, batches: Iterator[list[int]], limit: int | None) -> Iterator[Record]:
        """Records for batches of addresses, read _READ_BATCH at a time."""
        log = self.log
        gate = self.gate
        left = limit
        for batch in batches:  # address streams gate their own native calls
            if left is not None:
                if left <= 0:
                    return
                batch = batch[:left]
                left -= len(batch)
            for k in range(0, len(batch), _READ_BATCH):
                part = batch[k:k + _READ_BATCH]
                with gate:
                    recs = log.read_record_objects(part)
                yield from recs
            if left is not None and left <= 0:
                return  # before asking the stream for more

    def _read_batches(self, batches: Iterator[list[int]], limit: int | None) -> Iterator[RecordBatch]:
        """RecordBatches for batches of addresses (as _materialize)."""
        log = self.log
        gate = self.gate
        left = limit
        for batch in batches:
            if left is not None:
                if left <= 0:
                    return
                batch = batch[:left]
                left -= len(batch)
            with gate:
                out = log.read_batches(batch)
            yield from out
            if left is not None and left <= 0:
                return

    def scan(self, expression: str, *, limit: int | None = None, order: str = "newest",
             from_address: int | None = None, to_address: int | None = None,
             include_superseded: bool = False, cancel: threading.Event | None = None,
             fields: Sequence[str] | None = None) -> Iterator[Record]:
        if fields is not None:
            return self._records(self.scan_batches(expression, limit=limit, order=order, from_address=from_address,
                                                   to_address=to_address, include_superseded=include_superseded,
                                                   cancel=cancel, fields=fields))
        lo, hi, descending = self._range(order, from_address, to_address, limit)
        return self._materialize(self._scan_addresses(expression, lo, hi, descending, include_superseded,
                                                      cancel), limit)

    def scan_batches(self, expression: str, *, limit: int | None = None, order: str = "newest",
                     from_address: int | None = None, to_address: int | None = None,
                     include_superseded: bool = False, cancel: threading.Event | None = None,
                     fields: Sequence[str] | None = None) -> Iterator[RecordBatch]:
        lo, hi, descending = self._range(order, from_address, to_address, limit)
        projection = self.projection(fields)
        out = self._read_batches(self._scan_addresses(expression, lo, hi, descending, include_superseded,
                                                      cancel), limit)
        return out if projection is None else map(projection.batch, out)

    def _scan_addresses(self, expression: str, lo: int, hi: int, descending: bool,
                        include_superseded: bool, cancel: threading.Event | None) -> Iterator[list[int]]:
        """Batches of the addresses of records for which `expression` is truthy."""
        expr = parse_definition(expression, self.config.expression_limits)
        if expr.native:
            matcher: Any = NativeMatcher(NativePSFSet.build_single(expr), 0, None, cancel=cancel)
        else:
            budget = EvaluationBudget(self.config.expression_limits)

            def predicate(text: bytes) -> bool:
                # As for PSFs (psf/slowpath.py): an evaluation error on one
                # record, e.g. length(null), means "no match", not a failed
                # scan. Going over the budget ends the scan (PythonMatcher adds
                # the address): an answer silently missing records would look
                # complete.
                try:
                    return truthy(budget.search(expr, orjson.loads(text)))
                except EvaluationBudgetExceeded:
                    raise
                except Exception:  # noqa: BLE001
                    return False

            matcher = PythonMatcher(predicate, cancel=cancel)
        addrs = _query._batched(scan_range(self.log, matcher, lo, hi, descending=descending, gate=self.gate))
        if self.keys is not None and not include_superseded:
            addrs = self._live_batches(addrs)
        return addrs

    # ---- keyed stores ----
    def require_keys(self) -> KeyIndex:
        self.gate.check_open()
        if self.keys is None:
            raise InvalidArgument("this store has no key; open it with key=<expression> when creating it")
        return self.keys

    def get_key(self, key: Any) -> Record | None:
        keys = self.require_keys()
        canon = key_canon(key)
        with self.gate:
            address = keys.newest(canon)
            if address is None:
                return None
            raw = self.log.read_records([address], payload_only=True)[0]
        return None if raw is None else Record(address, raw)  # None: a tombstone
