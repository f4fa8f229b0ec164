"""A cluster's live tail: Store.follow over every shard at once.

Each shard keeps a follower of its own store open for the front (a tail
session, ShardServer.tail_open), started at its tail when the cluster's
tail starts, or at a cluster position (since_address: a record's cluster
address, as for queries; each shard starts at the first of its records
that come at or after it in cluster order). The front keeps one
`tail_next` request out per shard and hands on each round of records as a
shard answers, with cluster addresses: no record is missed or given twice,
and each shard's records come in their order; across shards, in the order
their rounds arrived.

Shards added to the cluster while a tail runs are followed from their first
record (all of theirs came after the tail began).

A heartbeat (an empty round) comes after IDLE_S with no record from any
shard, as a store's tail gives. A shard that restarts under a tail loses its
session: the tail raises ShardUnavailable, and a new one resumes from the
last record given (since_address).
"""
from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Iterator
from typing import Any

from ..errors import InvalidArgument, ShardUnavailable, TailGap
from ..results import Record
from . import addresses

IDLE_S = 1.0
WAIT_S = 0.25  # how long the front waits for any shard before it checks cancel and timeouts


class ClusterTail:
    def follow_rounds(self, conditions: Iterable[tuple[str, Any]] | None = None, *, mode: str = "all",
                      since_address: int | None = None, on_gap: str = "error", fields: Any = None,
                      cancel: threading.Event | None = None, timeout: float | None = None) -> Iterator:
        """As Store.follow_rounds, over every shard: lists of Records (an
        empty list: a heartbeat) or TailGaps. Arguments are checked here."""
        if on_gap not in ("error", "skip"):
            raise InvalidArgument(f"on_gap must be 'error' or 'skip', not {on_gap!r}")
        if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, (int, float))
                                    or timeout < 0):
            raise InvalidArgument("timeout must be a non-negative number of seconds")
        conditions = [tuple(c) if isinstance(c, (list, tuple)) else c for c in (conditions or [])]
        since = self._position(since_address)
        # Every shard's follower starts now (its tail) or at `since`; bad
        # conditions or fields raise here, from the shards.
        fields = list(fields) if fields else None
        sessions = self._all("tail_open", conditions, mode, fields, since)
        return self._rounds(sessions, on_gap, cancel, timeout, (conditions, mode, fields))

    def follow(self, conditions: Iterable[tuple[str, Any]] | None = None, **kw: Any) -> Iterator:
        """As Store.follow: Records (and TailGaps with on_gap="skip")."""
        rounds = self.follow_rounds(conditions, **kw)
        return (item for r in rounds for item in (r if isinstance(r, list) else [r]))

    def _rounds(self, sessions: list[str], on_gap: str, cancel: threading.Event | None,
                timeout: float | None, question: tuple) -> Iterator:
        ray = self._ray
        out: dict[Any, int] = {}

        def ask(shard: int) -> None:
            out[self._call(shard, "tail_next", sessions[shard], retries=0)] = shard

        for shard in range(len(sessions)):
            ask(shard)
        last_record = beat = time.monotonic()
        try:
            while True:
                if cancel is not None and cancel.is_set():
                    return
                self._refresh()
                for shard in range(len(sessions), len(self._actors)):
                    # A shard added since the tail began: all of its records are newer.
                    sessions.append(self._get(shard, self._call(shard, "tail_open", *question, None, True)))
                    ask(shard)
                ready, _ = ray.wait(list(out), num_returns=1, timeout=WAIT_S)
                now = time.monotonic()
                for ref in ready:
                    shard = out.pop(ref)
                    item = self._get(shard, ref)
                    if item is None:
                        raise ShardUnavailable(f"shard {shard} restarted under this tail: follow again from the "
                                               f"last record given (since_address)", [shard])
                    if isinstance(item, tuple):  # ("gap", from, to) in the shard's addresses
                        gap = TailGap(f"shard {shard}: the log from address {item[1]} to {item[2]} was dropped "
                                      f"before this tail read it (compaction or retention passed a slow follower)",
                                      (addresses.encode(shard, item[1]), addresses.encode(shard, item[2])))
                        if on_gap == "error":
                            raise gap
                        yield gap
                    elif item:
                        last_record = beat = now
                        yield [Record(addresses.encode(shard, a), raw) for a, raw in item]
                    ask(shard)
                if timeout is not None and now - last_record >= timeout:
                    return
                if now - beat >= IDLE_S:
                    beat = now
                    yield []
        finally:
            for ref in out:
                self._let_go(ref)
            for shard, sid in enumerate(sessions):
                self._let_go(self._call(shard, "tail_close", sid, retries=0))
