"""A cluster's reads: queries, scans and ranges on every shard, merged in
cluster order (merge.py, addresses.py), and records by cluster address.
Cluster (front.py) takes these methods from here; they use its calls on
shards (_call, _get, _actors).

from_address (inclusive) and to_address (exclusive) are positions in
cluster order, given by a record's cluster address: each shard turns one
into a bound on its own log (ShardServer._bound), so a page that resumes
from its last record's address never repeats or skips one.
"""
from __future__ import annotations

import itertools
import threading
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from ..errors import InvalidArgument, ShardUnavailable
from ..results import Record, RecordBatch
from . import addresses, merge, pages

PAGE_RECORDS = 4096  # records per page a shard sends a merge


class ClusterReads:
    def _position(self, address: int | None) -> tuple[int, int, int] | None:
        """A cluster address as a position in cluster order (seq, shard,
        store address), for from_address / to_address."""
        if address is None:
            return None
        self._check_address(address)
        shard, local = addresses.decode(address)
        if shard >= len(self._actors):
            raise InvalidArgument(f"address {address} names shard {shard}; this cluster has {len(self._actors)}")
        return self._get(shard, self._call(shard, "seq_at", local)), shard, local

    def _check_address(self, address: int | None) -> None:
        if address is not None and (not isinstance(address, int) or isinstance(address, bool) or address < 0):
            raise InvalidArgument(f"an address is a non-negative integer, not {address!r}")

    def _batches(self, kind: str, spec: Any, limit: int | None, order: str, options: dict,
                 allow_partial: bool | None, from_address: int | None = None,
                 to_address: int | None = None) -> Iterator[RecordBatch]:
        self._check_open()
        if order not in ("newest", "oldest"):
            raise InvalidArgument(f"order must be 'newest' or 'oldest', not {order!r}")
        if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit < 0):
            raise InvalidArgument(f"limit must be a non-negative integer, not {limit!r}")
        if limit == 0:
            return iter(())
        for a in (from_address, to_address):
            self._check_address(a)
        pause = self._pause
        partial = self._partial(allow_partial)
        failed: list[int] = []
        setup = [False]
        n = lo_pos = hi_pos = 0
        out: dict[int, Any] = {}  # requests sent and not yet answered (each holds the pause)

        # Each request holds the pause from its sending to its answer
        # (pause.py): a move of records waits for it, and it for a move.
        def fetch(shard: int, after: int | None, k: int):
            lo, hi = (None, after) if order == "newest" else (None if after is None else after + 1, None)
            pause.enter()
            if setup[0]:
                setup[0] = False
                pause.leave()
            try:
                ref = self._call(shard, "page", kind, spec, k, order, lo, hi, options, lo_pos, hi_pos)
            except BaseException:
                pause.leave()
                raise
            out[id(ref)] = ref
            return ref

        def answered(ref) -> None:
            if out.pop(id(ref), None) is not None:
                pause.leave()

        def take(shard: int, ref):
            try:
                return pages.unpack(self._get(shard, ref))
            except ShardUnavailable:
                if not partial:
                    raise
                failed.append(shard)
                self.last_shards.update(successful=n - len(failed), failed=len(failed))
                return None

        def resolve(shard: int, ref):
            try:
                return take(shard, ref)
            finally:
                answered(ref)

        def resolve_all(asked: list) -> list:
            try:
                # one wait for every shard: the common case
                return [pages.unpack(blob) for blob in self._ray.get([ref for _, ref in asked])]
            except (self._ray.exceptions.RayActorError, self._ray.exceptions.RayTaskError):
                # which shard failed, and how: every answer taken, the first error raised
                got, error = [], None
                for shard, ref in asked:
                    try:
                        got.append(take(shard, ref))
                    except Exception as exc:  # noqa: BLE001 - raised once all are taken
                        got.append(None)
                        error = error or exc
                if error is not None:
                    raise error from None
                return got
            finally:
                for _, ref in asked:
                    answered(ref)

        def abandon(shard: int, ref) -> None:
            held = out.pop(id(ref), None) is not None
            self._let_go(ref, pause.leave if held else None)

        def batches() -> Iterator[RecordBatch]:
            nonlocal n, lo_pos, hi_pos
            pause.enter()  # held until the first pages are asked for, so they see the map read here
            setup[0] = True
            try:
                self._refresh()
                lo_pos, hi_pos = self._position(from_address), self._position(to_address)
                asked = self._shards_for(kind, spec)  # routed by value: only the shards that can hold it
                n = len(asked)
                self.last_shards = {"total": n, "successful": n, "failed": 0, "failed_shards": failed}
                yield from merge.merge_pages(asked, fetch, resolve, order, limit, PAGE_RECORDS,
                                             abandon=abandon, resolve_all=resolve_all)
            finally:
                if setup[0]:  # ended (closed) before it asked a shard
                    setup[0] = False
                    pause.leave()
                for ref in list(out.values()):  # sent, never taken nor abandoned
                    abandon(-1, ref)

        return batches()

    def _records(self, batches: Iterator[RecordBatch]) -> Iterator[Record]:
        for b in batches:
            yield from b

    @staticmethod
    def _options(include_superseded: bool, fields, since, until) -> dict:
        return {"include_superseded": include_superseded, "fields": list(fields) if fields else None,
                "since": since, "until": until}

    def query_batches(self, conditions: Iterable[tuple[str, Any]], *, mode: str = "all", limit: int | None = None,
                      order: str = "newest", from_address: int | None = None, to_address: int | None = None,
                      include_superseded: bool = False, cancel: threading.Event | None = None,
                      fields: Sequence[str] | None = None, since: Any = None, until: Any = None,
                      allow_partial: bool | None = None) -> Iterator[RecordBatch]:
        """The records of query_all (mode "all") or query_any ("any") from
        every shard, merged in cluster order (addresses.py) as RecordBatches
        whose addresses are cluster addresses. from_address (inclusive) and
        to_address (exclusive) are positions in cluster order given by a
        record's cluster address: to_address=last.address continues a
        newest-first answer after its last record, from_address=last.address
        + 1 an oldest-first one, as on a store."""
        if mode not in ("all", "any"):
            raise InvalidArgument(f"mode must be 'all' or 'any', not {mode!r}")
        conditions = [tuple(c) for c in conditions]
        return _until(cancel, self._batches(mode, conditions, limit, order,
                                            self._options(include_superseded, fields, since, until),
                                            allow_partial, from_address, to_address))

    def query_addresses(self, conditions: Iterable[tuple[str, Any]], *, mode: str = "all", order: str = "newest",
                        from_address: int | None = None, to_address: int | None = None,
                        include_superseded: bool = False, cancel: threading.Event | None = None,
                        allow_partial: bool | None = None) -> Iterator[int]:
        """Like query_all/query_any, yielding cluster addresses only (no
        shard reads a record), in cluster order."""
        if mode not in ("all", "any"):
            raise InvalidArgument(f"mode must be 'all' or 'any', not {mode!r}")
        batches = _until(cancel, self._batches(mode, [tuple(c) for c in conditions], None, order,
                                               {"include_superseded": include_superseded, "addresses_only": True},
                                               allow_partial, from_address, to_address))
        return (int(a) for b in batches for a in b.addresses)

    def query(self, psf: str, value: Any = True, **kw: Any) -> Iterator[Record]:
        """Records whose PSF `psf` has `value`, from every shard, in cluster
        order (addresses.py), newest first by default, `limit` at most."""
        return self._records(self.query_batches([(psf, value)], **kw))

    def query_all(self, conditions: Iterable[tuple[str, Any]], **kw: Any) -> Iterator[Record]:
        return self._records(self.query_batches(conditions, mode="all", **kw))

    def query_any(self, conditions: Iterable[tuple[str, Any]], **kw: Any) -> Iterator[Record]:
        return self._records(self.query_batches(conditions, mode="any", **kw))

    def scan_batches(self, expression: str, *, limit: int | None = None, order: str = "newest",
                     from_address: int | None = None, to_address: int | None = None,
                     include_superseded: bool = False, cancel: threading.Event | None = None,
                     fields: Sequence[str] | None = None, since: Any = None, until: Any = None,
                     allow_partial: bool | None = None) -> Iterator[RecordBatch]:
        """scan on every shard, merged as query_batches is."""
        return _until(cancel, self._batches("scan", expression, limit, order,
                                            self._options(include_superseded, fields, since, until),
                                            allow_partial, from_address, to_address))

    def scan(self, expression: str, **kw: Any) -> Iterator[Record]:
        return self._records(self.scan_batches(expression, **kw))

    def query_range_batches(self, psf: str, lo: Any, hi: Any, *, limit: int | None = None, order: str = "newest",
                            from_address: int | None = None, to_address: int | None = None,
                            include_superseded: bool = False, fields: Sequence[str] | None = None,
                            cancel: threading.Event | None = None,
                            allow_partial: bool | None = None) -> Iterator[RecordBatch]:
        return _until(cancel, self._batches("range", (psf, lo, hi), limit, order,
                                            {"include_superseded": include_superseded,
                                             "fields": list(fields) if fields else None},
                                            allow_partial, from_address, to_address))

    def query_range(self, psf: str, lo: Any, hi: Any, **kw: Any) -> Iterator[Record]:
        return self._records(self.query_range_batches(psf, lo, hi, **kw))

    def get(self, address: int) -> Record | None:
        """The record at a cluster address (Record.address of an answer)."""
        self._check_open()
        shard, local = addresses.decode(address)
        if not 0 <= shard < len(self._actors):
            return None
        with self._pause.shared():
            got = self._get(shard, self._call(shard, "get", local))
        return None if got is None else Record(addresses.encode(shard, got[0]), got[1])


def _until(cancel: threading.Event | None, batches: Iterator[RecordBatch]) -> Iterator[RecordBatch]:
    """The batches until `cancel` is set (the answer then ends early)."""
    if cancel is None:
        return batches
    return itertools.takewhile(lambda _: not cancel.is_set(), batches)


