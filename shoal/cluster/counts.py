"""A cluster's counts and top values: each shard's counts summed, top
values merged exactly (merge.top_values). Cluster (front.py) takes these
methods from here.

from_address (inclusive) / to_address (exclusive) are cluster addresses,
positions in cluster order as for queries (reads.py): each shard counts
the part of its log inside the window (ShardServer._windowed), so a count
from a record's address counts what a query from it would return.
`cancel` is taken for the HTTP API's sake: a count is a call per shard, not
stopped midway.
"""
from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ..errors import InvalidArgument
from . import merge


class ClusterCounts:
    def _window(self, options: dict, from_address: int | None, to_address: int | None) -> dict:
        """options with the cluster positions of from_address / to_address
        (reads.py), for each shard to bound its own log by."""
        for a in (from_address, to_address):
            self._check_address(a)
        if from_address is None and to_address is None:
            return options
        self._refresh()
        return dict(options, lo=self._position(from_address), hi=self._position(to_address))

    def _sum(self, kind: str, spec: Any, options: dict, allow_partial: bool | None,
             from_address: int | None, to_address: int | None) -> int:
        options = self._window(options, from_address, to_address)
        return sum(c for c in self._all("count", kind, spec, options, partial=self._partial(allow_partial),
                                        route=(kind, spec))
                   if c is not None)

    def count(self, psf: str, value: Any = True, *, from_address: int | None = None, to_address: int | None = None,
              include_superseded: bool = False, cancel: Any = None, since: Any = None, until: Any = None,
              allow_partial: bool | None = None) -> int:
        """How many records `query(psf, value)` gives: the shards' counts summed."""
        return self.count_all([(psf, value)], from_address=from_address, to_address=to_address,
                              include_superseded=include_superseded, since=since, until=until,
                              allow_partial=allow_partial)

    def count_all(self, conditions: Iterable[tuple[str, Any]], *, from_address: int | None = None,
                  to_address: int | None = None, include_superseded: bool = False, cancel: Any = None,
                  since: Any = None, until: Any = None, allow_partial: bool | None = None) -> int:
        opts = {"include_superseded": include_superseded, "since": since, "until": until}
        return self._sum("all", [tuple(c) for c in conditions], opts, allow_partial, from_address, to_address)

    def count_any(self, conditions: Iterable[tuple[str, Any]], *, from_address: int | None = None,
                  to_address: int | None = None, include_superseded: bool = False, cancel: Any = None,
                  since: Any = None, until: Any = None, allow_partial: bool | None = None) -> int:
        opts = {"include_superseded": include_superseded, "since": since, "until": until}
        return self._sum("any", [tuple(c) for c in conditions], opts, allow_partial, from_address, to_address)

    def count_range(self, psf: str, lo: Any, hi: Any, *, from_address: int | None = None,
                    to_address: int | None = None, include_superseded: bool = False, cancel: Any = None,
                    allow_partial: bool | None = None) -> int:
        return self._sum("range", (psf, lo, hi), {"include_superseded": include_superseded}, allow_partial,
                         from_address, to_address)

    def group_count(self, psf: str, *, limit: int | None = None, from_address: int | None = None,
                    to_address: int | None = None, include_superseded: bool = False, cancel: Any = None,
                    since: Any = None, until: Any = None,
                    allow_partial: bool | None = None) -> list[tuple[Any, int]]:
        """Values of a PSF and their record counts over every shard, largest
        first (ties by canonical bytes), exact (merge.top_values)."""
        if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit < 0):
            raise InvalidArgument(f"limit must be a non-negative integer, not {limit!r}")
        opts = self._window({"include_superseded": include_superseded, "since": since, "until": until},
                            from_address, to_address)
        partial = self._partial(allow_partial)

        def lists_of(size: int | None) -> list:
            return [x or [] for x in self._all("group_count", psf, size, opts, partial=partial)]

        if limit == 0:
            return []
        bucketed = self.psf(psf).bucket is not None if limit is not None else False
        if limit is None or bucketed:
            totals: dict = {}
            for pairs in lists_of(None):
                merge.add_counts(totals, pairs)
            return merge.sort_counts(totals)[:limit]

        def counts_of(missing: dict[int, list]) -> dict[int, list[int]]:
            refs = {s: self._call(s, "counts_of", psf, vs, opts) for s, vs in missing.items()}
            return {s: self._get(s, ref) for s, ref in refs.items()}

        with self._pause.shared():  # both rounds see the same records (pause.py)
            return merge.top_values(len(self._actors), limit, max(2 * limit, limit + 10), lists_of, counts_of)

