"""The shard map: which shard owns each virtual shard, where each shard
keeps its store, and what the cluster routes by, persisted in the cluster
directory as `cluster.json`.

A cluster has a fixed number of virtual shards (default 64). A record's
virtual shard is a hash of its routing value (routing.py); `owners[v]` is the
shard that stores virtual shard v. Shards are numbered 0..n-1; shard i keeps
its store in `shard-<i>/` under the cluster directory (on the node the map
names, once it was placed there).

Must stay true:
  - virtual_shards, key and route_by never change once the map exists: a
    record's virtual shard must be the same for every ingest and query.
  - The file is replaced atomically (files.write_atomic), so a crash leaves
    the old map or the new one, never a torn one.
  - At most MAX_SHARDS shards: a cluster record's address carries its
    shard in the bits above the 48 of a store address (addresses.py).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import CorruptionError, InvalidArgument
from ..files import write_atomic
from .addresses import MAX_SHARDS

MAP_FILE = "cluster.json"
FORMAT_VERSION = 1
DEFAULT_VIRTUAL_SHARDS = 64
MAX_VIRTUAL_SHARDS = 1 << 16


@dataclass
class ShardMap:
    virtual_shards: int
    owners: list[int]                 # virtual shard -> shard number
    shards: int                       # shard numbers are 0..shards-1
    key: str | None = None            # a keyed cluster's key expression (routes by the key)
    route_by: str | None = None       # else the routing expression, if any
    nodes: dict[int, str] = field(default_factory=dict)  # shard -> Ray node id it was placed on
    # PSF registrations in the order they were made: the front replays them
    # on every shard it opens, so a shard that missed one catches up
    psfs: list[dict] = field(default_factory=list)
    # a move of virtual shards under way (front.py, keyed clusters):
    # {"state": "copying" | "copied", "moves": {virtual shard: [from, to]}};
    # a front that finds one finishes it before anything else
    move: dict | None = None
    # a routed cluster's virtual shard -> the shards that owned it before
    # (they keep its earlier records: a query routed by value asks them too)
    past_owners: dict[int, list[int]] = field(default_factory=dict)
    # a keyed cluster's shards being removed (growth.py): their virtual
    # shards move to the others, then they are stopped
    retiring: list[int] = field(default_factory=list)

    @classmethod
    def create(cls, shards: int, virtual_shards: int = DEFAULT_VIRTUAL_SHARDS, *, key: str | None = None,
               route_by: str | None = None) -> "ShardMap":
        check_counts(shards, virtual_shards)
        if key is not None and route_by is not None:
            raise InvalidArgument("a keyed cluster routes by its key: pass key or route_by, not both")
        return cls(virtual_shards, [v % shards for v in range(virtual_shards)], shards, key, route_by)

    def plan_moves(self) -> dict[int, tuple[int, int]]:
        """The virtual shards to move so every shard owns an even share
        (counts differing by at most one), as {virtual shard: (from, to)}:
        every virtual shard of a retiring shard goes to a staying one that
        owns the fewest, then each move takes the highest-numbered virtual
        shard of a shard that owns the most and gives it to one that owns
        the fewest, so as few move as an even spread allows (new shards own
        none)."""
        owned: dict[int, list[int]] = {s: [] for s in range(self.shards) if s not in self.retiring}
        moves: dict[int, tuple[int, int]] = {}
        for v, o in enumerate(self.owners):
            if o in owned:
                owned[o].append(v)
        for v, o in enumerate(self.owners):
            if o not in owned:
                taker = min(owned, key=lambda s: (len(owned[s]), s))
                owned[taker].append(v)
                moves[v] = (o, taker)
        while True:
            donor = max(owned, key=lambda s: (len(owned[s]), -s))
            taker = min(owned, key=lambda s: (len(owned[s]), s))
            if len(owned[donor]) - len(owned[taker]) <= 1:
                return moves
            v = owned[donor].pop()
            owned[taker].append(v)
            first = moves.pop(v, (donor, taker))[0]
            if first != taker:
                moves[v] = (first, taker)

    def shard_dir(self, directory: Path, shard: int) -> Path:
        return directory / f"shard-{shard}"

    def to_json(self) -> bytes:
        return json.dumps({"format": FORMAT_VERSION, "virtual_shards": self.virtual_shards, "owners": self.owners,
                           "shards": self.shards, "key": self.key, "route_by": self.route_by,
                           "nodes": {str(k): v for k, v in self.nodes.items()}, "psfs": self.psfs,
                           "move": self.move, "past_owners": {str(k): v for k, v in self.past_owners.items()},
                           "retiring": self.retiring},
                          indent=1).encode()

    @classmethod
    def from_json(cls, text: bytes, path: Path) -> "ShardMap":
        try:
            d = json.loads(text)
            if d.get("format") != FORMAT_VERSION:
                raise CorruptionError(f"{path}: shard map format {d.get('format')!r}, this shoal reads "
                                      f"{FORMAT_VERSION}")
            m = cls(int(d["virtual_shards"]), [int(x) for x in d["owners"]], int(d["shards"]), d.get("key"),
                    d.get("route_by"), {int(k): str(v) for k, v in d.get("nodes", {}).items()},
                    list(d.get("psfs", [])), d.get("move"),
                    {int(k): [int(x) for x in v] for k, v in d.get("past_owners", {}).items()},
                    [int(x) for x in d.get("retiring", [])])
        except (ValueError, KeyError, TypeError) as exc:
            raise CorruptionError(f"{path}: not a shard map ({exc})") from exc
        if len(m.owners) != m.virtual_shards or any(not 0 <= o < m.shards for o in m.owners):
            raise CorruptionError(f"{path}: its owners do not name shards 0..{m.shards - 1}")
        return m


def check_counts(shards: int, virtual_shards: int) -> None:
    if not isinstance(shards, int) or isinstance(shards, bool) or not 1 <= shards <= MAX_SHARDS:
        raise InvalidArgument(f"shards must be an integer from 1 to {MAX_SHARDS}, not {shards!r}")
    if (not isinstance(virtual_shards, int) or isinstance(virtual_shards, bool)
            or not shards <= virtual_shards <= MAX_VIRTUAL_SHARDS):
        raise InvalidArgument(f"virtual_shards must be an integer from the shard count ({shards}) to "
                              f"{MAX_VIRTUAL_SHARDS}, not {virtual_shards!r}")


def load(directory: Path) -> ShardMap | None:
    path = directory / MAP_FILE
    try:
        text = path.read_bytes()
    except FileNotFoundError:
        return None
    return ShardMap.from_json(text, path)


def save(directory: Path, shard_map: ShardMap) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    write_atomic(directory / MAP_FILE, shard_map.to_json())
