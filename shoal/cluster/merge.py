"""Merging the shards' answers into one: records in cluster order
(addresses.py), and top values.

Records: each shard answers a page at a time in its own address order,
which is cluster order within the shard (marks.py). `merge_pages` keeps one
page per shard, asks for the next one as soon as a page arrives (so a
shard is working while the front merges), and emits the records in cluster
order, `limit` at most: each shard is asked for no more than `limit`
records per page, so an answer of k records costs every shard at most k.

Top values (`top_values`): every shard gives its top `shard_size` values
(as Elasticsearch's terms aggregation asks each shard for more than k),
then, so the answer is exact rather than approximate, each shard that cut
its list short is asked for the exact counts of the values it did not list,
and the answer stands only if no value outside the lists can reach it: a
value no shard listed has at most sum(smallest count listed by a shard that
cut its list) records. Otherwise every shard's full list is merged.
"""
from __future__ import annotations

import heapq
from array import array
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from ..psf import canonical
from ..results import RecordBatch
from .addresses import STORE_ADDRESS_BITS

OUT_BATCH = 1024


class _Stream:
    """One shard's pages."""

    __slots__ = ("asked", "done", "fetch", "got", "page", "pos", "ref", "shard")

    def __init__(self, shard: int, fetch: Callable, asked: int):
        self.shard = shard
        self.fetch = fetch  # fetch(after_address or None, n) -> a handle resolve() takes
        self.page: tuple | None = None
        self.pos = 0
        self.ref: Any = None
        self.done = False
        self.asked = asked
        self.got = 0  # records this shard has sent


def merge_pages(shards: list[int], fetch: Callable[[int, int | None, int], Any],
                resolve: Callable[[int, Any], tuple | None], order: str, limit: int | None,
                page_records: int, abandon: Callable[[int, Any], None] | None = None,
                resolve_all: Callable[[list], list] | None = None) -> Iterator[RecordBatch]:
    """RecordBatches of the shards' answers in cluster order, newest first
    for order="newest". fetch(shard, after, n) starts a request for a page
    of n records after store address `after` (None: from the start);
    resolve(shard, handle) waits for it: (data, addresses, offsets,
    lengths, seqs), or None when the shard failed and may be skipped.
    abandon(shard, handle) is given each request still out when the answer
    ends early (an error, or a caller that stopped reading).
    resolve_all([(shard, handle), ...]) waits for the first pages of every
    shard at once (one wait instead of one per shard), as resolve would."""
    want = limit if limit is not None else None
    per_page = min(page_records, limit) if limit is not None else page_records
    streams = [_Stream(s, fetch, per_page) for s in shards]
    try:
        yield from _merge(streams, resolve, order == "newest", want, per_page, resolve_all)
    finally:
        if abandon is not None:
            for st in streams:
                if st.ref is not None:
                    abandon(st.shard, st.ref)
                    st.ref = None


def _merge(streams: list[_Stream], resolve: Callable, newest: bool, want: int | None,
           per_page: int, resolve_all: Callable | None) -> Iterator[RecordBatch]:
    for st in streams:
        st.ref = st.fetch(st.shard, None, per_page)
    heap: list = []
    first = dict(zip((id(st) for st in streams), resolve_all([(st.shard, st.ref) for st in streams]))) \
        if resolve_all is not None else {}

    def advance(st: _Stream) -> None:
        """Take the stream's next page (or end it) and put its head on the heap."""
        while True:
            if st.page is not None and st.pos < len(st.page[1]):
                break
            if st.ref is None:
                st.done = True
                return
            page = first.pop(id(st)) if id(st) in first else resolve(st.shard, st.ref)
            st.ref = None
            if page is None or not len(page[1]):
                st.done = True
                return
            st.page, st.pos = page, 0
            st.got += len(page[1])
            # Maybe more: ask now, while this page is merged; but never for
            # more than `limit` from one shard, all an answer could take.
            if len(page[1]) >= st.asked and (want is None or st.got < want):
                st.ref = st.fetch(st.shard, int(page[1][-1]),
                                  per_page if want is None else min(per_page, want - st.got))
        push(st)

    def push(st: _Stream) -> None:
        _, addresses, _, _, seqs = st.page
        i = st.pos
        if newest:
            key = (-int(seqs[i]), -st.shard, -int(addresses[i]))
        else:
            key = (int(seqs[i]), st.shard, int(addresses[i]))
        heapq.heappush(heap, (key, st.shard, st))

    for st in streams:
        advance(st)
    emitted = 0
    while heap:
        if want is not None and emitted >= want:
            return
        room = OUT_BATCH if want is None else min(OUT_BATCH, want - emitted)
        out = _Out()
        while heap and len(out.addrs) < room:
            _, _, st = heapq.heappop(heap)
            i = st.pos
            end = min(len(st.page[1]), i + room - len(out.addrs))
            # The run of this page that comes before every other shard's
            # head goes at once (a page of one piece is one run).
            j = end if not heap else _run_end(st, heap[0][2], newest, i, end)
            out.take(st, i, j)
            st.pos = j
            advance(st)
        emitted += len(out.addrs)
        yield out.batch()


