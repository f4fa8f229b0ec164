"""The live tail: records matching a query as they are ingested.

`follow` keeps a cursor, a log address. Each round it answers the query
over [cursor, tail) oldest first (the linked tail: HybridLog.linked_tail,
below which every record is in its chains), through the query and scan paths every
answer takes (chains where a PSF was active, scans where not), yields those
records, and moves the cursor to that tail: addresses only grow, so no
record is missed or given twice, however ingest calls interleave with it.
Between rounds it waits for the writer to say records landed (IngestCore's
`appended` condition, notified after every ingest call) or POLL_S, so a
long streaming ingest is followed batch by batch too.

Bounded: a round reads at most ROUND_RECORDS records before yielding them,
and a consumer that stops reading stops the reads (the log is the buffer).
A consumer so slow that compaction or retention dropped the log below its
cursor meets a gap: `on_gap="error"` (the default) raises TailGap, "skip"
yields a TailGap marker (its `.missed` range) and goes on from the log's
begin.
"""
from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Iterator
from typing import Any

from ..errors import InvalidArgument, StoreClosed, TailGap
from ..results import Record
from .planner import Planner

POLL_S = 0.01
IDLE_S = 1.0  # a round of no records, after this long without any: a heartbeat for streams
ROUND_RECORDS = 4096


class Tail:
    def __init__(self, planner: Planner, appended: threading.Condition):
        self.planner = planner
        self.appended = appended

    def follow(self, conditions: Iterable[tuple[str, Any]] | None = None, *, mode: str = "all",
               since_address: int | None = None, on_gap: str = "error", fields=None,
               cancel: threading.Event | None = None, timeout: float | None = None) -> Iterator[Record | TailGap]:
        rounds = self.rounds(conditions, mode=mode, since_address=since_address, on_gap=on_gap, fields=fields,
                             cancel=cancel, timeout=timeout)
        return (item for r in rounds for item in (r if isinstance(r, list) else [r]))

    def rounds(self, conditions: Iterable[tuple[str, Any]] | None = None, *, mode: str = "all",
               since_address: int | None = None, on_gap: str = "error", fields=None,
               cancel: threading.Event | None = None, timeout: float | None = None) -> Iterator:
        """follow's records a round at a time: lists of the Records found
        at once (an empty list after IDLE_S without any: a heartbeat), or a
        TailGap. Arguments are checked at the call."""
        p = self.planner
        conditions = list(conditions or [])
        for c in conditions:
            if not (isinstance(c, (tuple, list)) and len(c) == 2 and isinstance(c[0], str)):
                raise InvalidArgument("each condition is a (psf_name, value) pair")
            p.registry.get(c[0])  # an unknown PSF raises now, not at the first record
        if mode not in ("all", "any"):
            raise InvalidArgument(f"mode must be 'all' or 'any', not {mode!r}")
        if on_gap not in ("error", "skip"):
            raise InvalidArgument(f"on_gap must be 'error' or 'skip', not {on_gap!r}")
        if since_address is not None and (not isinstance(since_address, int) or isinstance(since_address, bool)
                                          or since_address < 0):
            raise InvalidArgument("since_address must be a non-negative int")
        if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, (int, float))
                                    or timeout < 0):
            raise InvalidArgument("timeout must be a non-negative number of seconds")
        p.projection(fields)  # checked now
        p.gate.check_open()
        start = p.log.tail_address if since_address is None else since_address
        return self._rounds(conditions, mode, start, on_gap, fields, cancel, timeout)

    def _rounds(self, conditions, mode, cursor: int, on_gap: str, fields, cancel, timeout) -> Iterator:
        p = self.planner
        log = p.log
        idle_since = beat = time.monotonic()  # the last record; the last round given (records or a heartbeat)
        while True:
            if cancel is not None and cancel.is_set():
                return
            if p.gate.closed:
                raise StoreClosed("the store closed under a tail")
            begin = log.begin_address
            if cursor < begin:
                gap = TailGap(f"the log from address {cursor} to {begin} was dropped before this tail read it "
                              f"(compaction or retention passed a slow follower)", (cursor, begin))
                if on_gap == "error":
                    raise gap
                yield gap
                cursor = begin
            # Not tail_address: the writer publishes it before it links the
            # record into its chains, so a chain walk up to it could miss a
            # record that this round's cursor then passes for good.
            tail = log.linked_tail
            if cursor < tail:
                hi = tail
                found: list[Record] = []
                for batch in self._answer(conditions, mode, cursor, hi, fields, cancel):
                    found.extend(batch)
                    if len(found) >= ROUND_RECORDS:  # a bounded round: on from after its last record
                        hi = batch.addresses[-1] + 1
                        break
                cursor = hi
                if found:
                    idle_since = beat = time.monotonic()
                    yield found
                continue
            now = time.monotonic()
            if timeout is not None and now - idle_since >= timeout:
                return
            if now - beat >= IDLE_S:
                beat = now
                yield []
            with self.appended:
                if log.linked_tail == tail:
                    self.appended.wait(POLL_S)

    def _answer(self, conditions, mode, lo: int, hi: int, fields, cancel):
        p = self.planner
        if not conditions:
            return p.scan_batches("`true`", order="oldest", from_address=lo, to_address=hi, cancel=cancel,
                                  fields=fields)
        return p.query_batches(conditions, mode=mode, order="oldest", from_address=lo, to_address=hi,
                               cancel=cancel, fields=fields)
