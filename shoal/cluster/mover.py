"""Moving a keyed cluster's virtual shards to other shards (front.py:
add_shards, rebalance): each moved virtual shard's live keys are copied to
its new shard, the map is switched, and then they are deleted where they
were. The front holds the map lock and the cluster's pause (pause.py)
throughout, so no ingest or read runs meanwhile.

The move's journal is the shard map's `move` entry, saved before anything
is copied, in one of two states; a front that finds one finishes it
(front.py calls run again), and every step may be done twice:

  copying  nothing is switched. The new shards may hold part of a copy:
           it is deleted there first (their keys of a moved virtual shard
           can only be copies: they did not own it), then copied again.
  copied   the map is switched (owners saved with this state, in one
           write): later records of a moved virtual shard go to its new
           shard. What remains is deleting the copied keys at the old ones.

Must stay true:
  - A copy is acknowledged durably (fsynced) before the map is switched,
    and the deletions are durable before the journal is cleared, so a
    crash at any point leaves every key live on exactly one shard once
    the move is finished.
  - Copies are the records' own bytes, oldest first, so a key's copy at
    its new shard is its live version.
"""
from __future__ import annotations

from collections import defaultdict
from typing import Any

import numpy as np

from ..errors import StorageError
from .shardmap import MAP_FILE

PART_BYTES = 16 << 20  # a copy travels in parts of about this much NDJSON


def run(front: Any, moves: dict[int, tuple[int, int]]) -> None:
    """Carry out (or finish) the journaled move `moves` {virtual shard:
    (from, to)} of front's map."""
    m = front.map
    pairs: dict[tuple[int, int], list[int]] = defaultdict(list)
    for v, (src, dst) in sorted(moves.items()):
        pairs[(src, dst)].append(v)
    if m.move["state"] == "copying":
        # what an attempt cut short copied is deleted at the new shards first
        _each(front, _group(pairs, by=1), "drop_vshards", m.virtual_shards)
        for (src, dst), vs in pairs.items():
            _copy(front, src, dst, vs)
        for v, (_, dst) in moves.items():
            m.owners[v] = dst
        m.move["state"] = "copied"
        front._save_map()  # the switch
    _each(front, _group(pairs, by=0), "drop_vshards", m.virtual_shards)
    m.move = None
    front._save_map()


def settle(front: Any, moves: dict[int, tuple[int, int]]) -> str | None:
    """After a move failed: undo one that switched nothing (its copies
    deleted at the new shards, the journal cleared), or try once more to
    finish one that did; None when that finished it, else what became of
    it."""
    m = front.map
    try:
        if m.move["state"] == "copying":
            pairs: dict[tuple[int, int], list[int]] = defaultdict(list)
            for v, (src, dst) in moves.items():
                pairs[(src, dst)].append(v)
            _each(front, _group(pairs, by=1), "drop_vshards", m.virtual_shards)
            m.move = None
            front._save_map()
            return "undone: every key is where it was; rebalance() tries again"
        run(front, moves)
        return None
    except Exception:  # noqa: BLE001 - the journal stays for the next front
        return (f"left unfinished: its journal is in {MAP_FILE}, and rebalance(), or the next front to open the "
                f"cluster, finishes it; until then a moved key may be answered twice")


def _group(pairs: dict[tuple[int, int], list[int]], by: int) -> dict[int, list[int]]:
    """The moved virtual shards of each source (by=0) or destination (by=1)."""
    out: dict[int, list[int]] = defaultdict(list)
    for pair, vs in pairs.items():
        out[pair[by]].extend(vs)
    return out


def _each(front: Any, per_shard: dict[int, list[int]], method: str, *args: Any) -> None:
    """method(vshards, *args) on each shard at once; every answer awaited."""
    refs = {s: front._call(s, method, sorted(vs), *args, retries=0) for s, vs in per_shard.items()}
    for s, ref in refs.items():
        front._get(s, ref)


def _copy(front: Any, src: int, dst: int, vshards: list[int]) -> int:
    """The live keys of `vshards` at shard src ingested at dst, durably, in
    parts; the next part is read while the last is stored."""
    virtual = front.map.virtual_shards
    export = front._call(src, "export_vshards", vshards, virtual, None, PART_BYTES, retries=0)
    stored = 0
    while export is not None:
        data, records, after = front._get(src, export)
        export = (front._call(src, "export_vshards", vshards, virtual, after, PART_BYTES, retries=0)
                  if after is not None else None)
        if not records:
            continue
        piece = ([np.frombuffer(data, dtype=np.uint8)], "ndjson", front._seq.next())
        out = front._get(dst, front._call(dst, "ingest", [piece], True, False, retries=0))[0]
        if out[0] != records:
            raise StorageError(f"moving keys from shard {src} to shard {dst}: {records} records sent, "
                               f"{out[0]} stored ({out[4][:1]}); the move is unfinished and is finished "
                               f"when the cluster is next opened (or by rebalance())")
        stored += records
    return stored