def _run_end(st: _Stream, other: _Stream, newest: bool, i: int, end: int) -> int:
    """The end of the run of st's page from i (at most end) whose records
    come before other's head in cluster order: (seq, shard, address), a
    shard's page being in that order already."""
    o_seq = np.uint64(int(other.page[4][other.pos]))
    seqs = np.frombuffer(st.page[4], dtype=np.uint64)[i:end]
    if newest:
        before = (seqs > o_seq) | ((seqs == o_seq) & (st.shard > other.shard))
    else:
        before = (seqs < o_seq) | ((seqs == o_seq) & (st.shard < other.shard))
    k = len(before) if before.all() else int(np.argmin(before))
    return i + max(k, 1)  # its head comes first: the heap said so


class _Out:
    """One RecordBatch of merged runs."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.addrs, self.offs, self.lens = array("Q"), array("Q"), array("I")
        self.base = 0

    def take(self, st: _Stream, i: int, j: int) -> None:
        """Records i..j-1 of st's page, with cluster addresses."""
        data, addresses, offsets, lengths, _ = st.page
        offs = np.frombuffer(offsets, dtype=np.uint64)[i:j]
        lens = np.frombuffer(lengths, dtype=np.uint32)[i:j]
        start, stop = int(offs[0]), int(offs[-1]) + int(lens[-1]) + 1
        if stop - start == int(lens.sum()) + (j - i):  # laid out in order, each followed by b"\n"
            self.parts.append(bytes(data[start:stop]))
            self.offs.frombytes((offs - np.uint64(start) + np.uint64(self.base)).tobytes())
            self.base += stop - start
        else:
            for o, n in zip(offs.tolist(), lens.tolist()):
                self.parts.append(bytes(data[o:o + n]) + b"\n")
                self.offs.append(self.base)
                self.base += n + 1
        self.lens.frombytes(lens.tobytes())
        shard = np.uint64(st.shard << STORE_ADDRESS_BITS)
        self.addrs.frombytes((np.frombuffer(addresses, dtype=np.uint64)[i:j] | shard).tobytes())

    def batch(self) -> RecordBatch:
        data = self.parts[0] if len(self.parts) == 1 else b"".join(self.parts)
        return RecordBatch(data, self.addrs, self.offs, self.lens)


def _key(value: Any) -> bytes:
    c = canonical(value)
    return c if c is not None else repr(value).encode()


def sort_counts(totals: dict[bytes, list]) -> list[tuple[Any, int]]:
    """(value, count) pairs, largest count first, ties by canonical bytes
    (the order Store.group_count gives)."""
    items = sorted(totals.items(), key=lambda kv: (-kv[1][1], kv[0]))
    return [(v, c) for _, (v, c) in items]


def add_counts(totals: dict[bytes, list], pairs: list[tuple[Any, int]]) -> None:
    for value, count in pairs:
        k = _key(value)
        t = totals.get(k)
        if t is None:
            totals[k] = [value, count]
        else:
            t[1] += count


def top_values(n_shards: int, limit: int, shard_size: int,
               lists_of: Callable[[int | None], list[list[tuple[Any, int]]]],
               counts_of: Callable[[dict[int, list]], dict[int, list[int]]]) -> list[tuple[Any, int]]:
    """The exact top `limit` (value, count) pairs over the shards.
    lists_of(size) gives every shard's group_count(limit=size) (None: all);
    counts_of({shard: values}) the exact counts of values on those shards."""
    lists = lists_of(shard_size)
    cut = [s for s in range(n_shards) if len(lists[s]) >= shard_size]
    if not cut:
        totals: dict[bytes, list] = {}
        for pairs in lists:
            add_counts(totals, pairs)
        return sort_counts(totals)[:limit]
    listed = [{_key(v) for v, _ in pairs} for pairs in lists]
    totals = {}
    for pairs in lists:
        add_counts(totals, pairs)
    # Round 2: what each shard that cut its list has of the values it left out.
    missing = {s: [t[0] for k, t in totals.items() if k not in listed[s]] for s in cut}
    missing = {s: vs for s, vs in missing.items() if vs}
    if missing:
        for s, counts in counts_of(missing).items():
            for value, count in zip(missing[s], counts):
                totals[_key(value)][1] += count
    ranked = sort_counts(totals)
    bound = sum(lists[s][-1][1] for s in cut)  # what a value no shard listed may have
    if len(ranked) >= limit and ranked[limit - 1][1] > bound:
        return ranked[:limit]
    totals = {}
    for pairs in lists_of(None):
        add_counts(totals, pairs)
    return sort_counts(totals)[:limit]
